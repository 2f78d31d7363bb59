"""qrexec protocol version 4 (qubes-core-qrexec 4.3+), pinned byte for byte.

Each test puts one real Bulkhead program opposite a scripted peer that plays Qubes'
side with the exact bytes Qubes' programs send (libqrexec/qrexec.h; agent/qrexec-agent.c,
agent/qrexec-client-vm.c, daemon/qrexec-daemon.c of qubes-core-qrexec 4.4), in both
directions and for both versions:
  - the control channel: our agent's HELLO and triggers, against a daemon of version 3 or 4;
  - the agent's local socket (/run/qubes/qrexec-agent): Qubes' qrexec-client-vm's
    request and the raw {domain, port} answer, EOF on refusal, CONNECTION_TERMINATED
    when the client goes; and what our qrexec-client-vm sends to an agent.
The daemon's side (its HELLO, refusals) is pinned in tests/attack/test_qrexec_daemon.py."""
import socket
import struct
import subprocess
import time

import pytest

from qrexec_fixtures import MSG, bin_path, hello, msg, trigger3, trigger4, world  # noqa: F401


def recv_exact(c, n, timeout=10):
    c.settimeout(timeout)
    b = b""
    while len(b) < n:
        k = c.recv(n - len(b))
        if not k:
            raise EOFError(f"EOF after {len(b)} of {n} bytes")
        b += k
    return b


def recv_msg(c, timeout=10):
    t, n = struct.unpack("<II", recv_exact(c, 8, timeout))
    return t, recv_exact(c, n, timeout)


class FakeDaemon:
    """Connects to a real agent's control channel as a qrexec-daemon of `version` would."""

    def __init__(self, qube, version):
        self.c = socket.socket(socket.AF_UNIX)
        path = qube.vchan / f"vchan.{qube.qid}.0.512.sock"
        for _ in range(3000):
            try:
                self.c.connect(str(path))
                break
            except OSError:
                time.sleep(0.02)
        # Qubes' agent sends HELLO first; so does ours, with version 4.
        self.agent_hello = recv_exact(self.c, 12)
        self.c.sendall(hello(version))


def local_request(qube, wire):
    """Qubes' qrexec-client-vm's side of the agent's local socket."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(str(qube.agent_sock))
    s.sendall(wire)
    return s


def wait_log(world, log, text, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in world.log_text(log):
            return True
        time.sleep(0.05)
    return False


QUBES_43_REQUEST = trigger4("", "personal", "SOCKET", "test.Svc+arg")


@pytest.mark.parametrize("version", [4, 3])
def test_agent_forwards_qubes_client_request(world, version):
    """Qubes R4.3's qrexec-client-vm request on the local socket reaches the daemon as
    TRIGGER_SERVICE4 (protocol 4) or TRIGGER_SERVICE3 (a version-3 daemon), the ident
    being the agent's own; SERVICE_CONNECT comes back as the raw {domain, port}."""
    work = world.qube("work", 5, daemon=False)
    fd = FakeDaemon(work, version)
    assert fd.agent_hello == bytes.fromhex("00030000 04000000 04000000")
    assert wait_log(world, "agent-work", f"daemon connected, protocol {version}")
    s = local_request(work, QUBES_43_REQUEST)
    t, body = recv_msg(fd.c)
    if version == 4:
        assert t == 0x213
        assert body == b"\0" * 64 + b"personal".ljust(64, b"\0") + b"SOCKET1".ljust(32, b"\0") + b"test.Svc+arg\0"
    else:
        assert t == 0x212
        assert body == b"personal".ljust(64, b"\0") + b"SOCKET1".ljust(32, b"\0") + b"test.Svc+arg\0"
    # the daemon connects the call: {domain 6, port 513} and the ident, zero-padded
    fd.c.sendall(msg(MSG["SERVICE_CONNECT"], struct.pack("<II", 6, 513) + b"SOCKET1".ljust(32, b"\0")))
    assert recv_exact(s, 8) == struct.pack("<II", 6, 513)  # no header: Qubes' exec_params
    s.close()  # the client is done: the agent releases the port
    assert recv_msg(fd.c) == (MSG["TERMINATED"], struct.pack("<II", 6, 513))


