"""The vm engine through bulkheadd: a real QEMU microvm qube (KVM where /dev/kvm opens,
TCG here), booted once and shared by the tests of this module, in the order written."""
import os
import pathlib
import signal
import threading
import time

import pytest

from admin_fixtures import STRACE, AdminError, list_waits_while, state_of, syscalls_held
from procstat import all_stats
from vm_fixtures import vm_env, qvm_run, start, vm_leftovers, wait_for, raw_call, parse_reply, SLOW_BRIDGE  # noqa: F401


def removed(d, name):
    """Whether name could be removed: refused while a disposable of it still ends (after a
    failed check in the test that made it)."""
    try:
        d.call("admin.vm.Remove", name)
        return True
    except AdminError:
        return False


# The guest's bridge held back this long keeps a boot going under KVM too (a KVM boot
# takes well under a second): tests that act while a VM boots use it.
HELD_BOOT = "bh.bridge_delay_ms=30000"
# ... and this one for a boot that is held, then let go after a few seconds.
SLOW_BOOT = "bh.bridge_delay_ms=3000"


def test_daemon_answers_while_a_vm_boots(vm_env):
    d = vm_env.d
    done = {}
    d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BOOT)  # seconds, with KVM too

    def boot():
        try:
            done["reply"] = start(d, "v")
        except AdminError as e:
            done["error"] = e
        done["at"] = time.monotonic()

    t = threading.Thread(target=boot)
    t.start()
    try:
        assert wait_for(lambda: state_of(d, "v") == "Transient", 30)
        # every other call is answered while v boots, and an ns qube starts meanwhile
        listed = d.call("admin.vm.List", "v")
        d.call("admin.vm.Start", "n")
        n_started = time.monotonic()
        assert "state=Running" in d.call("admin.vm.List", "n")
        t.join(240)
    finally:
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)
    assert "error" not in done, done.get("error")
    assert done["reply"] == ""
    assert "state=Running" in d.call("admin.vm.List", "v")
    # the boot takes seconds (its bridge held 3 s): the ns qube was up long before
    assert "state=Transient" in listed
    assert n_started < done["at"]


def test_qvm_run_in_a_vm_qube(vm_env):
    d = vm_env.d
    r = qvm_run(d, "-p", "v", "echo hi from $(hostname); id -un; uname -r; exit 3")
    assert r.returncode == 3, r.stderr
    host, user, kernel = r.stdout.decode().splitlines()
    assert (host, user) == ("hi from v", "user")
    assert kernel != os.uname().release  # its own kernel: a VM, not the host's namespaces
    data = os.urandom(1 << 20)
    r = qvm_run(d, "-p", "v", "cat", input=data)
    assert r.returncode == 0 and r.stdout == data


def test_current_state_is_qemu_memory(vm_env):
    st = dict(kv.split("=") for kv in vm_env.d.call("admin.vm.CurrentState", "v").split())
    assert st["power_state"] == "Running"
    assert int(st["mem"]) > 50 * 1024  # kB of QEMU's resident memory: the guest's RAM is in it


def test_qvm_copy_between_engines(vm_env):
    d = vm_env.d
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-vm.policy").write_text("qubes.Filecopy  *  n  v  allow\nqubes.Filecopy  *  v  n  allow\n")
    payload = os.urandom(300 * 1024).hex()
    r = qvm_run(d, "-p", "n", f"echo {payload[:64]} > ~/from-n && /usr/lib/bulkhead/qvm-copy-to-vm v ~/from-n")
    assert r.returncode == 0, r.stderr
    assert qvm_run(d, "-p", "v", "cat ~/QubesIncoming/n/from-n").stdout.decode().strip() == payload[:64]
    r = qvm_run(d, "-p", "v", "head -c 600000 /dev/urandom > ~/big && sha256sum < ~/big && "
                              "/usr/lib/bulkhead/qvm-copy-to-vm n ~/big")
    assert r.returncode == 0, r.stderr
    want = r.stdout.split()[0]
    got = qvm_run(d, "-p", "n", "sha256sum < ~/QubesIncoming/v/big").stdout.split()[0]
    assert got == want
    (pol / "10-vm.policy").unlink()


