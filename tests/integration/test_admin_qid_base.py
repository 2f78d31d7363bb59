"""Two bulkheadd instances on one host never share a qid, and so never a host identity
(docs/architecture.md, "Host identities"): --qid-base gives each its own range, and every
qid a daemon holds is claimed on the host (src/admin/qid_claim.c), so a second daemon
skips it even when given the same base, and refuses to start with a store whose qid
another daemon holds. A stopped daemon's qubes, left running, hold no claim: their live
processes keep their qids from other daemons (src/admin/proc_ids.c). What depends on it:
a halted qube's sweep of its qrexec UIDs (qube_ids_reap.c) must never reach another
daemon's qube, and two qubes must never share host UIDs."""
import os
import signal
import subprocess
import sys

import pytest

import qid_slots
from admin_fixtures import BUILD, Daemon, bare_daemon, kill_all, wait_state  # noqa: F401
from qrexec_fixtures import CALL_ID_BASE, UNPRIV_ID_BASE, become, become_call_identity
from waiting import wait_for


def qid(d, name):
    return int(d.call("admin.vm.property.Get+qid", name).split()[-1])


def engine(d):
    """A template `host` and an app qube `a` on d (a real ns qube when started)."""
    d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
    d.call("admin.property.Set+default_template", payload="host")
    d.call("admin.vm.Create.AppVM+host", payload="name=a label=red")
    return d


def sleeper(preexec):
    """A process of some identity (a qube's leftover call, say) that lives until killed."""
    return subprocess.Popen(["sleep", "600"], preexec_fn=preexec, stdin=subprocess.DEVNULL)


def alive(p):
    return p.poll() is None


# The main thread ends alone (SYS_exit, not exit_group) while another sleeps: the
# process's leader is then a zombie (State Z) and its other thread runs on with its UIDs.
SYS_EXIT = {"x86_64": 60, "aarch64": 93}[os.uname().machine]
HALF_DEAD = f"""
import ctypes, threading, time
threading.Thread(target=time.sleep, args=(600,)).start()
ctypes.CDLL(None).syscall({SYS_EXIT}, 0)
"""


def half_dead(preexec):
    """A process of some identity whose leader has exited while a thread of it lives on
    (proc_ids.c must count it: its Threads count is 2, a wholly dead zombie's is 1)."""
    p = subprocess.Popen([sys.executable, "-c", HALF_DEAD], preexec_fn=preexec, stdin=subprocess.DEVNULL)

    def leader_gone():
        s = open(f"/proc/{p.pid}/status").read()
        return "\nState:\tZ" in s and int(s.split("\nThreads:\t")[1].split()[0]) > 1
    assert wait_for(leader_gone), "the helper's main thread did not end alone"
    return p


def range_identity(q):
    return become(qid_slots.uid_base(q), qid_slots.uid_base(q))


@pytest.mark.parametrize("identity", [range_identity, become_call_identity], ids=["range", "call"])
def test_a_qid_held_by_a_zombie_leaders_live_thread_is_skipped(bare_daemon, identity):
    """A process whose main thread exited first shows State Z in /proc while its other
    threads run on with its UIDs: the qid those UIDs belong to is still held."""
    d = bare_daemon
    p = half_dead(identity(d.qid_base))
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
        assert qid(d, "t") == d.qid_base + 1, "a qid whose UIDs a live thread holds was handed out"
        assert alive(p)
    finally:
        p.kill()
        p.wait()


def test_a_daemon_refuses_a_qube_whose_range_a_zombie_leaders_thread_holds(bare_daemon):
    """The start's check (bh_lifecycle_check_ids, bh_qid_live_pid) counts the same
    process: a halted qube of the store whose range it holds is not this daemon's to run."""
    d = bare_daemon
    d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
    q = qid(d, "t")
    d.stop()
    p = half_dead(range_identity(q))
    try:
        with pytest.raises(RuntimeError) as e:
            d.start()
        assert f"refusing to start: qube t: the host UIDs of its qid {q} are in use by process {p.pid}" in str(e.value)
        # the refusal made nothing of the qube's (review finding: no runtime dir is left)
        assert not (d.runtime / "qubes" / "t").exists()
    finally:
        p.kill()
        p.wait()
    d.start()


