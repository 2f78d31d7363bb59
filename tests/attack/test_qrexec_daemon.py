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
from qrexec_fixtures import MSG, World, bin_path, hello, msg, trigger3  # noqa: E402


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()


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


def evil_qube(world, name="evil", qid=7):
    from qrexec_fixtures import Qube
    q = Qube(world, name, qid)
    world.qubes[name] = q
    fa = FakeAgent(q)
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
    srv.bind(str(q.vchan / f"vchan.7.{dom}.{port}.sock"))
    srv.listen(1)
    srv.settimeout(10)
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


def test_trigger4_with_a_claimed_source_is_not_taken(world):
    world.service("test.Who", "#!/bin/sh\ntouch \"$HOME/ran\"\n")
    world.allow_call("test.Who", "work", "personal")
    world.qube("work", 5)
    personal = world.qube("personal", 6)
    q, fa, d = evil_qube(world)
    body = b"work".ljust(64, b"\0") + b"personal".ljust(64, b"\0") + b"ID".ljust(32, b"\0") + b"test.Who\0"
    fa.conn.sendall(msg(MSG["TRIGGER4"], body))
    assert d.wait(10) != 0  # protocol violation: the daemon of that qube ends
    time.sleep(0.3)
    assert not (personal.home / "ran").exists()


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
    assert "bad call request from evil: invalid service name" in log, log
    assert "denied by" not in log, log


def test_oversized_message_ends_only_that_daemon(world):
    work = world.qube("work", 5)
    q, fa, d = evil_qube(world)
    fa.conn.sendall(struct.pack("<II", MSG["TRIGGER3"], 0xFFFFFFFF))
    assert d.wait(10) != 0
    assert not (q.dir / "qrexec.sock").exists()
    r = world.client("work", "user:echo still-here")
    assert r.stdout == b"still-here\n"


def test_truncated_message_does_not_stall_forever(world):
    q, fa, d = evil_qube(world)
    fa.conn.sendall(struct.pack("<II", MSG["TRIGGER3"], 200) + b"x" * 10)
    assert d.wait(30) != 0  # receive timeout, then exit


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
    os.symlink(str(work.vchan / "vchan.5.0.512.sock"), q.vchan / "vchan.7.0.512.sock")
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
        path = q.vchan / f"vchan.{dom}.7.{port}.sock"
        for _ in range(200):
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


def test_agent_speaking_v4_gets_v3(world):
    from qrexec_fixtures import Qube
    q = Qube(world, "newer", 8)
    fa = FakeAgent(q, version=4)
    d, ready = start_daemon(world, q)
    fa.accept()
    assert os.read(ready, 1) == b"1"
    os.close(ready)
    assert "agent protocol 3" in world.log_text("daemon-newer")
    fa.close()