def test_vm_qube_calls_a_disposable(vm_env):
    """A VM qube as the caller of `@dispvm` (here an ns disposable template): refused
    without a policy rule (no disposable made), and with one the call runs in a new
    disposable, whose name the VM sees, and which is gone afterwards."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmn label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmn", "True")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    call = "echo hostname | /usr/lib/bulkhead/qrexec-client-vm @dispvm:dvmn qubes.VMShell"
    before = set(d.call("admin.vm.List").split("\n"))
    try:
        r = qvm_run(d, "-p", "v", call, timeout=300)
        assert r.returncode != 0 and r.stdout == b"", r  # no rule: refused
        assert set(d.call("admin.vm.List").split("\n")) == before
        (pol / "10-vmdisp.policy").write_text("qubes.VMShell  *  v  @dispvm:dvmn  allow\n")
        r = qvm_run(d, "-p", "v", call, timeout=300)
        assert r.returncode == 0, r.stderr
        host = r.stdout.decode().strip()
        assert host.startswith("disp") and host != "dvmn", host
        assert wait_for(lambda: host not in d.call("admin.vm.List"), 60)
        assert set(d.call("admin.vm.List").split("\n")) == before
    finally:
        (pol / "10-vmdisp.policy").unlink(missing_ok=True)
        assert wait_for(lambda: removed(d, "dvmn"), 60)


def test_pause_unpause(vm_env):
    d = vm_env.d
    d.call("admin.vm.Pause", "v")
    assert state_of(d, "v") == "Paused"
    cpu = lambda: int(dict(kv.split("=") for kv in d.call("admin.vm.CurrentState", "v").split())["cputime"])  # noqa: E731
    c0 = cpu()
    time.sleep(1.5)
    assert cpu() - c0 < 500_000_000  # a stopped VM burns (almost) no CPU; a running TCG guest does
    d.call("admin.vm.Unpause", "v")
    assert state_of(d, "v") == "Running"
    assert qvm_run(d, "-p", "v", "echo back").stdout == b"back\n"


def test_daemon_restart_adopts_the_vm(vm_env):
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    qemu = int((d.runtime / "qubes/v/qemu.pid").read_text().split()[0])
    d.stop()
    assert os.path.exists(f"/proc/{qemu}")  # qubes outlive bulkheadd
    d.start()
    assert state_of(d, "v") == "Running"
    assert qvm_run(d, "-p", "v", "echo adopted").stdout == b"adopted\n"
    assert int((d.runtime / "qubes/v/qemu.pid").read_text().split()[0]) == qemu


def test_clean_shutdown_leaves_nothing(vm_env):
    d = vm_env.d
    assert parse_reply(raw_call(d.sock, b"admin.vm.Shutdown+wait dom0 name v\0", timeout=120)) == ""
    assert state_of(d, "v") == "Halted"
    assert vm_leftovers(d, "v") == []


def test_a_guest_that_stops_itself_is_not_a_crash(vm_env):
    """A guest that ends on its own and cleanly (its init told to stop from inside, as a
    guest's own poweroff: no Shutdown was asked) halts as cleanly: its cleanup runs as a
    Kill's, beside bulkheadd's loop, and QEMU's exit status, read after it, tells a clean
    end from a crash (a QEMU killed from outside is one: the test below)."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    log_at = d.log.stat().st_size
    qvm_run(d, "-u", "root", "v", "kill -TERM 1")  # its end may cut the call short
    assert wait_for(lambda: state_of(d, "v") == "Halted", 120)
    log = d.log.read_bytes()[log_at:].decode(errors="replace")
    assert "v: stopped unexpectedly" not in log, log
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert vm_leftovers(d, "v") == []


def test_kernel_property_and_volume(vm_env):
    """As Qubes: `kernel` names the kernel a VM qube boots (default: default_kernel, the
    installed one), and the qube's `kernel` volume is it (pool linux-kernel, read-only).
    An ns qube runs the host's kernel: its kernel volume stays empty."""
    d = vm_env.d
    from vm_fixtures import BUILD
    installed = (BUILD / "vm-kernel/version").read_text().strip().removeprefix("linux-image-")
    assert d.call("admin.property.Get+default_kernel") == f"default=True type=str {installed}"
    assert d.call("admin.vm.property.Get+kernel", "v") == f"default=True type=str {installed}"
    info = dict(kv.split("=", 1) for kv in d.call("admin.vm.volume.Info+kernel", "v").splitlines())
    assert (info["pool"], info["vid"], info["rw"]) == ("linux-kernel", installed, "False")
    assert int(info["size"]) > 5 << 20  # vmlinuz and the modules
    assert "kernel" in d.call("admin.vm.volume.List", "v").split()
    ns = dict(kv.split("=", 1) for kv in d.call("admin.vm.volume.Info+kernel", "n").splitlines())
    assert (ns["pool"], ns["vid"], ns["size"]) == ("linux-kernel", "", "0")
    with pytest.raises(AdminError) as e:
        d.call("admin.property.Set+default_kernel", payload="6.6.6-not-here")
    assert "not installed" in e.value.msg
    with pytest.raises(AdminError):
        d.call("admin.vm.property.Set+kernel", "v", "../../etc")
    if state_of(d, "v") != "Halted":  # run on its own (-k): the module's shutdown did not run
        d.call("admin.vm.Kill", "v")
    d.call("admin.vm.property.Set+kernel", "v", "6.6.6-not-here")
    assert "vid=6.6.6-not-here" in d.call("admin.vm.volume.Info+kernel", "v")
    assert state_of(d, "v") == "Halted"
    with pytest.raises(AdminError) as e:
        start(d, "v")
    assert "Kernel '6.6.6-not-here' not installed" in e.value.msg
    assert state_of(d, "v") == "Halted" and vm_leftovers(d, "v") == []
    d.call("admin.vm.property.Reset+kernel", "v")
    assert d.call("admin.vm.property.Get+kernel", "v").endswith(installed)


def test_boot_that_never_finishes_is_killed(vm_env):
    d = vm_env.d
    d.call("admin.vm.property.Set+qrexec_timeout", "v", "1")
    d.call("admin.vm.property.Set+kernelopts", "v", HELD_BOOT)  # with KVM too, not up in 1 s
    try:
        with pytest.raises(AdminError) as e:
            start(d, "v")
    finally:
        d.call("admin.vm.property.Set+qrexec_timeout", "v", "240")
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)
    assert "did not boot within 1 s" in e.value.msg
    assert "nothing was heard from it" in e.value.msg  # its bridge is held back
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert state_of(d, "v") == "Halted"
    assert vm_leftovers(d, "v") == []


