"""default_virt_mode as the host decides it (not the suite's BULKHEAD_DEFAULT_VIRT_MODE):
pvh where a VM is both safe and fast (/dev/kvm opens, QEMU, virtiofsd, mkfs.erofs and a
guest kernel are installed), ns elsewhere; a qube that provides network is ns whatever
the default, since the vm engine cannot be a netvm. On this machine the test checks
whichever of the two applies, from the same premises the daemon probes."""
import contextlib
import os
import pathlib
import shutil
import socket
import subprocess
import time

import pytest

from admin_fixtures import BUILD, Daemon, daemon, kill_all, parse_reply, qvm_run, raw_call  # noqa: F401
from vm_fixtures import have_kvm, qube_cgroups, start, vm_premises, wait_for


def prop(d, name, qube=None):
    r = d.call(f"admin.vm.property.Get+{name}", qube) if qube else d.call(f"admin.property.Get+{name}")
    return r.split(" ", 2)[2]


def guest_programs_static():
    """bulkhead-vminit and the bridge run in the guest: static, but in a sanitizer build."""
    return all(b"ld-linux" not in (BUILD / "src/driver" / p).read_bytes()[:4096]
               for p in ("bulkhead-vminit", "bulkhead-vchan-bridge"))


def test_a_build_whose_guest_programs_are_dynamic_says_so(tmp_path):
    """A sanitizer build links bulkhead-vminit dynamically: its VMs could not boot (the
    guest has no loader of ours). Such a build never defaults to VMs, and a VM qube's
    Start says why instead of a guest that panics at /init."""
    if guest_programs_static():
        pytest.skip("the guest programs are static here (not a sanitizer build)")
    d = Daemon(tmp_path, defaults=False)
    d.environ = {k: v for k, v in os.environ.items() if k != "BULKHEAD_DEFAULT_VIRT_MODE"}
    d.start()
    try:
        assert prop(d, "default_virt_mode") == "ns"
        d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
        d.call("admin.vm.Create.AppVM+t", payload="name=a label=red")
        d.call("admin.vm.property.Set+virt_mode", "a", "pvh")
        r = raw_call(d.sock, b"admin.vm.Start+ dom0 name a\0", timeout=120)
        assert b"must be static executables" in r, r
        assert "state=Halted" in d.call("admin.vm.List", "a")
    finally:
        kill_all(d)
        d.stop()
        d.cleanup()


def test_default_engine_is_pvh_only_where_kvm_works(tmp_path):
    d = Daemon(tmp_path, defaults=False)
    d.environ = {k: v for k, v in os.environ.items() if k != "BULKHEAD_DEFAULT_VIRT_MODE"}
    d.start()
    try:
        kernel = prop(d, "default_kernel")
        fast_vm = (have_kvm() and not os.environ.get("BULKHEAD_VM_NO_KVM") and bool(kernel) and bool(shutil.which("qemu-system-x86_64"))
                   and bool(shutil.which("mkfs.erofs")) and os.access("/usr/lib/qemu/virtiofsd", os.X_OK)
                   and guest_programs_static())
        expect = "pvh" if fast_vm else "ns"
        assert prop(d, "default_virt_mode") == expect
        d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
        d.call("admin.vm.Create.AppVM+t", payload="name=a label=red")
        d.call("admin.vm.Create.AppVM+t", payload="name=net label=red")
        d.call("admin.vm.property.Set+provides_network", "net", "True")
        assert (prop(d, "virt_mode", "t"), prop(d, "virt_mode", "a")) == (expect, expect)
        assert prop(d, "virt_mode", "net") == "ns"
        # the default set by hand: every qube follows it but the netvm
        d.call("admin.property.Set+default_virt_mode", payload="pvh")
        assert (prop(d, "virt_mode", "t"), prop(d, "virt_mode", "a"), prop(d, "virt_mode", "net")) == \
            ("pvh", "pvh", "ns")
        d.call("admin.property.Reset+default_virt_mode")
        assert prop(d, "default_virt_mode") == expect
    finally:
        d.stop()
        d.cleanup()


def test_the_suite_keeps_its_qubes_in_namespaces(daemon):
    """The suite's own daemons inherit BULKHEAD_DEFAULT_VIRT_MODE=ns (tests/conftest.py),
    also on a machine with KVM."""
    assert prop(daemon, "default_virt_mode") == "ns"


def test_default_qubes_with_default_virt_mode_pvh(tmp_path):
    """What a first start gives on a machine with KVM (here under TCG where there is
    none): the netvms in namespaces, every other default qube a VM, networked through
    them."""
    why = vm_premises()
    if why:
        pytest.skip(why)
    d = Daemon(tmp_path, defaults=True)
    d.environ = dict(os.environ, BULKHEAD_DEFAULT_VIRT_MODE="pvh")
    d.start()
    try:
        modes = {line.split()[0]: prop(d, "virt_mode", line.split()[0])
                 for line in d.call("admin.vm.List").splitlines() if not line.startswith("dom0 ")}
        assert modes["sys-net"] == modes["sys-firewall"] == "ns", modes
        assert modes["work"] == modes["host"] == modes["default-dvm"] == "pvh", modes
        d.call("admin.vm.property.Set+qrexec_timeout", "work", "240")
        assert start(d, "work") == ""
        r = qvm_run(d, "-p", "work", "uname -r; ip -4 -br addr show eth0")
        assert r.returncode == 0, r.stderr
        kernel, addr = r.stdout.decode().splitlines()
        assert kernel != os.uname().release
        assert prop(d, "ip", "work") + "/32" in addr
    finally:
        kill_all(d)
        d.stop()
        d.cleanup()


