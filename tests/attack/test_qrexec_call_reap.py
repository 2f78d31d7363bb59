"""Nothing of a qube's qrexec identities outlives the qube.

A qube's call identity (host UID 2^19 + 2^16 + qid) is what bulkheadd serves as that
qube (call_auth.c), and qids are reused: a call process or dom0 service the qube took
over could fork, setsid and outlive its qube, and would then be served as the next qube
with that qid. So when a qube has halted, bulkheadd ends every process of its call UID
and of its daemon UID (2^19 + qid) before the qid can be given again.

The attacker here is a detached process (own session) with a's call UID, and one with
a's daemon UID, started while a runs. Positive control: both are alive before the kill
(and keep running while a runs); after admin.vm.Kill a both are gone, killed by SIGKILL.
Processes of b's call UID and root's are untouched by a's halt."""
import pathlib
import signal
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from admin_fixtures import engine_daemon, qvm_run  # noqa: E402,F401
from qrexec_fixtures import CALL_GID, CALL_ID_BASE, UNPRIV_ID_BASE, become  # noqa: E402


def detached(uid, gid):
    """A process of `uid` in a session of its own, as a taken-over call would leave."""
    return subprocess.Popen(["sleep", "600"], preexec_fn=become(uid, gid), start_new_session=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def uid_of(pid):
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Uid:"):
            return [int(x) for x in line.split()[1:]]
    return None


def test_a_halted_qubes_call_and_daemon_uid_processes_are_ended(engine_daemon):
    d = engine_daemon
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    qid_a = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    qid_b = int(d.call("admin.vm.property.Get+qid", "b").split()[-1])
    assert qid_a != qid_b
    procs = []
    try:
        call_a = detached(CALL_ID_BASE + qid_a, CALL_GID)
        procs.append(call_a)
        unpriv_a = detached(UNPRIV_ID_BASE + qid_a, UNPRIV_ID_BASE + qid_a)
        procs.append(unpriv_a)
        call_b = detached(CALL_ID_BASE + qid_b, CALL_GID)
        procs.append(call_b)
        mine = subprocess.Popen(["sleep", "600"], start_new_session=True)  # root's: dom0's
        procs.append(mine)
        time.sleep(0.3)
        # positive control: they run, with the identities meant, while a runs
        assert uid_of(call_a.pid) == [CALL_ID_BASE + qid_a] * 4
        assert uid_of(unpriv_a.pid) == [UNPRIV_ID_BASE + qid_a] * 4
        for p in procs:
            assert p.poll() is None, p.args
        # a's calls still work meanwhile; nothing is killed while a runs
        assert qvm_run(d, "a", "true").returncode == 0
        assert call_a.poll() is None and unpriv_a.poll() is None

        d.call("admin.vm.Kill", "a")
        assert "a class=AppVM state=Halted" in d.call("admin.vm.List", "dom0")
        # ended by the halt (SIGKILL), not later: the Kill's reply comes after it
        assert call_a.wait(timeout=10) == -signal.SIGKILL
        assert unpriv_a.wait(timeout=10) == -signal.SIGKILL
        # another qube's call identity and root's processes are untouched
        assert call_b.poll() is None and mine.poll() is None
        assert "b class=AppVM state=Running" in d.call("admin.vm.List", "dom0")
        assert qvm_run(d, "b", "true").returncode == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
