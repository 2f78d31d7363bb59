"""Nobody but the qube may connect to a data socket the host side listens on in its vchan dir.

A call from qube a to qube b is relayed by a's daemon, whose call process listens on
vchan.<a>.<b>.<port>.sock in b's host-side vchan dir for b's agent; a dom0 command
(qrexec-client) listens on vchan.0.<b>.<port>.sock there. That dir lets more than b in
(the ns engine's is a 1777 tmpfs, the VM engine's host side 1770 with the group every
call process has), so a taken-over call process of a third qube c that connects first
would get the stream: a's input to b's service, dom0's command's input, and could answer
for b (forged output, exit code). The listener now checks SO_PEERCRED after accept: only
one of b's host UIDs (the range from --agent-uid, which bulkheadd gives each daemon) is
taken; anyone else is closed unused with a log line, and the name stays for b.

Each case stops b's agent (SIGSTOP) so that the impostor is surely first, lets c's call
identity connect, then resumes b. Positive controls: without --agent-uid (no UID known)
the same impostor gets a's bytes and its forged answer is what the caller prints (the
attack is real); with the check, b's real answer arrives after the impostor was dropped."""
import os
import pathlib
import re
import signal
import struct
import subprocess
import sys
import threading

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from qrexec_fixtures import MSG, hello, msg, world  # noqa: E402,F401
from test_qrexec_privsep import CALL_GID, CALL_ID_BASE  # noqa: E402

# the world's numbers for qubes a, b and the impostor c (World.qid: qids of its own)
A_QID, B_QID, C_QID = 1, 2, 3

# As qube c's call identity: waits for a name matching the pattern in b's vchan dir,
# connects, answers as b's service would ("forged", exit 0) and reports how many bytes
# of the call's stream it got before the other side closed.
IMPOSTOR = r"""
import os, re, socket, sys, time
vdir, pattern, answer = sys.argv[1], re.compile(sys.argv[2]), bytes.fromhex(sys.argv[3])
deadline = time.time() + 30
s = None
while time.time() < deadline and s is None:
    for n in os.listdir(vdir):
        if pattern.fullmatch(n):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(os.path.join(vdir, n))
                break
            except OSError:
                s = None
    else:
        time.sleep(0.01)
if s is None:
    print("no-name", flush=True)
    sys.exit(1)
print("connected", flush=True)
try:
    s.sendall(answer)
except OSError:
    pass
s.settimeout(30)
got = 0
try:
    while True:
        b = s.recv(65536)
        if not b:
            break
        got += len(b)
except OSError:
    pass
print(f"got {got}", flush=True)
"""

FORGED = (hello(3) + msg(MSG["STDOUT"], b"forged\n") + msg(MSG["STDOUT"]) + msg(MSG["EXIT"], struct.pack("<I", 0)))


def impostor(w, q, pattern):
    return subprocess.Popen([sys.executable, "-c", IMPOSTOR, str(q.vchan), pattern, FORGED.hex()],
                            user=CALL_ID_BASE + w.qid(C_QID), group=CALL_GID, extra_groups=[], stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def two_qubes(w, check):
    extra = ("--agent-uid", "0") if check else ()  # the stub world's agents are root
    a = w.qube("a", A_QID, daemon=False)
    b = w.qube("b", B_QID, daemon=False)
    for q in (a, b):
        q.start_daemon(extra=extra)
    for p in (w.runtime, w.runtime / "qubes", b.dir):  # c's call identity reaches b's dir
        p.chmod(p.stat().st_mode | 0o011)
    w.service("test.Real", "#!/bin/sh\necho real\n")
    w.allow_call("test.Real", "a", "b")
    return a, b


def attack(w, b, pattern, call):
    """Runs call() in a thread while b's agent is stopped and the impostor connects;
    returns (impostor's report, call's result)."""
    os.kill(b.agent.pid, signal.SIGSTOP)
    imp = impostor(w, b, pattern)
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("r", call()))
    try:
        t.start()
        assert imp.stdout.readline().strip() == "connected", imp.stdout.read()
        report = imp.stdout.readline().strip()
    finally:
        os.kill(b.agent.pid, signal.SIGCONT)
        t.join(60)
        imp.kill()
        imp.wait()
    return report, out.get("r")


def qube_call(a):
    return lambda: a.run(["qrexec-client-vm", "b", "test.Real"], timeout=60)


def dom0_call(w):
    return lambda: w.client("b", "user:echo real", timeout=60)


def relay_name(w):
    return rf"vchan\.{w.qid(A_QID)}\.{w.qid(B_QID)}\.\d+\.sock"


def dom0_name(w):
    return rf"vchan\.0\.{w.qid(B_QID)}\.\d+\.sock"


def test_another_qubes_call_identity_cannot_take_a_relayed_call(world):
    a, b = two_qubes(world, check=True)
    report, r = attack(world, b, relay_name(world), qube_call(a))
    assert report == "got 0", report  # not one byte of a's call reached c
    assert r.returncode == 0 and r.stdout == b"real\n", r  # b answered, not c
    log = world.log_text("daemon-a")
    assert re.search(rf"connection from UID {CALL_ID_BASE + world.qid(C_QID)} \(pid \d+\), not the qube's 0 range: dropped",
                     log), log


def test_control_without_the_check_the_relayed_call_is_taken(world):
    a, b = two_qubes(world, check=False)
    report, r = attack(world, b, relay_name(world), qube_call(a))
    assert report != "got 0", report  # c read a's side of the stream
    assert r.stdout == b"forged\n", r  # and answered for b


def test_another_qubes_call_identity_cannot_take_a_dom0_command(world):
    _, b = two_qubes(world, check=True)
    report, r = attack(world, b, dom0_name(world), dom0_call(world))
    assert report == "got 0", report
    assert r.returncode == 0 and r.stdout == b"real\n", r
    assert f"connection from UID {CALL_ID_BASE + world.qid(C_QID)}" in r.stderr.decode(), r.stderr


def test_control_without_the_check_the_dom0_command_is_taken(world):
    _, b = two_qubes(world, check=False)
    report, r = attack(world, b, dom0_name(world), dom0_call(world))
    assert report != "got 0", report
    assert r.stdout == b"forged\n", r


def test_a_dom0_command_nobody_answers_leaves_no_name(world):
    """A target that never connects to a dom0 command (stopped, or a taken-over agent that
    ignores it) must not keep dom0's listening names in its 64-inode vchan dir: each would
    use up one of the inodes reserved for dom0's calls there. qrexec-client removes its
    name when its wait ends without a connection, as the relay's call process does."""
    _, b = two_qubes(world, check=True)
    names = lambda: [n for n in os.listdir(b.vchan) if re.fullmatch(dom0_name(world), n)]  # noqa: E731
    os.kill(b.agent.pid, signal.SIGSTOP)
    try:
        r = world.client("b", "user:echo real", args=("-w", "2"), timeout=60)
        # positive control: the command did wait for b and gave up (nothing answered)
        assert r.returncode != 0 and b"timeout" in r.stderr, r
        assert names() == [], names()
    finally:
        os.kill(b.agent.pid, signal.SIGCONT)
    # b still answers dom0 afterwards
    r = world.client("b", "user:echo real", timeout=60)
    assert r.returncode == 0 and r.stdout == b"real\n", r