def test_a_running_qube_keeps_its_engine_when_the_default_changes(tmp_path):
    """virt_mode's default can change while a qube runs (KVM or a guest kernel appears,
    bulkheadd's environment, provides_network): the qube stays in the engine it started
    in until it halts, also across a restart of bulkheadd, and also when the bulkheadd
    that started it recorded no engine (an older version): a restart with the other
    default adopts both ns qubes instead of refusing to start or cleaning them up."""
    d = Daemon(tmp_path, defaults=False)
    d.start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
        for q in ("a", "b"):
            d.call("admin.vm.Create.AppVM+host", payload=f"name={q} label=red")
            d.call("admin.vm.Start", q)
        assert (d.runtime / "engines/a").read_text() == "ns"
        d.stop()
        (d.runtime / "engines/b").unlink()  # as left by a bulkheadd that recorded none
        d.environ = dict(os.environ, BULKHEAD_DEFAULT_VIRT_MODE="pvh")
        d.start()
        for q in ("a", "b"):
            assert f"{q} class=AppVM state=Running" in d.call("admin.vm.List", q)
            assert prop(d, "virt_mode", q) == "pvh"  # what its next start takes
            r = qvm_run(d, "-p", q, "echo still-ns; uname -r")
            assert r.stdout.decode().split() == ["still-ns", os.uname().release], r.stderr
        assert (d.runtime / "engines/b").read_text() == "ns"  # found running, recorded
        # a clean shutdown is cleaned up by the engine it ran in: nothing of b is left
        # (the other engine would have found nothing to do)
        assert parse_reply(raw_call(d.sock, b"admin.vm.Shutdown+wait dom0 name b\0", timeout=60)) == ""
        assert "state=Halted" in d.call("admin.vm.List", "b")
        assert not (d.runtime / "qubes/b").exists(), sorted(p.name for p in (d.runtime / "qubes/b").iterdir())
        assert not (d.runtime / "engines/b").exists()
        d.call("admin.vm.Kill", "a")
        deadline = time.time() + 30
        while time.time() < deadline and "state=Halted" not in d.call("admin.vm.List", "a"):
            time.sleep(0.1)
        assert "state=Halted" in d.call("admin.vm.List", "a")
        assert not (d.runtime / "engines/a").exists()  # halted: the record goes
    finally:
        stop_all(d)


def stop_all(d):
    """Every qube of d killed, also when its restart was refused (the failure this test
    looks for leaves the qubes running without a daemon): then the engine's own
    teardown of the runtime dir ends them."""
    if d.proc is None or d.proc.poll() is not None:
        d.environ = None
        try:
            d.start()
        except RuntimeError:
            subprocess.run([str(BUILD / "src/driver/bulkhead-ns"), "--runtime", str(d.runtime), "kill-all"],
                           capture_output=True, timeout=120)
            d.proc = None
    if d.proc is not None:
        kill_all(d)
    d.stop()
    d.cleanup()


# the stray cgroup a test puts in a qube's: the qube's cgroup cannot go while it is there
STRAY = "bh-test-stuck"


def unstick(d, name):
    """The test's cleanup, also after a failure between the stray cgroup and the
    qube's next start: the stray cgroup, then the qubes, then what the failed cleanup
    left of the qube's cgroups."""
    try:
        for cg in qube_cgroups(d, name):
            if (cg / STRAY).exists():
                (cg / STRAY).rmdir()
    finally:
        stop_all(d)
        for cg in qube_cgroups(d, name):
            try:
                cg.rmdir()
            except OSError:
                pass


@contextlib.contextmanager
def vm_qube_with_stray_cgroup(tmp_path, name, virt_mode=None):
    """For the tests of a cleanup that fails: skipped where VM qubes cannot run, else a
    started daemon (defaults=False) with template `host` and an app qube called name
    (its virt_mode where given, a qrexec_timeout a TCG boot keeps within). Afterwards,
    also when the test failed: unstick (the stray cgroup the test may have left in the
    qube's, the qubes and the daemon, what the failed cleanup left of the qube)."""
    why = vm_premises()
    if why:
        pytest.skip(why)
    d = Daemon(tmp_path, defaults=False)
    d.start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
        d.call("admin.vm.Create.AppVM+host", payload=f"name={name} label=red")
        if virt_mode is not None:
            d.call("admin.vm.property.Set+virt_mode", name, virt_mode)
        d.call("admin.vm.property.Set+qrexec_timeout", name, "240")
        yield d
    finally:
        unstick(d, name)