def test_agent_refusal_is_eof_on_the_local_socket(world):
    work = world.qube("work", 5, daemon=False)
    fd = FakeDaemon(work, 4)
    s = local_request(work, QUBES_43_REQUEST)
    t, body = recv_msg(fd.c)
    fd.c.sendall(msg(MSG["REFUSED"], body[128:160]))
    s.settimeout(10)
    assert s.recv(100) == b""  # Qubes' client prints "Request refused", exits 126


def test_agent_takes_the_r42_request_too(world):
    """qrexec-client-vm of Qubes R4.1-R4.2 sends TRIGGER_SERVICE3 on the local socket."""
    work = world.qube("work", 5, daemon=False)
    fd = FakeDaemon(work, 4)
    local_request(work, trigger3("personal", "SOCKET", "test.Svc"))
    t, body = recv_msg(fd.c)
    assert t == 0x213 and body[:64] == b"\0" * 64 and body[160:] == b"test.Svc\0"


@pytest.mark.parametrize("wire", [msg(0x200, b"\0" * 8 + b"user:id\0"), trigger4("", "p", "S", ""),
                                  struct.pack("<II", 0x213, 10 ** 6), trigger4("", "bad target", "S", "x"),
                                  trigger4("", "p", "S", "svc\0x")],
                         ids=["exec", "empty-service", "over-limit", "bad-target", "nul-in-service"])
def test_agent_closes_a_bad_local_request(world, wire):
    work = world.qube("work", 5, daemon=False)
    fd = FakeDaemon(work, 4)
    s = local_request(work, wire)
    s.settimeout(10)
    assert s.recv(100) == b""
    # nothing went to the daemon; a good request afterwards does
    local_request(work, QUBES_43_REQUEST)
    assert recv_msg(fd.c)[0] == 0x213


def test_agent_refuses_a_source_to_a_v3_daemon(world):
    """Protocol 3 cannot carry a source: the call is refused locally, not sent as ourselves."""
    work = world.qube("work", 5, daemon=False)
    fd = FakeDaemon(work, 3)
    s = local_request(work, trigger4("remote1", "personal", "SOCKET", "test.Svc"))
    s.settimeout(10)
    assert s.recv(100) == b""
    local_request(work, QUBES_43_REQUEST)
    assert recv_msg(fd.c)[0] == 0x212


@pytest.mark.parametrize("args,source", [((), b""), (("--source-qube", "remote1"), b"remote1"),
                                         (("-s", "remote1"), b"remote1")])
