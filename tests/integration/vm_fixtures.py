"""Fixtures for the vm engine: one bulkheadd with template `host`, an ns qube `n` and a
VM qube `v` (virt_mode pvh), shared by the tests of a module (a TCG boot takes seconds).

Machine premises are probed first, and the tests skip with the reason: QEMU, erofs-utils,
virtiofsd, the guest kernel (fetched once with scripts/vm-kernel.sh into the build dir),
static guest programs (a sanitizer build links them dynamically). KVM is used where
/dev/kvm opens, TCG otherwise: the same tests run on both."""
import os
import pathlib
import shutil
import subprocess
import time

import pytest

from admin_fixtures import Daemon, kill_all, raw_call, parse_reply, state_of, qvm_run  # noqa: F401

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))


SLOW_BRIDGE = "bh.bridge_delay_ms=300"


def have_kvm():
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
        os.close(fd)
        return True
    except OSError:
        return False


def vm_premises():
    """None if VM qubes can run here, else the reason."""
    if os.environ.get("BULKHEAD_TEST_VM") == "0":
        return "VM qube tests turned off (BULKHEAD_TEST_VM=0)"
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 not installed (scripts/deps.d/vm.txt)"
    if not shutil.which("mkfs.erofs"):
        return "mkfs.erofs not installed (erofs-utils)"
    if not os.access("/usr/lib/qemu/virtiofsd", os.X_OK):
        return "virtiofsd (qemu-system-common) missing"
    init = BUILD / "src/driver/bulkhead-vminit"
    if not init.exists():
        return "bulkhead-vminit not built"
    if b"ld-linux" in init.read_bytes()[:4096]:
        return "guest programs are linked dynamically (sanitizer build): the initramfs has no libc"
    kdir = BUILD / "vm-kernel"
    # every time: fast when nothing changed, and it updates the guest's module list of
    # a kernel fetched before (a guest without virtio_net has no network card)
    r = subprocess.run([str(ROOT / "scripts/vm-kernel.sh"), str(kdir)], capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        return "no guest kernel: " + r.stderr.strip()
    return None


def start(d, name, timeout=300):
    """admin.vm.Start, waiting as long as a TCG boot may take."""
    return parse_reply(raw_call(d.sock, f"admin.vm.Start+ dom0 name {name}".encode() + b"\0", timeout=timeout))


def qube_procs(runtime):
    """PIDs of processes whose command line names this daemon's runtime dir."""
    out = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if str(runtime).encode() in (p / "cmdline").read_bytes():
                out.append(int(p.name))
        except OSError:
            pass
    return out


def vm_leftovers(d, name):
    """What a halted VM qube must not leave behind: QEMU/bridge/virtiofsd processes,
    its vchan mount, its cgroups."""
    left = []
    rt = d.runtime / "qubes" / name
    for pid in qube_procs(rt):
        try:
            left.append("process " + (pathlib.Path(f"/proc/{pid}/cmdline").read_bytes()[:60]).decode(errors="replace"))
        except OSError:
            pass
    # the vchan tmpfs and (template `host`) the guest RAM's tmpfs in vm-mem
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        if str(rt) + "/" in line:
            left.append("mount " + line.split()[4])
    for cg in qube_cgroups(d, name):
        left.append(f"cgroup {cg}")
    return left


def qube_cgroups(d, name):
    """The qube's cgroup directories that exist (v1: one per controller; v2: one)."""
    tag = cgroup_tag(d)
    root = pathlib.Path("/sys/fs/cgroup")
    return [p for p in [*root.glob(f"*/{tag}/{name}"), root / tag / name] if p.is_dir()]


def cgroup_tag(d):
    """bulkhead-<FNV-1a of the runtime dir>, as src/driver/ns/cgroup.c names it."""
    h = 1469598103934665603
    for c in os.path.realpath(d.runtime).encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "bulkhead-%012x" % (h & 0xFFFFFFFFFFFF)


class VMEnv:
    def __init__(self, tmp):
        self.d = Daemon(tmp, defaults=False).start()
        d = self.d
        d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
        d.call("admin.property.Set+default_template", payload="host")
        d.call("admin.vm.Create.AppVM+host", payload="name=v label=red")
        d.call("admin.vm.Create.AppVM+host", payload="name=n label=blue")
        d.call("admin.vm.property.Set+virt_mode", "v", "pvh")
        d.call("admin.vm.property.Set+memory", "v", "300")
        # a TCG boot takes 10-25 s here, far more on a machine busy with other tests
        d.call("admin.vm.property.Set+qrexec_timeout", "v", "240")
        # Every boot of v runs the guest's vchan bridge 300 ms late. Its start once raced
        # the guest init's switch_root and lost now and then under load (the qube never
        # became ready); with this delay the old code lost every time.
        d.call("admin.vm.property.Set+kernelopts", "v", SLOW_BRIDGE)

    def close(self):
        d = self.d
        if d.proc is None:
            d.start()
        kill_all(d)
        d.stop()
        d.cleanup()


@pytest.fixture(scope="module")
def vm_env(tmp_path_factory):
    why = vm_premises()
    if why:
        pytest.skip(why)
    env = VMEnv(tmp_path_factory.mktemp("vm"))
    yield env
    env.close()


def wait_for(pred, timeout=60, step=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(step)
    return False
