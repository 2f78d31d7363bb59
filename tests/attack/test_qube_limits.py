"""What one qube's calls may cost the host: disposables per calling qube, and the
memory all qubes together may be given (qmemman's rule: a qube that cannot get its
`memory` does not start, with a clear error)."""
import pathlib as _pl
import sys as _sys
import threading

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import AdminError, engine_daemon, qvm_run  # noqa: E402,F401
from ns_fixtures import cgroup_file, cgroup_v2_host, proc_cgroups  # noqa: E402
from waiting import wait_for  # noqa: E402

CVM = "/usr/lib/bulkhead/qrexec-client-vm"


@pytest.fixture
def small_limits(monkeypatch):
    monkeypatch.setenv("BULKHEAD_QUBES_MEMORY_MIB", "1000")


def all_qubes_memory_limit(d, running):
    """The memory limit of the cgroup above every qube of this daemon, found through a
    running qube's init (/proc/<pid>/cgroup), v1 or v2."""
    pid = int((d.runtime / "qubes" / running / "init.pid").read_text().split()[0])
    parents = {ctrl: path.parent for ctrl, path in proc_cgroups(pid).items()}
    return int(cgroup_file(parents, ("memory", "memory.limit_in_bytes"), "memory.max").read_text())


def test_qubes_memory_budget(small_limits, engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=c label=red")
    for q in ("a", "b", "c"):
        d.call("admin.vm.property.Set+memory", q, "400")
    d.call("admin.vm.Start", "a")
    d.call("admin.vm.Start", "b")  # positive control: 800 of 1000 MiB fit
    with pytest.raises(AdminError) as ei:
        d.call("admin.vm.Start", "c")
    assert str(ei.value).startswith("QubesMemoryError: Not enough memory to start domain 'c'"), str(ei.value)
    assert "state=Halted" in d.call("admin.vm.List", "c")
    assert all_qubes_memory_limit(d, "a") == 1000 << 20
    d.call("admin.vm.Kill", "a")
    d.call("admin.vm.Start", "c")  # room again
    assert "state=Running" in d.call("admin.vm.List", "c")
    # A call whose disposable cannot get its memory is refused at once (not after the
    # 60 s qrexec timeout), with the reason in the log.
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    (d.root / "policy.d").mkdir(exist_ok=True)
    (d.root / "policy.d" / "10-test.policy").write_text("qubes.VMShell  *  @anyvm  @dispvm:dvmt  allow\n")
    import time
    t0 = time.monotonic()
    r = qvm_run(d, "-p", "--user", "root", "b", "echo hostname | %s @dispvm:dvmt qubes.VMShell" % CVM)
    # the bound is the behaviour: refused well before the 60 s qrexec timeout, however
    # slow the machine (a refusal takes well under a second here)
    assert r.returncode == 126 and time.monotonic() - t0 < 50, (r.stdout, r.stderr)
    assert "Not enough memory to start domain 'disp" in d.log.read_text()


@pytest.fixture
def two_dispvms(monkeypatch):
    monkeypatch.setenv("BULKHEAD_DISPVMS_PER_CALLER", "2")


def test_disposables_bounded_per_calling_qube(two_dispvms, engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    d.call("admin.vm.property.Set+memory", "dvmt", "50")
    for q in ("a", "b"):
        d.call("admin.vm.property.Set+memory", q, "50")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.VMShell  *  @anyvm  @dispvm:dvmt  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    # a holds 4 calls open in disposables at once: 2 get one, the rest are refused
    holds = "for i in 1 2 3 4; do (echo 'hostname; sleep 6' | %s @dispvm:dvmt qubes.VMShell > /tmp/o$i 2>&1; echo rc=$? >> /tmp/o$i) & done; wait; cat /tmp/o*" % CVM
    res = {}
    t = threading.Thread(target=lambda: res.update(a=qvm_run(d, "-p", "--user", "root", "a", holds)))
    t.start()
    assert wait_for(lambda: len([ln for ln in d.call("admin.vm.List", "dom0").splitlines()
                                 if ln.startswith("disp")]) >= 2, step=0.1), "a's two disposables never ran"
    # another qube still gets its disposable while a is at its limit
    r = qvm_run(d, "-p", "--user", "root", "b", "echo hostname | %s @dispvm:dvmt qubes.VMShell" % CVM)
    assert r.returncode == 0 and r.stdout.startswith(b"disp"), (r.stdout, r.stderr)
    t.join()
    out = res["a"].stdout.decode()
    assert out.count("rc=0") == 2 and out.count("rc=126") == 2, out  # positive control: 2 ran
    assert "Too many disposables for a" in d.log.read_text()


@pytest.fixture
def many_dispvms(monkeypatch):
    monkeypatch.setenv("BULKHEAD_DISPVMS_PER_CALLER", "100")  # the rate is what is tested
    # a slow rate: on a slow machine the burst's requests arrive over seconds, and at the
    # default 1 per second they would earn back what the test expects to be refused
    monkeypatch.setenv("BULKHEAD_DISPVM_RATE", "0.1")


def test_disposable_creation_rate_per_calling_qube(many_dispvms, engine_daemon):
    """New disposables per calling qube: a burst of 4, then the rate (1 a second by
    default, 1 per 10 s here); the rest of a burst is refused at once (the call gets
    126), another qube is not affected."""
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    for q in ("dvmt", "a", "b"):
        d.call("admin.vm.property.Set+memory", q, "50")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.VMShell  *  @anyvm  @dispvm:dvmt  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    burst = ("for i in 1 2 3 4 5 6 7 8 9 10; do (echo hostname | %s @dispvm:dvmt qubes.VMShell > /tmp/o$i 2>&1;"
             " echo rc=$? >> /tmp/o$i) & done; wait; cat /tmp/o*" % CVM)
    out = qvm_run(d, "-p", "--user", "root", "a", burst).stdout.decode()
    ok, refused = out.count("rc=0"), out.count("rc=126")
    assert ok >= 4 and ok + refused == 10, out  # positive control: the burst ran
    assert refused >= 2, out
    assert "refused a new disposable: over 0.1 per second" in d.log.read_text()
    r = qvm_run(d, "-p", "--user", "root", "b", "echo hostname | %s @dispvm:dvmt qubes.VMShell" % CVM)
    assert r.returncode == 0 and r.stdout.startswith(b"disp"), (r.stdout, r.stderr)


def test_qrexec_daemon_is_charged_to_its_qube(engine_daemon):
    """The host process that handles a qube's calls (and the call processes it forks)
    counts against that qube's CPU share, and nothing else of the qube's cgroups."""
    import time
    d = engine_daemon
    if cgroup_v2_host():
        return qrexec_daemon_charged_v2(d)
    if not _pl.Path("/sys/fs/cgroup/cpu/cgroup.procs").exists():
        pytest.skip("no cgroup v1 cpu controller")
    d.call("admin.vm.Start", "a")
    pid = int((d.runtime / "qubes" / "a" / "qrexec-daemon.pid").read_text())
    cg = dict(line.split(":", 2)[1:] for line in _pl.Path(f"/proc/{pid}/cgroup").read_text().splitlines())
    cpu_path = cg.get("cpu,cpuacct") or cg.get("cpu")
    assert cpu_path and cpu_path.startswith("/bulkhead-") and cpu_path.endswith("/a"), cg
    for ctrl in ("memory", "pids", "freezer"):  # pausing or killing the qube never reaches it
        assert not cg[ctrl].endswith("/a"), cg
    cpu_dir = _pl.Path("/sys/fs/cgroup/cpu") / cpu_path.lstrip("/")
    assert str(pid) in (cpu_dir / "cgroup.procs").read_text().split()
    # After the qube is gone its cgroup is removed although its daemon was in it.
    d.call("admin.vm.Kill", "a")
    assert wait_for(lambda: not cpu_dir.exists())


def qrexec_daemon_charged_v2(d):
    """cgroup v2 (one hierarchy): the daemon sits in the qube's sibling "<name>@host" with
    the qube's CPU quota, outside the qube's cgroup (so pausing or killing the qube never
    reaches it); both go with the qube."""
    import time
    d.call("admin.vm.property.Set+vcpus", "a", "1")
    d.call("admin.vm.Start", "a")
    pid = int((d.runtime / "qubes" / "a" / "qrexec-daemon.pid").read_text())
    init = int((d.runtime / "qubes" / "a" / "init.pid").read_text().split()[0])
    qube_cg = proc_cgroups(init)[""]  # the qube's cgroup (its processes are in its "@qube" leaf)
    daemon_cg = _pl.Path("/sys/fs/cgroup") / _pl.Path(f"/proc/{pid}/cgroup").read_text().strip().split("::", 1)[1].lstrip("/")
    assert daemon_cg == qube_cg.parent / "a@host", (daemon_cg, qube_cg)
    assert (daemon_cg / "cpu.max").read_text().split()[0] == "100000"
    assert (daemon_cg / "cpu.max").read_text() == (qube_cg / "cpu.max").read_text()
    # the qube paused: its daemon is not frozen with it
    d.call("admin.vm.Pause", "a")
    assert "frozen 1" in (qube_cg / "@qube" / "cgroup.events").read_text()
    assert "frozen 0" in (daemon_cg / "cgroup.events").read_text()
    d.call("admin.vm.Unpause", "a")
    d.call("admin.vm.Kill", "a")
    assert wait_for(lambda: not daemon_cg.exists() and not qube_cg.exists()), (daemon_cg, qube_cg)
