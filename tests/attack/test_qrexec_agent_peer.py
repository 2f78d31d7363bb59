"""Another qube must not pose as a qube's agent on the host side.

A qube's qrexec-daemon reaches the qube's agent at vchan.<qid>.0.512.sock in the qube's
host-side vchan dir. That dir lets more than the qube create names (the ns engine's is
mode 1777, the VM engine's 1770 group dom0-qrexec), and every call process of every qube
runs with group dom0-qrexec (qrexec_ids.h). A taken-over call process of qube a that binds
b's agent name first (while b boots) would get b's daemon (b's policy for a's calls,
dom0's commands to b and their data). The daemon started by bulkheadd gets --agent-uid
(the qube's uid_base, as which its agent or VM bridge runs) and takes no listener of
another UID (SO_PEERCRED). Positive controls: without the check the same impostor IS
taken as the agent (the attack is real), and a listener of the right UID is served."""
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from qrexec_fixtures import CALL_GID, CALL_ID_BASE, Qube, bin_path, hello, world  # noqa: E402,F401

UID_FIRST, UID_RANGE = 1 << 20, 1 << 16  # host_ids.h: qube qid's host UIDs
# the world's numbers for the two qubes (World.qid: qids of the world's own on this host)
A, B = 1, 2

# Binds the agent's name, answers the daemon's HELLO as an agent would, and reports
# how many bytes the daemon sent it (its HELLO is 12).
LISTENER = r"""
import socket, sys
path, hello = sys.argv[1], bytes.fromhex(sys.argv[2])
s = socket.socket(socket.AF_UNIX)
s.bind(path)
s.listen(4)
print("bound", flush=True)
s.settimeout(8)
got = 0
try:
    while True:
        c, _ = s.accept()
        c.settimeout(3)
        try:
            c.sendall(hello)
            while got < 12:
                b = c.recv(12 - got)
                if not b:
                    break
                got += len(b)
        except OSError:
            pass
        if got:
            break
except socket.timeout:
    pass
print(f"daemon-bytes {got}", flush=True)
sys.stdin.read()  # keep the connection until the test ends
"""


def listen_as(q, uid, gid):
    p = subprocess.Popen([sys.executable, "-c", LISTENER, str(q.vchan / f"vchan.{q.qid}.0.512.sock"),
                          hello(3).hex()], user=uid, group=gid, extra_groups=[], stdin=subprocess.PIPE, stderr=subprocess.STDOUT,
                         stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "bound"
    return p


def run_daemon(w, q, *extra):
    r, wfd = os.pipe()
    d = w.spawn([bin_path("qrexec-daemon"), "--name", q.name, "--domid", str(q.qid), "--runtime",
                 str(w.runtime), "--ready-fd", str(wfd), "--startup-timeout", "4", "--test-allow",
                 str(w.allow), *extra], pass_fds=(wfd,), log=f"daemon-{q.name}")
    os.close(wfd)
    return d, r


def scenario(w, name, qid, listener_uid, listener_gid, check):
    q = Qube(w, name, qid)
    w.qubes[name] = q
    for p in (w.runtime, w.runtime / "qubes", q.dir):  # the listener (not root) reaches the dir
        p.chmod(p.stat().st_mode | 0o011)
    lst = listen_as(q, listener_uid, listener_gid)
    extra = ("--agent-uid", str(UID_FIRST + q.qid * UID_RANGE)) if check else ()
    d, ready = run_daemon(w, q, *extra)
    try:
        line = lst.stdout.readline().strip() or lst.stdout.read()
        ok = os.read(ready, 1)
        rc = d.wait(10) if ok != b"1" else None
        return line, ok, rc, w.log_text(f"daemon-{q.name}")
    finally:
        os.close(ready)
        lst.kill()
        lst.wait()


def test_another_qubes_call_identity_is_not_taken_as_the_agent(world):
    line, ok, rc, log = scenario(world, "b", B, CALL_ID_BASE + world.qid(A), CALL_GID, check=True)
    assert line == "daemon-bytes 0", (line, log)  # not one byte of b's daemon reached a
    assert ok != b"1" and rc == 3, (ok, rc, log)  # b's start fails ...
    assert f"bound by UID {CALL_ID_BASE + world.qid(A)}, not the qube's {UID_FIRST + world.qid(B) * UID_RANGE}" in log, log


def test_control_without_the_check_the_impostor_is_the_agent(world):
    line, ok, _, log = scenario(world, "b", B, CALL_ID_BASE + world.qid(A), CALL_GID, check=False)
    assert line == "daemon-bytes 12" and ok == b"1", (line, ok, log)


def test_control_the_qubes_own_uid_is_served(world):
    uid = UID_FIRST + world.qid(B) * UID_RANGE
    line, ok, _, log = scenario(world, "b", B, uid, uid, check=True)
    assert line == "daemon-bytes 12" and ok == b"1", (line, ok, log)


def test_bulkheadd_gives_each_daemon_its_qubes_uid_and_the_ns_agent_is_it(tmp_path):
    """The check is on for real qubes: bulkheadd passes the qube's uid_base, and the ns
    engine's agent (root of the qube's user namespace) is that host UID: b works."""
    from admin_fixtures import Daemon, qvm_run
    from test_lifecycle import qrexec_daemons_of
    d = Daemon(tmp_path, defaults=False).start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
        d.call("admin.vm.Create.AppVM+host", payload="name=b label=red")
        r = qvm_run(d, "-p", "b", "echo ok")
        assert r.returncode == 0 and r.stdout == b"ok\n", r
        qid = int(d.call("admin.vm.property.Get+qid", "b").split()[-1])
        pids = qrexec_daemons_of(d, "b")
        assert pids
        for pid in pids:
            args = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
            assert args[args.index(b"--agent-uid") + 1] == str(UID_FIRST + qid * UID_RANGE).encode(), args
        vchan = d.runtime / "qubes" / "b" / "vchan" / f"vchan.{qid}.0.512.sock"
        assert os.lstat(vchan).st_uid == UID_FIRST + qid * UID_RANGE
    finally:
        try:
            d.call("admin.vm.Kill", "b")
        except Exception:
            pass
        d.stop()
