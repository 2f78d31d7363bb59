"""bulkheadd may run at a higher CPU weight than qubes (BULKHEAD_DAEMON_NICE, e.g. -5;
src/admin/daemon_priority.c). The boundary: nothing it starts may keep that weight. A qube, its init, its qrexec daemon and
call processes, a disposable and everything in them run at nice 0, and root in a qube
cannot raise its own weight above that."""
import pathlib as _pl
import subprocess
import sys as _sys

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import Daemon, engine_daemon, kill_all, qvm_run  # noqa: E402,F401
from procstat import all_stats, stat_of  # noqa: E402
from waiting import wait_for  # noqa: E402


def _can_raise():
    """Whether this host lets root raise a process's weight (CAP_SYS_NICE)."""
    return subprocess.run([_sys.executable, "-c", "import os; os.setpriority(os.PRIO_PROCESS, 0, -1)"]).returncode == 0


pytestmark = pytest.mark.skipif(not _can_raise(), reason="root cannot raise a process's CPU weight here (no CAP_SYS_NICE)")


@pytest.fixture(autouse=True)
def _raised_weight(monkeypatch):
    monkeypatch.setenv("BULKHEAD_DAEMON_NICE", "-5")


def nice_of(pid):
    return int(stat_of(pid)[1][16])


def descendants(root):
    """Every live process under root (by parent PID), with its nice value and name."""
    kids = {}
    for p, (name, fl) in all_stats().items():
        kids.setdefault(int(fl[1]), []).append((p, int(fl[16]), name))
    out, todo = [], [root]
    while todo:
        for k in kids.get(todo.pop(), []):
            out.append(k)
            todo.append(k[0])
    return out


def test_children_do_not_inherit_the_daemon_weight(engine_daemon):
    d = engine_daemon
    assert nice_of(d.proc.pid) == -5
    d.call("admin.vm.Start", "a")
    # a long-lived process in the qube, started by a call (agent, service, its child)
    r = qvm_run(d, "-p", "a", "sleep 600 >/dev/null 2>&1 </dev/null & echo started")
    assert r.returncode == 0 and b"started" in r.stdout, r
    tree = wait_for(lambda: (lambda t: t if any(n == "sleep" for _, _, n in t) else None)(descendants(d.proc.pid)))
    assert tree, "the qube's sleep is not under bulkheadd"
    names = {n for _, _, n in tree}
    # positive control: the walk reaches the qube's init, its qrexec daemon and the service
    assert {"bulkhead-init", "qrexec-daemon", "sleep"} <= names, names
    raised = [(p, ni, n) for p, ni, n in tree if ni != 0]
    assert not raised, f"processes started by bulkheadd kept a raised weight: {raised}"


def test_qube_root_cannot_raise_its_weight(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Start", "a")
    # positive control: lowering its own weight works
    r = qvm_run(d, "-p", "-u", "root", "a", "renice -n 5 -p $$ >/dev/null && cut -d' ' -f19 /proc/$$/stat")
    assert r.returncode == 0 and r.stdout.strip() == b"5", r
    r = qvm_run(d, "-p", "-u", "root", "a", "renice -n -5 -p $$; echo rc=$?; cut -d' ' -f19 /proc/$$/stat")
    assert b"rc=0" not in r.stdout and r.stdout.split()[-1] == b"0", r


def test_weight_is_configurable(tmp_path, monkeypatch):
    monkeypatch.delenv("BULKHEAD_DAEMON_NICE")  # the default: the weight it was started with
    d = Daemon(tmp_path / "default", defaults=False).start()
    try:
        assert nice_of(d.proc.pid) == 0
    finally:
        d.stop()
        d.cleanup()
    monkeypatch.setenv("BULKHEAD_DAEMON_NICE", "-30")  # out of range: the default, with a warning
    d = Daemon(tmp_path / "bad", defaults=False).start()
    try:
        assert nice_of(d.proc.pid) == 0
        assert "BULKHEAD_DAEMON_NICE" in d.log.read_text()
    finally:
        d.stop()
        d.cleanup()
