"""A compromised qube controls its own qrexec agent. These tests replace the agent with a
hostile one speaking raw bytes to the real qrexec-daemon (and to dom0's qrexec-client),
and check that the host side holds: no forged source, no oversized allocation, no stall
of anything but that qube's own qrexec, nothing reached outside the qube's vchan dir."""
import os
import pathlib
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from qrexec_fixtures import MSG, bin_path, hello, msg, trigger3, trigger4, world  # noqa: E402,F401


class FakeAgent:
    """Listens where the agent would, completes HELLO with the daemon, then obeys the test."""

    def __init__(self, qube, version=3):
        self.sock_path = qube.vchan / f"vchan.{qube.qid}.0.512.sock"
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(str(self.sock_path))
        self.srv.listen(1)
        self.version = version
        self.conn = None

    def accept(self, timeout=10):
        self.srv.settimeout(timeout)
        self.conn, _ = self.srv.accept()
        self.conn.sendall(hello(self.version))
        self.recv_exact(12)  # the daemon's HELLO
        return self

    def recv_exact(self, n):
        b = b""
        while len(b) < n:
            c = self.conn.recv(n - len(b))
            if not c:
                raise EOFError
            b += c
        return b

    def recv_msg(self, timeout=10):
        self.conn.settimeout(timeout)
        t, n = struct.unpack("<II", self.recv_exact(8))
        return t, self.recv_exact(n)

    def close(self):
        if self.conn:
            self.conn.close()
        self.srv.close()


def start_daemon(world, qube, *extra):
    r, w = os.pipe()
    d = world.spawn([bin_path("qrexec-daemon"), "--name", qube.name, "--domid", str(qube.qid), "--runtime",
                     str(world.runtime), "--ready-fd", str(w), "--startup-timeout", "5", "--test-allow",
                     str(world.allow), *extra], pass_fds=(w,), log=f"daemon-{qube.name}")
    os.close(w)
    return d, r


def evil_qube(world, name="evil", qid=7, version=3):
    from qrexec_fixtures import Qube
    q = Qube(world, name, qid)
    world.qubes[name] = q
    fa = FakeAgent(q, version)
    d, ready = start_daemon(world, q)
    fa.accept()
    assert os.read(ready, 1) == b"1"
    os.close(ready)
    return q, fa, d


def test_source_is_what_the_daemon_knows(world):
    world.service("test.Who", "#!/bin/sh\necho \"$QREXEC_REMOTE_DOMAIN\" > \"$HOME/who\"\n")
    world.allow_call("test.Who", "work", "personal")   # only work may call
    world.allow_call("test.Who+e", "evil", "personal")  # evil may call this one, as itself
    world.qube("work", 5)
    personal = world.qube("personal", 6)
    q, fa, d = evil_qube(world)
    fa.conn.sendall(trigger3("personal", "ID1", "test.Who"))
    t, body = fa.recv_msg()
    assert t == MSG["REFUSED"] and body.rstrip(b"\0") == b"ID1"
    assert not (personal.home / "who").exists()
    fa.conn.sendall(trigger3("personal", "ID2", "test.Who+e"))
    t, body = fa.recv_msg()
    assert t == MSG["SERVICE_CONNECT"]
    dom, port = struct.unpack("<II", body[:8])
    assert body[8:].rstrip(b"\0") == b"ID2"
    # be the qube's qrexec-client-vm: serve the data stream in our own vchan dir
    srv = socket.socket(socket.AF_UNIX)
    # created 0666 as qrexec-client-vm creates it (umask around bind): a chmod after the
    # bind left a moment in which the call process's connect got EACCES and gave up
    old = os.umask(0o111)
    try:
        srv.bind(str(q.vchan / f"vchan.{q.qid}.{dom}.{port}.sock"))
    finally:
        os.umask(old)
    srv.listen(1)
    srv.settimeout(30)  # a loaded machine: the call process forks and connects first
    c, _ = srv.accept()
    c.sendall(hello() + msg(MSG["STDIN"]))
    c.settimeout(10)
    data = b""
    while True:
        chunk = c.recv(65536)
        if not chunk:
            break
        data += chunk
    assert struct.pack("<II", MSG["EXIT"], 4) in data
    assert (personal.home / "who").read_text() == "evil\n"


def still_serves(fa, ident="OK1", target="personal"):
    """The positive control after an attack: the qube's next call is answered."""
    fa.conn.sendall(trigger3(target, ident, "test.Who"))
    t, body = fa.recv_msg()
    assert t in (MSG["SERVICE_CONNECT"], MSG["REFUSED"])
    assert body[-32:].rstrip(b"\0") == ident.encode()
    return t


