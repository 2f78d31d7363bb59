"""The daemon's children that take a qube's host identity hold none of bulkheadd's fds.

Two children of bulkheadd become a qube's host UID without exec'ing (so close-on-exec
does nothing for them): the user namespace holder (src/driver/ns/idmap.c: the qube's
first host UID, dumpable, at every start) and the halt's sweep of the qube's qrexec
UIDs (src/admin/qube_ids_reap.c: the qube's call and daemon UIDs). Holding the daemon's
fds (its Admin API socket, its store, the host's qid claims) as a qube's UID would hand
them to whatever can reach a process of that UID. Each closes every fd but stdio and
the holder's two pipe ends.

To see them, strace holds the daemon's and its children's unshare() and kill() calls
at entry for 1 s (the holder's unshare(CLONE_NEWUSER), the sweep's kill(-1); below the
sweep's 2 s deadline, qube_ids_reap.c), and the test lists the fds of every process of
those UIDs meanwhile."""
import errno
import os
import pathlib
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import STRACE, engine_daemon, syscalls_held  # noqa: E402,F401
import qid_slots  # noqa: E402
from qrexec_fixtures import CALL_ID_BASE, UNPRIV_ID_BASE  # noqa: E402


def real_uid(pid):
    try:
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return int(status.split("\nUid:\t")[1].split()[0])


def daemon_copies(uids):
    """(pid, real UID) of every copy of bulkheadd (a child that did not exec) in the
    host's user namespace whose real UID is in uids. (The qube's first stage, also a copy
    and of the qube's first UID, seen from the host, is in the qube's user namespace: its
    fds are close-on-exec and go when it execs the qube's init.)"""
    mine = os.readlink("/proc/self/ns/user")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        uid = real_uid(pid)
        if uid not in uids:
            continue
        try:
            if pathlib.Path(f"/proc/{pid}/comm").read_text().strip() != "bulkheadd":
                continue
            if os.readlink(f"/proc/{pid}/ns/user") != mine:
                continue
        except OSError:
            continue
        yield int(pid), uid


def fds_of_uid(uids, seen):
    """Adds to seen {pid: {fd: target}} the fds of every copy of bulkheadd of uids."""
    for pid, _ in daemon_copies(uids):
        try:
            fds = {int(fd): os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
        except OSError:
            continue
        seen.setdefault(pid, {}).update(fds)


def watch(d, action, look, calls="kill,unshare", timeout=120):
    """Runs action (an Admin API call) in a thread while strace holds the daemon's and its
    children's calls (system call names) at entry for 1 s each; calls look() every 50 ms
    meanwhile."""
    err = []
    with syscalls_held(d.proc.pid, calls, 1000):
        t = threading.Thread(target=lambda: err.append(None) if action() is None else err.append(None))
        t.start()
        deadline = time.time() + timeout
        while t.is_alive() and time.time() < deadline:
            look()
            time.sleep(0.05)
        t.join(timeout=max(1, deadline - time.time()))


def daemons_own(fds):
    """What of the daemon's shows among fds: beyond stdio, the holder's pipes and the
    sweep's own walk of /proc (proc_ids.c)."""
    return {fd: t for fd, t in fds.items() if fd > 2 and not t.startswith("pipe:")
            and t != "/proc" and not t.startswith("/proc/")}


@pytest.mark.skipif(not os.access(STRACE, os.X_OK), reason="needs strace")
def test_children_that_become_a_qube_hold_no_daemon_fds(engine_daemon):
    d = engine_daemon
    q = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    base = qid_slots.uid_base(q)
    holder = {}
    watch(d, lambda: d.call("admin.vm.Start", "a"), lambda: fds_of_uid({base}, holder))
    assert "a class=AppVM state=Running" in d.call("admin.vm.List", "dom0")
    # positive control: the holder was seen (it waits in unshare() under strace)
    assert holder, "no process of the qube's first host UID was seen during the start"
    for pid, fds in holder.items():
        assert not daemons_own(fds), f"the user namespace holder {pid} holds the daemon's fds: {fds}"
        assert len([fd for fd in fds if fd > 2]) <= 2, fds
    sweep = {}
    watch(d, lambda: d.call("admin.vm.Kill", "a"), lambda: fds_of_uid({CALL_ID_BASE + q, UNPRIV_ID_BASE + q}, sweep))
    assert "a class=AppVM state=Halted" in d.call("admin.vm.List", "dom0")
    assert sweep, "no process of the qube's qrexec UIDs was seen during the halt's sweep"
    for pid, fds in sweep.items():
        assert not daemons_own(fds), f"the sweep {pid} holds the daemon's fds: {fds}"


def reach_from_uid(pid, uid):
    """From a process of uid (no groups, no capabilities): can it read pid's memory
    (/proc/PID/mem, which takes the same check as ptrace and process_vm_readv)? Returns
    None when the process was gone before the try or the probe was ended by a signal
    before it told, else (reached, errno name)."""
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        out = b"gone"
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            try:
                fd = os.open(f"/proc/{pid}/mem", os.O_RDONLY)
                os.close(fd)
                out = b"reached"
            except PermissionError:
                out = b"EACCES"
            except (ProcessLookupError, FileNotFoundError):  # ended meanwhile
                out = b"gone"
            except OSError as e:
                out = (errno.errorcode.get(e.errno, str(e.errno))).encode()
        finally:
            os.write(w, out)
            os._exit(0)
    os.close(w)
    out = os.read(r, 64).decode()
    os.close(r)
    _, status = os.waitpid(child, 0)
    if out == "gone":
        return None
    if not out and os.WIFSIGNALED(status):
        # the probe is itself a process of uid: the sweep's kill(-1), let go by strace,
        # can end it before it tells; that try says nothing either way
        return None
    return out == "reached", out


@pytest.mark.skipif(not os.access(STRACE, os.X_OK), reason="needs strace")
def test_the_sweep_cannot_be_read_by_the_uids_it_sweeps(engine_daemon):
    """The halt's sweep is one child of bulkheadd that takes the qube's daemon identity
    and then its call identity (keeping 0 as its saved UID until the second, so that it
    can go from one to the other): a process of the UID it holds can signal it, as
    kill(2) allows, but must never reach its memory (a copy of bulkheadd's): at the first
    UID its saved UID 0 keeps a tracer out, at the second its being non-dumpable (a
    build that made it dumpable fails here). strace holds its kill(-1) for 1 s at each
    UID; meanwhile a process of that UID tries /proc/PID/mem."""
    d = engine_daemon
    q = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    d.call("admin.vm.Start", "a")
    uids = {CALL_ID_BASE + q, UNPRIV_ID_BASE + q}
    tried = {}  # uid -> [(pid, result)]

    def look():
        for pid, uid in daemon_copies(uids):
            res = reach_from_uid(pid, uid)
            if res is not None:
                tried.setdefault(uid, []).append((pid, res))

    watch(d, lambda: d.call("admin.vm.Kill", "a"), look, calls="kill")
    assert "a class=AppVM state=Halted" in d.call("admin.vm.List", "dom0")
    # positive control: the sweep was seen at each UID (held in its kill(-1) there)
    assert set(tried) == uids, f"the sweep was not seen at every UID: {tried}"
    for uid, results in tried.items():
        for pid, (reached, how) in results:
            assert not reached, f"a process of uid {uid} read the memory of the sweep {pid}"
            assert how == "EACCES", (uid, pid, how)