@pytest.fixture
def two(tmp_path):
    """Daemons A and B on one host, both told the SAME base: only the host claims keep
    their qids apart."""
    base = qid_slots.next_base()
    made = [Daemon(tmp_path / "A", defaults=False, qid_base=base), Daemon(tmp_path / "B", defaults=False, qid_base=base)]
    yield made
    for d in made:
        if d.proc is not None:
            kill_all(d)
        d.stop()
        d.cleanup()


def test_qids_start_at_the_base_and_stored_ones_stay(bare_daemon):
    d = bare_daemon
    b = d.qid_base
    d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
    d.call("admin.vm.Create.AppVM+t", payload="name=a label=red")
    d.call("admin.vm.property.Set+provides_network", "a", "True")
    assert (qid(d, "t"), qid(d, "a")) == (b, b + 1)
    assert d.call("admin.vm.property.Get+qid", "dom0") == "default=False type=int 0"
    # Qubes' address rule carries on above 255 (the third byte)
    assert d.call("admin.vm.property.Get+ip", "a").split()[-1] == f"10.137.{(b + 1) >> 8}.{(b + 1) & 255}"
    # a new base: stored qubes keep their qids (no renumbering), new ones start there
    d.stop()
    d.qid_base = b + 10
    d.start()
    d.call("admin.vm.Create.AppVM+t", payload="name=c label=red")
    assert (qid(d, "t"), qid(d, "a"), qid(d, "c")) == (b, b + 1, b + 10)
    # and the freed one below the base is not handed out again
    d.call("admin.vm.Remove", "a")
    d.call("admin.vm.Create.AppVM+t", payload="name=e label=red")
    assert qid(d, "e") == b + 11


def test_same_base_second_daemon_skips_the_first_ones_qids(two):
    a, b = (d.start() for d in two)
    for d in (a, b):
        d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
    assert qid(a, "t") == a.qid_base
    assert qid(b, "t") == a.qid_base + 1  # a's is held on the host
    assert qid_slots.held_elsewhere(qid(a, "t")) and qid_slots.held_elsewhere(qid(b, "t"))
    # a removed qube's qid is given back to the host
    a.call("admin.vm.Remove", "t")
    assert wait_for(lambda: not qid_slots.held_elsewhere(a.qid_base))
    b.call("admin.vm.Create.TemplateVM", payload="name=t2 label=black")
    assert qid(b, "t2") == a.qid_base
    # a daemon gone (here: killed, no clean stop) holds nothing any more
    b.stop(signal.SIGKILL)
    assert wait_for(lambda: not qid_slots.held_elsewhere(a.qid_base) and not qid_slots.held_elsewhere(a.qid_base + 1))


def test_daemon_refuses_a_store_whose_qid_another_daemon_holds(two):
    a, b = two
    a.start()
    a.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
    a.stop()
    b.start()
    b.call("admin.vm.Create.TemplateVM", payload="name=u label=black")
    assert qid(b, "u") == a.qid_base  # free while a was stopped
    with pytest.raises(RuntimeError) as e:
        a.start()
    assert "refusing to start: qube t: qid" in str(e.value) and "taken on this host" in str(e.value)
    b.stop()
    a.start()
    assert qid(a, "t") == a.qid_base


def test_a_qid_a_test_process_claims_is_skipped(tmp_path):
    held = qid_slots.claim(1)  # as the ns and qrexec tests claim the qids they use
    d = Daemon(tmp_path, defaults=False, qid_base=held).start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
        assert qid(d, "t") == held + 1
    finally:
        d.stop()
        d.cleanup()