@pytest.mark.parametrize("version", [3, 4])
def test_trigger4_with_a_claimed_source_is_not_taken(world, version):
    """A qube can only call as itself: a TRIGGER_SERVICE4 source (Qubes: only a RemoteVM's
    relay may name one) refuses that call; the daemon goes on."""
    world.service("test.Who", "#!/bin/sh\ntouch \"$HOME/ran\"\n")
    world.allow_call("test.Who", "work", "personal")
    world.allow_call("test.Who", "evil", "personal")
    world.qube("work", 5)
    personal = world.qube("personal", 6)
    q, fa, d = evil_qube(world, version=version)
    fa.conn.sendall(trigger4("work", "personal", "ID", "test.Who"))
    t, body = fa.recv_msg()
    assert (t, body) == (MSG["REFUSED"], b"ID".ljust(32, b"\0"))
    assert d.poll() is None
    time.sleep(0.3)
    assert not (personal.home / "ran").exists()
    log = world.log_text("daemon-evil")
    assert "evil: refused TRIGGER_SERVICE4 message" in log
    assert ("RemoteVM" if version == 4 else "needs protocol 4") in log
    assert still_serves(fa) == MSG["SERVICE_CONNECT"]


@pytest.mark.parametrize("service", ["test.Who+x work", "../../bin/sh", "test.Who\nname personal", "a" * 40,
                                     "test.Who+a+b c", "test.Who+..", ".hidden", "test/Who"])
def test_service_name_injection_refused(world, service):
    # Policy allows each hostile name exactly where the allow file can say it (no
    # whitespace): the refusal must come from the daemon's name check, not from
    # default-deny. The log says which one refused.
    if not any(c.isspace() for c in service):
        world.allow_call(service, "evil", "personal")
    world.allow_call("test.Who+ok", "evil", "personal")
    world.qube("personal", 6)
    q, fa, d = evil_qube(world)
    fa.conn.sendall(trigger3("personal", "ID9", service))
    t, body = fa.recv_msg()
    assert t == MSG["REFUSED"] and body.rstrip(b"\0") == b"ID9"
    # control: a valid name allowed the same way is connected
    fa.conn.sendall(trigger3("personal", "ID10", "test.Who+ok"))
    t, body = fa.recv_msg()
    assert t == MSG["SERVICE_CONNECT"] and body[8:].rstrip(b"\0") == b"ID10"
    log = world.log_text("daemon-evil")
    assert "invalid service name" in log, log  # the name check, not policy, refused ID9
    assert "denied by" not in log, log


@pytest.mark.parametrize("kind", ["unknown", "over-limit", "short", "hello-again", "terminated-len"])
def test_bad_message_refuses_only_that_message(world, kind):
    """Unknown type, a length outside its type's limits, a second HELLO: that one message
    is refused (with its request's ident when it has one) and logged with the qube and
    the type; the daemon lives and the qube's next call is served."""
    world.allow_call("test.Who", "evil", "personal")
    world.qube("personal", 6)
    q, fa, d = evil_qube(world)
    fixed = b"personal".ljust(64, b"\0") + b"BAD1".ljust(32, b"\0")
    wire, logged, refused = {
        "unknown": (msg(0x999, b"x" * 100), "refused unknown message (type 0x999, 100 bytes)", False),
        "over-limit": (msg(MSG["TRIGGER3"], fixed + b"a" * 65001),
                       "refused TRIGGER_SERVICE3 message (type 0x212, 65097 bytes)", True),
        "short": (msg(MSG["TRIGGER3"], fixed), "refused TRIGGER_SERVICE3 message (type 0x212", True),
        "hello-again": (hello(3), "refused HELLO message (type 0x300, 4 bytes)", False),
        "terminated-len": (msg(MSG["TERMINATED"], b"\0" * 12), "refused CONNECTION_TERMINATED message", False),
    }[kind]
    fa.conn.sendall(wire)
    if refused:
        assert fa.recv_msg() == (MSG["REFUSED"], b"BAD1".ljust(32, b"\0"))
    assert still_serves(fa) == MSG["SERVICE_CONNECT"]
    assert d.poll() is None
    assert logged in world.log_text("daemon-evil")


def test_huge_length_costs_only_the_qubes_own_calls(world):
    """A header announcing 4 GiB is skipped as it arrives, never allocated; meanwhile
    dom0's commands still reach the qube (the daemon is not blocked on it)."""
    q, fa, d = evil_qube(world)
    fa.conn.sendall(struct.pack("<II", MSG["TRIGGER3"], 0xFFFFFFFF) + b"x" * 100000)
    th = threading.Thread(target=world.client, args=("evil", "user:true"), kwargs=dict(timeout=20))
    th.start()
    t, body = fa.recv_msg()
    assert t == MSG["EXEC"] and body.endswith(b"user:true\0")
    assert d.poll() is None
    rss = int(next(line.split()[1] for line in open(f"/proc/{d.pid}/status") if line.startswith("VmRSS")))
    assert rss < 64 * 1024  # KiB: nothing near the announced size was allocated
    fa.conn.close()  # the qube hangs up: the daemon ends as for a stopped qube
    assert d.wait(10) == 0
    th.join(25)