def test_a_qube_whose_cleanup_failed_is_cleaned_by_its_engine_before_the_next_start(tmp_path):
    """A Kill whose engine cannot clean up (here: a cgroup of the host's inside the
    qube's, so the qube's cgroup cannot go) leaves the qube Halted but still its
    engine's (recorded): its next Start, though virt_mode now names the other engine,
    first has that engine clean up, and is refused with the reason while it cannot.
    Before, the Start forgot the engine and began the qube in the other one, and what
    the first left was never cleaned."""
    with vm_qube_with_stray_cgroup(tmp_path, "a") as d:
        d.call("admin.vm.Start", "a")
        assert (d.runtime / "engines/a").read_text() == "ns"
        cgs = qube_cgroups(d, "a")
        assert cgs  # control: the qube's cgroup is where the test looks
        stuck = cgs[0] / STRAY
        stuck.mkdir()
        with pytest.raises(Exception) as e:
            d.call("admin.vm.Kill", "a")
        assert "Kill failed" in str(e.value)
        assert "state=Halted" in d.call("admin.vm.List", "a")
        assert (d.runtime / "engines/a").read_text() == "ns"  # still ns's to clean
        with pytest.raises(Exception) as e:  # nor may it be removed with its leftovers
            d.call("admin.vm.Remove", "a")
        assert "cannot be cleaned up" in str(e.value)
        d.call("admin.vm.property.Set+virt_mode", "a", "pvh")
        with pytest.raises(Exception) as e:
            d.call("admin.vm.Start", "a")
        assert "left in engine 'ns'" in str(e.value)
        assert "state=Halted" in d.call("admin.vm.List", "a")
        assert not (d.runtime / "qubes/a/qemu.pid").exists()  # no VM was started
        stuck.rmdir()
        start(d, "a")  # ns cleans up first, then the VM starts
        assert (d.runtime / "engines/a").read_text() == "vm"
        assert qvm_run(d, "-p", "a", "cat /proc/cmdline").stdout.count(b"bh.qid=") == 1
        d.call("admin.vm.Kill", "a")
        assert not (d.runtime / "engines/a").exists()


def test_a_kill_while_booting_whose_cleanup_fails_does_not_leave_it_transient(tmp_path):
    """A Kill that arrives while a VM qube boots ends the start; when the engine's
    cleanup then fails (the same stray cgroup as above), the qube used to stay Transient
    for good (its start no longer watched, the Kill refused). Now the Start's caller
    hears that it was killed, the Kill's caller that its cleanup failed, the qube is
    Halted, and its next Start has the engine clean up first."""
    with vm_qube_with_stray_cgroup(tmp_path, "v", virt_mode="pvh") as d:
        # the guest's bridge held back: the boot lasts long enough for the Kill
        d.call("admin.vm.property.Set+kernelopts", "v", "bh.bridge_delay_ms=30000")  # booting under KVM too
        s = socket.socket(socket.AF_UNIX)
        s.settimeout(300)
        s.connect(d.sock)
        s.sendall(b"admin.vm.Start+ dom0 name v\0")
        s.shutdown(socket.SHUT_WR)
        deadline = time.time() + 60
        while time.time() < deadline and not qube_cgroups(d, "v"):
            time.sleep(0.05)
        assert "state=Transient" in d.call("admin.vm.List", "v")  # control: still booting
        stuck = qube_cgroups(d, "v")[0] / STRAY
        stuck.mkdir()
        with pytest.raises(Exception) as e:
            d.call("admin.vm.Kill", "v")
        assert "Kill failed" in str(e.value)
        reply = b""
        while chunk := s.recv(65536):
            reply += chunk
        s.close()
        assert b"killed while starting" in reply, reply
        assert "state=Halted" in d.call("admin.vm.List", "v")
        assert (d.runtime / "engines/v").read_text() == "vm"  # kept for the next Start
        stuck.rmdir()
        d.call("admin.vm.property.Reset+kernelopts", "v")
        start(d, "v")
        assert qvm_run(d, "-p", "v", "echo up").stdout == b"up\n"
        # the same Kill of the running VM: QEMU ends before the cgroup fails to go, and
        # the qube was left Running with nothing watching it (its QEMU gone)
        qemu = int((d.runtime / "qubes/v/qemu.pid").read_text().split()[0])
        stuck = qube_cgroups(d, "v")[0] / STRAY
        stuck.mkdir()
        with pytest.raises(Exception) as e:
            d.call("admin.vm.Kill", "v")
        assert "Kill failed" in str(e.value)
        assert wait_for(lambda: not os.path.exists(f"/proc/{qemu}"), 10)  # ended and reaped
        assert "state=Halted" in d.call("admin.vm.List", "v")
        assert (d.runtime / "engines/v").read_text() == "vm"
        stuck.rmdir()
        start(d, "v")
        assert qvm_run(d, "-p", "v", "echo again").stdout == b"again\n"
