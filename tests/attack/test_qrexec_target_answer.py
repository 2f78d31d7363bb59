"""A compromised target controls the unprivileged side of its qrexec-daemon, which tells
the caller's (root) call process where the call's data stream goes: {target qid, port}.
A foreign qid there would point the root relay at the name of one of the CALLER's calls
to another qube (in the caller's own vchan dir) and hand that stream to the liar. The
call process checks the qid against the daemon at the other end of the connection, as
the kernel names it (the target's root monitor and its command line), not as it says.

The target's daemon here is a stand-in run as root with a daemon's command line
(--name, --domid), like the real root monitor, speaking the daemon's side of the
client protocol; an honest answer is the positive control."""
import os
import pathlib
import struct
import subprocess
import sys
import textwrap

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from qrexec_fixtures import MSG, bin_path, trigger3, world  # noqa: E402,F401
from test_qrexec_daemon import FakeAgent  # noqa: E402
from qrexec_fixtures import Qube  # noqa: E402

FAKE_TARGET = textwrap.dedent('''
    import os, socket, struct, sys
    args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
    path, answer = args["--socket"], int(args["--answer-qid"])
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    os.chown(path, 0, (1 << 19) + (1 << 17))  # as a real daemon's: root and the dom0 qrexec group
    os.chmod(path, 0o660)
    srv.listen(4)
    open(args["--ready"], "w").close()
    while True:
        c, _ = srv.accept()
        c.sendall(struct.pack("<III", 0x300, 4, 3))      # our HELLO, as a daemon's
        def exact(n):
            b = b""
            while len(b) < n:
                x = c.recv(n - len(b))
                if not x:
                    raise SystemExit(0)
                b += x
            return b
        t, n = struct.unpack("<II", exact(8)); exact(n)  # the client's HELLO
        t, n = struct.unpack("<II", exact(8)); exact(n)  # the call's EXEC_CMDLINE
        c.sendall(struct.pack("<IIII", t, 8, answer, 513))
''')


def call_through_fake_target(world, answer_qid):
    """work (the world's qid 7, hostile agent) calls evil (its qid 9, stand-in daemon
    answering the world's qid answer_qid); returns the message work's agent gets back and
    the call's log."""
    answer_qid = world.qid(answer_qid)
    world.allow_call("test.X", "work", "evil")
    evil = world.runtime / "qubes" / "evil"
    (evil / "vchan").mkdir(parents=True)
    os.chmod(evil / "vchan", 0o1777)
    ready = world.tmp / "fake-ready"
    world.spawn(["/usr/bin/python3", "-c", FAKE_TARGET, "--name", "evil", "--domid", str(world.qid(9)),
                 "--socket", str(evil / "qrexec.sock"), "--answer-qid", str(answer_qid), "--ready", str(ready)],
                log="fake-evil")
    import time
    deadline = time.time() + 60
    while not ready.exists() and time.time() < deadline:
        time.sleep(0.02)
    work = Qube(world, "work", 7)
    world.qubes["work"] = work
    fa = FakeAgent(work, 3)
    r, w = os.pipe()
    world.spawn([bin_path("qrexec-daemon"), "--name", "work", "--domid", str(work.qid), "--runtime", str(world.runtime),
                 "--ready-fd", str(w), "--startup-timeout", "5", "--call-timeout", "5", "--test-allow",
                 str(world.allow)], pass_fds=(w,), log="daemon-work")
    os.close(w)
    fa.accept()
    assert os.read(r, 1) == b"1"
    os.close(r)
    fa.conn.sendall(trigger3("evil", "C1", "test.X"))
    t, body = fa.recv_msg(timeout=20)
    return t, body, world.log_text("daemon-work")


def test_a_foreign_qid_from_the_target_is_refused(world):
    t, body, log = call_through_fake_target(world, answer_qid=11)
    assert t == MSG["REFUSED"], (hex(t), body, log)
    assert f"foreign qid {world.qid(11)}" in log


def test_the_targets_own_qid_is_accepted(world):
    """Positive control: the same stand-in, answering its own qid, gets the call wired."""
    t, body, log = call_through_fake_target(world, answer_qid=9)
    assert t == MSG["SERVICE_CONNECT"], (hex(t), body, log)
    assert struct.unpack("<II", body[:8]) == (world.qid(9), 513)