def test_halting_a_qube_ends_only_its_own_daemons_identities(two):
    """A's qube halts: A ends every process of its call and daemon UIDs (positive
    control: A's leftover call dies). B's qube of the next qid and its leftover call and
    daemon-side process live on; with a shared qid they would have been swept too."""
    a, b = (engine(d.start()) for d in two)
    qa, qb = qid(a, "a"), qid(b, "a")
    assert qa != qb
    a.call("admin.vm.Start", "a")
    mine = sleeper(become_call_identity(qa))
    theirs = [sleeper(become_call_identity(qb)), sleeper(become(UNPRIV_ID_BASE + qb, UNPRIV_ID_BASE + qb))]
    try:
        assert wait_for(lambda: all(int(open(f"/proc/{p.pid}/status").read().split("Uid:\t")[1].split()[0]) != 0
                                    for p in [mine, *theirs]))
        a.call("admin.vm.Kill", "a")
        assert wait_state(a, "a", "Halted", timeout=60)
        assert wait_for(lambda: not alive(mine)), "A's sweep did not run: the control failed"
        assert all(alive(p) for p in theirs), "A's halted qube's sweep killed B's processes"
    finally:
        for p in [mine, *theirs]:
            if alive(p):
                p.kill()
            p.wait()


@pytest.mark.parametrize("bad", ["0", "65519", "12x", "-3", " 5"])
def test_bad_base_is_refused(tmp_path, bad):
    r = subprocess.run([str(BUILD / "src/admin/bulkheadd"), "--root", str(tmp_path / "r"), "--runtime-dir",
                        str(tmp_path / "run"), "--qid-base", bad], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "qid-base" in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()  # refused before it made anything


def test_base_from_the_environment_and_the_option_wins(tmp_path):
    base = qid_slots.next_base()
    d = Daemon(tmp_path / "env", defaults=False, qid_base=base)
    os.environ["BULKHEAD_QID_BASE"] = str(base + 5)
    try:
        # the option the fixture passes wins over the environment
        d.start()
        d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
        assert qid(d, "t") == base
        d.stop()
        # without the option, the environment's base
        d.qid_base = None
        d.start()
        d.call("admin.vm.Create.TemplateVM", payload="name=u label=black")
        assert qid(d, "u") == base + 5
    finally:
        del os.environ["BULKHEAD_QID_BASE"]
        d.stop()
        d.cleanup()


def test_a_qube_high_in_the_qid_range_starts_and_runs(tmp_path):
    """Qids from 32753 up put the qube's host UIDs (2^20 + 2^16 * qid) above 2^31: every
    helper must take them as unsigned (bulkhead-procfs refused them once, and no such
    qube could start). A qid near the top of the range (65518)."""
    d = engine(Daemon(tmp_path, defaults=False, qid_base=65400).start())
    try:
        q = qid(d, "a")
        assert (1 << 20) + (q << 16) >= 1 << 31
        d.call("admin.vm.Start", "a")
        r = subprocess.run([str(BUILD / "src/qrexec/qvm-run"), "-p", "a", "cat /proc/uptime; id -u"],
                           env=dict(d.env, BULKHEAD_RUNTIME=str(d.runtime)), capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert len(r.stdout.split()) == 3  # the qube's own /proc/uptime, served by its procfs
    finally:
        kill_all(d)
        d.stop()
        d.cleanup()


def test_the_qrexec_worlds_qids_are_skipped_by_a_daemon(tmp_path):
    """The qrexec test world runs qrexec-daemons for its qubes directly, with qids it
    claims (256 of them, qrexec_fixtures.World); a bulkheadd whose base falls among them
    gives its qubes none of them."""
    from qrexec_fixtures import World
    w = World()
    d = Daemon(tmp_path, defaults=False, qid_base=w.qid(5)).start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
        assert qid(d, "t") >= w.qid_first + World.QIDS
    finally:
        d.stop()
        d.cleanup()
        w.close()
    # given back when the world closes
    assert not qid_slots.held_elsewhere(w.qid(5))


@pytest.mark.parametrize("bad", ["0", "65519", "70000"])
def test_the_ns_engine_refuses_a_qid_out_of_range(tmp_path, bad):
    """bulkhead-ns --qid used directly: 0 is dom0's, and past 65518 the qube's host IDs
    would wrap onto another qube's (its procfs UID is 2^19 + 3 * 2^16 + qid)."""
    r = subprocess.run([str(BUILD / "src/driver/bulkhead-ns"), "--runtime", str(tmp_path / "rt"), "start", "x",
                        "--uid-base", str(qid_slots.uid_base(qid_slots.take())), "--qid", bad],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "not a qid from 1 to 65518" in r.stderr, r.stderr
    assert not (tmp_path / "rt" / "qubes" / "x").exists()


def range_holders(q):
    """Live processes with a host UID (real, effective or saved) in qid q's range: a
    running qube of that qid."""
    lo = qid_slots.uid_base(q)
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            status = open(f"/proc/{pid}/status").read()
        except OSError:
            continue
        state = status.split("\nState:\t")[1][0]
        uids = [int(u) for u in status.split("\nUid:\t")[1].split()[:3]]
        if state not in "ZX" and any(lo <= u < lo + qid_slots.QUBE_UID_RANGE for u in uids):
            out.append(int(pid))
    return out


def test_a_stopped_daemons_running_qube_keeps_its_host_ids(two):
    """A daemon's running qubes outlive its stop (`make stop`) and hold no claim until it
    starts again and adopts them. Meanwhile another daemon with an overlapping base must
    not give one of their qids to a new qube (the two qubes would share host UIDs: signals,
    /proc, files), and a daemon whose store holds a qid that a stopped daemon's qube runs
    on must not start (its sweep of that qid would end the other's qrexec processes, and
    starting its own qube there would share the UIDs). Then each adopts its own again."""
    a, b = two
    engine(a.start())
    base, qa = a.qid_base, qid(a, "a")
    assert (qid(a, "host"), qa) == (base, base + 1)
    a.call("admin.vm.Start", "a")
    a.stop()
    try:
        assert range_holders(qa), "A's qube did not outlive A's stop"
        engine(b.start())
        # the template takes base (A's halted one's: unused on the host), the app qube
        # skips A's running qube's qid
        qt, qb = qid(b, "host"), qid(b, "a")
        assert qt == base and qb != qa, f"B's new qube was given qid {qb}, that of A's running qube"
        b.call("admin.vm.Start", "a")
        b.call("admin.vm.Start", "host")
        assert range_holders(qb) and range_holders(qt)
        assert qb != qa and not set(range_holders(qb)) & set(range_holders(qa))
        # A's store holds B's running template's qid (A's template, halted): refused
        # while B runs (the claim) and, the new case, while B is stopped and its qube runs
        b.stop()
        # the template's init (not every process of it: short-lived ones may end by themselves)
        t_init = int((b.runtime / "qubes/host/init.pid").read_text().split()[0])
        assert t_init in range_holders(qt)
        with pytest.raises(RuntimeError) as e:
            a.start()
        assert f"refusing to start: qube host: the host UIDs of its qid {qt} are in use by process" in str(e.value)
        assert t_init in range_holders(qt), "A's refused start ended B's qube's init"
        # B adopts its qubes again and ends them; then A adopts its qube
        b.start()
        assert wait_state(b, "host", "Running", timeout=5) and wait_state(b, "a", "Running", timeout=5)
        kill_all(b)
        assert wait_state(b, "host", "Halted", timeout=60) and wait_state(b, "a", "Halted", timeout=60)
        b.stop()
        a.start()
        assert wait_state(a, "a", "Running", timeout=5), "A did not adopt its running qube"
        assert qid(a, "a") == qa and qid_slots.held_elsewhere(qa)
        r = subprocess.run([str(BUILD / "src/qrexec/qvm-run"), "-p", "a", "id -u"],
                           env=dict(a.env, BULKHEAD_RUNTIME=str(a.runtime)), capture_output=True, timeout=120)
        assert r.returncode == 0, r.stderr
    finally:
        # every qube of both ends (each daemon adopts and kills its own, one at a time)
        for d in (a, b, a):
            d.stop()
            try:
                kill_all(d)
            except (RuntimeError, OSError):
                pass
            d.stop()