def test_truncated_message_does_not_stall_the_daemon(world):
    """A qube that stops mid-message stalls nobody: dom0's commands go on, and the message
    is handled when the rest arrives."""
    world.allow_call("test.Who", "evil", "personal")
    world.qube("personal", 6)
    q, fa, d = evil_qube(world)
    whole = trigger3("personal", "HALF", "test.Who")
    fa.conn.sendall(whole[:30])
    th = threading.Thread(target=world.client, args=("evil", "user:true"), kwargs=dict(timeout=20))
    th.start()
    t, body = fa.recv_msg()
    assert t == MSG["EXEC"]
    fa.conn.sendall(whole[30:])
    t, body = fa.recv_msg()
    assert t == MSG["SERVICE_CONNECT"] and body[8:].rstrip(b"\0") == b"HALF"
    assert d.poll() is None
    fa.conn.close()
    th.join(25)


def test_flood_of_calls_costs_only_the_flooder(world):
    world.qube("work", 5)
    q, fa, d = evil_qube(world)
    n = 400
    got = []

    def reader():
        try:
            while len(got) < n:
                got.append(fa.recv_msg(timeout=30)[0])
        except Exception:
            pass

    th = threading.Thread(target=reader)
    th.start()
    fa.conn.sendall(b"".join(trigger3("work", f"F{i}", "test.Nothing") for i in range(n)))
    r = world.client("work", "user:echo served")  # meanwhile, dom0 -> work still works
    assert r.stdout == b"served\n"
    th.join(60)
    assert len(got) == n and set(got) == {MSG["REFUSED"]}
    assert d.poll() is None


def test_terminating_foreign_ports_is_ignored(world):
    q, fa, d = evil_qube(world)
    for port in (0, 1, 513, 600, 0xFFFFFFFF):
        fa.conn.sendall(msg(MSG["TERMINATED"], struct.pack("<II", 0, port)))
    time.sleep(0.3)
    assert d.poll() is None


def test_planted_symlink_for_the_control_socket(world):
    work = world.qube("work", 5)
    from qrexec_fixtures import Qube
    q = Qube(world, "evil", 7)
    # the qube points its control socket name at another qube's agent (host path)
    os.symlink(str(work.vchan / f"vchan.{work.qid}.0.512.sock"), q.vchan / f"vchan.{q.qid}.0.512.sock")
    d, ready = start_daemon(world, q)
    assert d.wait(20) == 3
    os.close(ready)
    assert world.log_text("agent-work").count("daemon connected") == 1


def test_hostile_data_stream_to_dom0_client(world):
    q, fa, d = evil_qube(world)
    res = {}

    def agent():
        t, body = fa.recv_msg()
        dom, port = struct.unpack("<II", body[:8])
        c = socket.socket(socket.AF_UNIX)
        path = q.vchan / f"vchan.{dom}.{q.qid}.{port}.sock"
        for _ in range(3000):
            try:
                c.connect(str(path))
                break
            except OSError:
                time.sleep(0.02)
        c.sendall(hello() + struct.pack("<II", MSG["STDOUT"], 0x7FFFFFFF) + b"A" * 1000)
        res["c"] = c

    th = threading.Thread(target=agent)
    th.start()
    r = world.client("evil", "user:true", timeout=20)
    th.join(10)
    assert r.returncode == 125
    assert r.stdout == b""


@pytest.mark.parametrize("theirs,agreed", [(4, 4), (3, 3), (5, 4)])
def test_agent_hello_gets_the_lower_version(world, theirs, agreed):
    from qrexec_fixtures import Qube
    q = Qube(world, "newer", 8)
    fa = FakeAgent(q, version=theirs)
    d, ready = start_daemon(world, q)
    fa.srv.settimeout(10)
    fa.conn, _ = fa.srv.accept()
    # As Qubes' daemon: it waits for the agent's HELLO, then answers with the agreed version.
    fa.conn.settimeout(0.5)
    with pytest.raises(socket.timeout):
        fa.conn.recv(1)
    fa.conn.sendall(hello(theirs))
    fa.conn.settimeout(10)
    assert fa.recv_exact(12) == bytes.fromhex("00030000 04000000") + struct.pack("<I", agreed)
    assert os.read(ready, 1) == b"1"
    os.close(ready)
    assert f"agent protocol {agreed}" in world.log_text("daemon-newer")
    fa.close()


def test_agent_below_version_3_is_refused(world):
    from qrexec_fixtures import Qube
    q = Qube(world, "old", 8)
    fa = FakeAgent(q, version=2)
    d, ready = start_daemon(world, q)
    fa.srv.settimeout(10)
    fa.conn, _ = fa.srv.accept()
    fa.conn.sendall(hello(2))
    assert d.wait(10) == 1
    assert os.read(ready, 1) == b""
    os.close(ready)
    fa.close()