def start_in_background(d, res):
    """admin.vm.Start of v in a thread, started: once it is answered, res["ok"] is True or
    res["err"] the error's message."""
    def boot():
        try:
            start(d, "v")
            res["ok"] = True
        except AdminError as e:
            res["err"] = e.msg
    t = threading.Thread(target=boot)
    t.start()
    return t


def virtiofsd_listens(pid):
    """Whether virtiofsd (pid) still waits for QEMU's connection: its socket is listening
    (flag __SO_ACCEPTCON in /proc/net/unix)."""
    inodes = {os.readlink(f"/proc/{pid}/fd/{f}")[8:-1] for f in os.listdir(f"/proc/{pid}/fd")
              if os.readlink(f"/proc/{pid}/fd/{f}").startswith("socket:[")}
    for line in pathlib.Path(f"/proc/{pid}/net/unix").read_text().splitlines()[1:]:
        f = line.split()
        if len(f) >= 7 and f[6] in inodes and f[3] == "00010000":
            return True
    return False


def test_virtiofsd_gone_while_booting_fails_the_start(vm_env):
    """The helpers are watched during the boot as while the qube runs: a virtiofsd that
    ends while its guest boots fails the start at once, with the reason (unwatched, the
    guest went on booting without /usr and the start failed only once its bridge spoke,
    as "qrexec-daemon for v did not become ready"); nothing is left."""
    d = vm_env.d
    if state_of(d, "v") != "Halted":
        d.call("admin.vm.Kill", "v")
    d.call("admin.vm.property.Set+kernelopts", "v", HELD_BOOT)
    res = {}
    try:
        starter = start_in_background(d, res)
        assert wait_for(lambda: state_of(d, "v") == "Transient", 30), res
        pid = int((d.runtime / "qubes/v/virtiofsd.pid").read_text().split()[0])
        # QEMU has connected (else QEMU fails at its start): virtiofsd serves one
        # connection, its listening socket is gone (Debian's virtiofsd closes it)
        if not wait_for(lambda: not virtiofsd_listens(pid), 25):
            d.call("admin.vm.Kill", "v")
            pytest.skip("this virtiofsd keeps its listening socket: cannot tell when QEMU is connected")
        assert state_of(d, "v") == "Transient", res
        t0 = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        starter.join(60)
        took = time.monotonic() - t0
    finally:
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)
    assert "virtiofsd of /usr ended while it was booting" in res.get("err", ""), res
    assert took < 20, took  # not at qrexec_timeout
    assert state_of(d, "v") == "Halted"
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert vm_leftovers(d, "v") == []