def test_client_vm_sends_qubes_request(world, tmp_path, args, source):
    """Our qrexec-client-vm's request is Qubes R4.3's, byte for byte; EOF = refused (126)."""
    path = tmp_path / "agent.sock"
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)
    p = subprocess.Popen([bin_path("qrexec-client-vm"), "--agent-socket", str(path), *args, "$default",
                          "test.Svc+arg"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    srv.settimeout(10)
    c, _ = srv.accept()
    t, body = recv_msg(c)
    assert t == 0x213
    assert body == source.ljust(64, b"\0") + b"@default".ljust(64, b"\0") + b"SOCKET".ljust(32, b"\0") \
        + b"test.Svc+arg\0"
    c.close()
    out, err = p.communicate(timeout=10)
    assert p.returncode == 126 and b"Request refused" in err
    srv.close()


def test_client_vm_with_agent_end_to_end_v4(world):
    """Our client and agent, a version-4 daemon played by the test: the client serves the
    data stream, HELLO 4 both ways, prefix data first, the exit code comes back."""
    work = world.qube("work", 5, daemon=False)
    fd = FakeDaemon(work, 4)
    p = subprocess.Popen([bin_path("qrexec-client-vm"), "-p", "PREFIX", "personal", "test.Svc"], env=work.env,
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    t, body = recv_msg(fd.c)
    ident = body[128:160]
    fd.c.sendall(msg(MSG["SERVICE_CONNECT"], struct.pack("<II", 6, 515) + ident))
    d = socket.socket(socket.AF_UNIX)
    for _ in range(3000):
        try:
            d.connect(str(work.vchan / f"vchan.{work.qid}.6.515.sock"))
            break
        except OSError:
            time.sleep(0.02)
    d.sendall(hello(4))
    assert recv_exact(d, 12) == hello(4)
    assert recv_msg(d) == (MSG["STDIN"], b"PREFIX")
    p.stdin.write(b"in")
    p.stdin.close()
    p.stdin = None
    assert recv_msg(d) == (MSG["STDIN"], b"in")
    assert recv_msg(d) == (MSG["STDIN"], b"")
    d.sendall(msg(MSG["STDOUT"], b"out\n") + msg(MSG["STDOUT"]) + msg(MSG["STDERR"]) + msg(MSG["EXIT"], struct.pack("<i", 7)))
    out, err = p.communicate(timeout=10)
    assert (p.returncode, out) == (7, b"out\n")
    d.close()
    assert recv_msg(fd.c) == (MSG["TERMINATED"], struct.pack("<II", 6, 515))


ENV_SERVICE = ('#!/bin/sh\nenv | grep ^QREXEC | grep -v -e ^QREXEC_SERVICE_PATH= -e ^QREXEC_AGENT_SOCKET= | sort\n'
               'echo "argc=$# 1=${1-}"\n')


@pytest.mark.parametrize("cmd,want", [
    ("user:QUBESRPC test.Env+a1 work name personal",
     ["QREXEC_AGENT_PID=*", "QREXEC_REMOTE_DOMAIN=work", "QREXEC_REQUESTED_TARGET=personal",
      "QREXEC_REQUESTED_TARGET_TYPE=name", "QREXEC_SERVICE_ARGUMENT=a1", "QREXEC_SERVICE_FULL_NAME=test.Env+a1",
      "argc=1 1=a1"]),
    ("user:QUBESRPC test.Env+ work keyword default",
     ["QREXEC_AGENT_PID=*", "QREXEC_REMOTE_DOMAIN=work", "QREXEC_REQUESTED_TARGET_KEYWORD=default",
      "QREXEC_REQUESTED_TARGET_TYPE=keyword", "QREXEC_SERVICE_ARGUMENT=", "QREXEC_SERVICE_FULL_NAME=test.Env+",
      "argc=0 1="]),
    ("user:QUBESRPC test.Env dom0",
     ["QREXEC_AGENT_PID=*", "QREXEC_REMOTE_DOMAIN=dom0", "QREXEC_REQUESTED_TARGET_TYPE=",
      "QREXEC_SERVICE_FULL_NAME=test.Env", "argc=0 1="]),
], ids=["name", "keyword", "no-target"])
def test_service_environment_is_qubes(world, cmd, want):
    """What a service gets is what Qubes' agent gives it (libqrexec exec_qubes_rpc2):
    QREXEC_REQUESTED_TARGET_TYPE always, QREXEC_SERVICE_ARGUMENT only with a '+', the
    argument as $1 only when not empty, QREXEC_AGENT_PID; stray QREXEC* variables gone."""
    world.service("test.Env", ENV_SERVICE)
    world.agent_env.update(QREXEC_STRAY="x", QREXEC_REQUESTED_TARGET="forged")
    world.qube("personal", 6)
    r = world.client("personal", cmd)
    lines = r.stdout.decode().splitlines()
    assert len(lines) == len(want), lines
    for got, exp in zip(lines, want):
        assert got == exp or (exp.endswith("*") and got.startswith(exp[:-1]) and got[len(exp) - 1:].isdigit()), lines
    pid = int(lines[0].split("=")[1])
    assert open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")[0].endswith(b"qrexec-agent")