def qemu_zombies(d):
    """bulkheadd's children that are QEMUs it has not reaped."""
    return [p for p, (name, fl) in all_stats().items()
            if int(fl[1]) == d.proc.pid and fl[0] == "Z" and "qemu" in name]


def test_guest_kernel_panic_fails_the_start(vm_env):
    d = vm_env.d
    d.call("admin.vm.property.Set+kernelopts", "v", "rdinit=/nonexistent")  # no init: the kernel panics
    try:
        with pytest.raises(AdminError) as e:
            start(d, "v")
    finally:
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)
    assert "stopped while booting" in e.value.msg
    # the QEMU that ended by itself is reaped (its threads may take a moment to end)
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert state_of(d, "v") == "Halted"
    assert vm_leftovers(d, "v") == []


def test_kill_while_booting(vm_env):
    d = vm_env.d
    res = {}
    d.call("admin.vm.property.Set+kernelopts", "v", HELD_BOOT)  # still booting with KVM too
    t = start_in_background(d, res)
    try:
        assert wait_for(lambda: state_of(d, "v") == "Transient", 30)
        d.call("admin.vm.Kill", "v")
        t.join(60)
    finally:
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)
    assert "killed while starting" in res.get("err", ""), res
    assert state_of(d, "v") == "Halted"
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert vm_leftovers(d, "v") == []


def test_qemu_killed_from_outside_is_noticed(vm_env):
    d = vm_env.d
    d.call("admin.vm.Start", "n")
    if state_of(d, "v") != "Running":
        start(d, "v")
    qemu = int((d.runtime / "qubes/v/qemu.pid").read_text().split()[0])
    log_at = d.log.stat().st_size
    os.kill(qemu, signal.SIGKILL)
    assert wait_for(lambda: state_of(d, "v") == "Halted", 20)  # the pidfd fired: reaped at once
    assert "v: stopped unexpectedly" in d.log.read_bytes()[log_at:].decode(errors="replace")
    # reaped: QEMU's leader shows as a zombie before its last thread has ended, and the
    # helper that ended first woke the reap before the group could be waited for
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert vm_leftovers(d, "v") == []
    assert "state=Running" in d.call("admin.vm.List", "n")  # nothing else noticed


@pytest.mark.skipif(not os.access(STRACE, os.X_OK), reason="needs strace")
def test_daemon_answers_while_a_vm_is_killed(vm_env):
    """A Kill's cleanup (QEMU's end and its helpers', the vchan and guest-RAM mounts, the
    cgroups) runs beside bulkheadd's loop, not in it: strace holds each umount2() of the
    qube's vchan and guest-RAM mounts by the daemon or its children for 1 s, so the Kill
    takes seconds, and admin.vm.List is answered meanwhile (with the cleanup in the loop,
    a List waited for it). QEMU, bulkheadd's own child, is reaped after."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    rt = d.runtime / "qubes/v"
    took, waits = [], []
    with syscalls_held(d.proc.pid, "umount2", 1000, paths=[rt / "vchan", rt / "vm-mem"]):
        def kill():
            t0 = time.monotonic()
            d.call("admin.vm.Kill", "v")
            took.append(time.monotonic() - t0)

        t = threading.Thread(target=kill)
        t.start()
        time.sleep(0.3)  # the Kill is under way
        while t.is_alive():
            t0 = time.monotonic()
            d.call("admin.vm.List", "n")
            waits.append(time.monotonic() - t0)
            time.sleep(0.05)
        t.join()
    # positive control: the cleanup's umount2() calls were held (two or more, 1 s each)
    assert took and took[0] >= 2.0, took
    assert waits, "the Kill ended before a List was sent"
    assert max(waits) < 0.8, f"admin.vm.List waited for the Kill's cleanup: {waits}"
    assert state_of(d, "v") == "Halted"
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert vm_leftovers(d, "v") == []


@pytest.mark.skipif(not os.access(STRACE, os.X_OK), reason="needs strace")
def test_daemon_answers_while_a_booting_vm_is_killed(vm_env):
    """A Kill that comes while a VM qube boots (its guest's bridge held back 30 s) ends
    the start beside bulkheadd's loop, as a running qube's Kill: with each umount2() of
    the qube's vchan and guest-RAM mounts held 1 s, admin.vm.List is answered while the
    qube is Dying (in line, the loop was held and the qube never seen Dying); the
    Start's caller hears that the qube was killed while starting, QEMU is reaped,
    nothing is left, and the qube boots again."""
    d = vm_env.d
    if state_of(d, "v") != "Halted":
        d.call("admin.vm.Kill", "v")
    d.call("admin.vm.property.Set+kernelopts", "v", HELD_BOOT)
    rt = d.runtime / "qubes/v"
    res = {}
    try:
        starter = start_in_background(d, res)
        assert wait_for(lambda: state_of(d, "v") == "Transient", 30), res
        # attached once QEMU runs: strace -f follows only the children forked after
        with syscalls_held(d.proc.pid, "umount2", 1000, paths=[rt / "vchan", rt / "vm-mem"]):
            assert state_of(d, "v") == "Transient", res  # control: still booting
            killer = threading.Thread(target=lambda: res.setdefault("kill", raw_call(d.sock, b"admin.vm.Kill+ dom0 name v\0")))
            t0 = time.monotonic()
            killer.start()
            calls = list_waits_while(d, "v", ("Transient", "Dying"), "n")
            took = time.monotonic() - t0
            killer.join(60)
            starter.join(60)
    finally:
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)
    assert res.get("kill") == b"0\0", res
    assert "killed while starting" in res.get("err", ""), res
    assert took >= 1.5, took  # positive control: the cleanup's umount2() calls were held
    waits = [w for w, st in calls if st == "Dying"]
    assert waits, calls  # in line, the loop was held until the qube was Halted
    assert max(waits) < 0.8, f"an Admin API call waited for the Kill's cleanup: {calls}"
    assert state_of(d, "v") == "Halted"
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert vm_leftovers(d, "v") == []
    start(d, "v")
    assert qvm_run(d, "-p", "v", "echo up").stdout == b"up\n"


@pytest.mark.skipif(not os.access(STRACE, os.X_OK), reason="needs strace")
def test_daemon_answers_while_a_failed_boot_is_cleaned_up(vm_env):
    """A start that fails on its own (a guest not booted within its qrexec_timeout: its
    bridge is held back 30 s) is cleaned up beside bulkheadd's loop, as a Kill during the
    boot is: with each umount2() of the qube's vchan and guest-RAM mounts held 1 s,
    admin.vm.List is answered while the qube is Dying (in line, the loop was held and the
    qube never seen Dying); the Start's caller hears why the start failed, not that it
    was killed; QEMU is reaped, nothing is left, and the qube boots again."""
    d = vm_env.d
    if state_of(d, "v") != "Halted":
        d.call("admin.vm.Kill", "v")
    d.call("admin.vm.property.Set+kernelopts", "v", HELD_BOOT)
    d.call("admin.vm.property.Set+qrexec_timeout", "v", "10")  # strace attaches meanwhile
    rt = d.runtime / "qubes/v"
    res = {}
    try:
        t0 = time.monotonic()
        starter = start_in_background(d, res)
        assert wait_for(lambda: state_of(d, "v") == "Transient", 30), res
        with syscalls_held(d.proc.pid, "umount2", 1000, paths=[rt / "vchan", rt / "vm-mem"]):
            assert state_of(d, "v") == "Transient", res  # control: still booting
            calls = list_waits_while(d, "v", ("Transient", "Dying"), "n")
            starter.join(60)
        took = time.monotonic() - t0
    finally:
        d.call("admin.vm.property.Set+qrexec_timeout", "v", "240")
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)
    assert "did not boot within 10 s" in res.get("err", ""), res
    assert "killed" not in res["err"], res
    assert took >= 10 + 1.5, took  # positive control: the cleanup's umount2() calls were held
    waits = [w for w, st in calls if st == "Dying"]
    assert waits, calls  # in line, the loop was held until the qube was Halted
    assert max(waits) < 0.8, f"an Admin API call waited for the failed start's cleanup: {calls}"
    assert state_of(d, "v") == "Halted"
    assert wait_for(lambda: qemu_zombies(d) == [], 10), qemu_zombies(d)
    assert vm_leftovers(d, "v") == []
    start(d, "v")
    assert qvm_run(d, "-p", "v", "echo up").stdout == b"up\n"


def test_disposable_vm(vm_env):
    """qvm-run --dispvm from a pvh disposable template: a new VM qube for one call, gone after."""
    d = vm_env.d
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmv label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmv", "True")
    d.call("admin.vm.property.Set+virt_mode", "dvmv", "pvh")
    d.call("admin.vm.property.Set+qrexec_timeout", "dvmv", "240")
    before = set(d.call("admin.vm.List").split("\n"))
    r = qvm_run(d, "--dispvm=dvmv", "-p", "--", "uname -r; hostname", timeout=300)
    assert r.returncode == 0, r.stderr
    kernel, host = r.stdout.decode().split()
    assert kernel != os.uname().release and host.startswith("disp")
    assert wait_for(lambda: host not in d.call("admin.vm.List"), 30)
    assert vm_leftovers(d, host) == []
    assert set(d.call("admin.vm.List").split("\n")) == before


def test_dispvm_from_a_qubes_policy(vm_env):
    """@dispvm:DVM asked for by a qube (an ns qube here) through qrexec policy, DVM a pvh
    disposable template: the call runs in a new VM qube (the guest's kernel, a disp
    name), which is gone afterwards with nothing left behind."""
    d = vm_env.d
    if state_of(d, "n") != "Running":
        start(d, "n")
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmp label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmp", "True")
    d.call("admin.vm.property.Set+virt_mode", "dvmp", "pvh")
    d.call("admin.vm.property.Set+qrexec_timeout", "dvmp", "240")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-dispvm.policy").write_text("qubes.VMShell  *  n  @dispvm:dvmp  allow\n")
    before = set(d.call("admin.vm.List").split("\n"))
    try:
        r = qvm_run(d, "-p", "n", "echo 'uname -r; hostname' | /usr/lib/bulkhead/qrexec-client-vm @dispvm:dvmp "
                                  "qubes.VMShell", timeout=300)
        assert r.returncode == 0, r.stderr
        kernel, host = r.stdout.decode().split()
        assert kernel != os.uname().release  # a VM's kernel: the disposable is a VM qube
        assert host.startswith("disp") and host != "dvmp"
        assert wait_for(lambda: host not in d.call("admin.vm.List"), 60)
        assert vm_leftovers(d, host) == []
        assert set(d.call("admin.vm.List").split("\n")) == before
    finally:
        (pol / "10-dispvm.policy").unlink()
        assert wait_for(lambda: removed(d, "dvmp"), 60)
