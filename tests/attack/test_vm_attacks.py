"""Attacks from inside a VM qube (its root, in its own kernel) on the host side: the
host's files, the host's /usr, the virtio-serial port that carries qrexec (floods,
garbage, oversized frames). Each has a positive control showing the attempt ran."""
import os
import pathlib
import sys
import time

_sys_path = str(pathlib.Path(__file__).resolve().parents[1] / "integration")
sys.path.insert(0, _sys_path)
import pytest  # noqa: E402

from admin_fixtures import state_of  # noqa: E402
from vm_fixtures import vm_env, qvm_run, start, vm_leftovers, wait_for  # noqa: E402,F401


def alive(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def root(d, cmd, **kw):
    return qvm_run(d, "-p", "--user", "root", "v", cmd, **kw)


def test_host_files_are_not_in_the_guest(vm_env):
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    marker = pathlib.Path("/tmp") / f"bh-vm-attack-{os.getpid()}"
    marker.write_text("host secret\n")
    try:
        r = root(d, f"cat {marker} /root/.bash_history 2>&1; cat /proc/1/cmdline; echo; "
                    "grep -c . /etc/shadow; hostname")
        out = r.stdout.decode()
        assert r.returncode == 0, r.stderr
        assert "host secret" not in out
        assert "No such file" in out  # control: the reads ran and found nothing
        assert "/init" in out  # PID 1 is our guest init in the guest's own kernel
        shadow_lines = int(out.splitlines()[-2])
        assert shadow_lines == 4  # the template's minimal /etc/shadow, not the host's
        assert out.splitlines()[-1] == "v"
    finally:
        marker.unlink()


def test_host_usr_is_read_only_in_the_guest(vm_env):
    d = vm_env.d
    name = f"bh-vm-attack-{os.getpid()}"
    r = root(d, f"touch /usr/{name} /usr/lib/bulkhead/{name} 2>&1; mount -o remount,rw /usr 2>&1; "
                f"touch /usr/{name} 2>&1; touch /tmp/{name} && echo control-ok")
    out = r.stdout.decode()
    assert "control-ok" in out  # the guest's root could write where it may
    assert not os.path.exists(f"/usr/{name}") and not os.path.exists(f"/usr/lib/bulkhead/{name}")


HOLDERS = r"""
import os
for p in filter(str.isdigit, os.listdir("/proc")):
    try:
        fds = [os.readlink(f"/proc/{p}/fd/{f}") for f in os.listdir(f"/proc/{p}/fd")]
        if any("vport" in t for t in fds):
            print(open(f"/proc/{p}/comm").read().strip())
    except OSError:
        pass
"""


def test_only_the_guest_bridge_holds_the_port(vm_env):
    """The virtio-serial port carries every qrexec frame to the host: a guest process
    that held it could read them. Only the guest's bridge may have it open (vminit
    once leaked it into bulkhead-init and so into every process of the qube)."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    # one process (a TCG guest forks slowly): every process's fds, the port's holders
    r = root(d, "python3 -", input=HOLDERS.encode())
    assert r.returncode == 0, r.stderr
    holders = r.stdout.decode().split()
    assert holders == ["bulkhead-vchan-"]  # control: the search sees the bridge's fd


# Run by the guest's root, detached from the qrexec call that starts it: kills the
# guest's bridge, takes the virtio-serial port over and writes to the host bridge.
PORT_WRITER = r"""
import glob, os, struct, sys, time
# the qrexec call that started us returns first: its shell (argv[2]) has ended, and its
# exit status has had time to cross the bridge (a loaded TCG guest is slow)
for _ in range(1200):
    if not os.path.exists("/proc/%s" % sys.argv[2]):
        break
    time.sleep(0.05)
time.sleep(1)
for c in glob.glob("/proc/[0-9]*/comm"):
    try:
        if open(c).read().strip() == "bulkhead-vchan-":
            os.kill(int(c.split("/")[2]), 9)
    except OSError:
        pass
dev = next("/dev/" + n.split("/")[-2] for n in glob.glob("/sys/class/virtio-ports/*/name")
           if open(n).read().strip() == "bulkhead.vchan")
for _ in range(6000):
    try:
        fd = os.open(dev, os.O_RDWR)
        break
    except OSError:  # EBUSY until the killed bridge's fd is gone
        time.sleep(0.01)
def frame(t, i, payload=b""):
    return struct.pack("<III", t, i, len(payload)) + payload
def put(b):
    while b:
        b = b[os.write(fd, b[:32768]):]
put(frame(10, 0))  # HELLO: the host answers, the stream is ours
mode = sys.argv[1]
if mode == "garbage":
    put(bytes([0xff]) * 12 + os.urandom(4096))
elif mode == "oversized":
    put(struct.pack("<III", 4, 1, 16 << 20) + os.urandom(65536))
elif mode == "flood":
    for i in range(2000):  # more names than the host keeps
        put(frame(1, 0, b"vchan.9.%d.%d.sock" % (i, i)))
    chunk = b"".join(frame(4, 999999, os.urandom(65536)) for _ in range(8))
    for _ in range(64):  # 32 MiB of data for a stream that does not exist
        put(chunk)
    put(frame(2, 0, b"vchan.9.0.0.sock") + frame(1, 0, b"vchan.7.7.7.sock"))  # after all of it
time.sleep(600)
"""


def take_over_port(d, mode):
    r = root(d, f"cat > /tmp/w.py && setsid -f python3 /tmp/w.py {mode} $$ </dev/null >/dev/null 2>&1; echo started",
             input=PORT_WRITER.encode())
    assert r.stdout.decode().strip() == "started", r.stderr


def worker_rss_kb(d):
    """VmRSS of the host bridge's worker (the supervisor's child)."""
    sup = int((d.runtime / "qubes/v/bridge.pid").read_text().split()[0])
    kids = pathlib.Path(f"/proc/{sup}/task/{sup}/children").read_text().split()
    assert len(kids) == 1
    status = pathlib.Path(f"/proc/{kids[0]}/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0])


def test_port_flood_is_bounded(vm_env):
    """The guest's root floods the host bridge with valid frames: 2000 listener names
    (the host keeps 256) and 32 MiB of data for a stream that does not exist. The host
    bridge keeps going with bounded memory; the qube only loses its own qrexec."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    vchan = d.runtime / "qubes/v/vchan"
    take_over_port(d, "flood")
    # control: the marker is announced after the whole flood, so all of it was parsed
    assert wait_for(lambda: (vchan / "vchan.7.7.7.sock").exists(), 240, 0.5)
    names = [n for n in os.listdir(vchan) if n.startswith("vchan.9.")]
    assert 200 <= len(names) < 256  # bounded (256 names in all), and the flood arrived
    assert state_of(d, "v") == "Running"
    assert worker_rss_kb(d) < 64 * 1024
    d.call("admin.vm.Kill", "v")
    assert vm_leftovers(d, "v") == []


@pytest.mark.parametrize("mode", ["garbage", "oversized"])
def test_port_junk_stops_the_qube(vm_env, mode):
    """Garbage, or a frame longer than the protocol allows: the host bridge refuses it
    and ends; without it the qube has no qrexec, so it is stopped and reported as
    stopped unexpectedly (like a guest panic) with nothing left behind."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    take_over_port(d, mode)
    assert wait_for(lambda: state_of(d, "v") == "Halted", 120, 0.5)
    log = (d.runtime / "qubes/v/bridge.log").read_text()
    assert "malformed frame" in log  # control: the junk reached the host bridge's parser
    assert "stopping the qube" in log
    assert vm_leftovers(d, "v") == []
    assert "stopped unexpectedly" in d.log.read_text()


def helper_dies_while_bulkheadd_is_away(d, pid_file, log_name):
    """What the tests of a host helper of the running qube v killed from outside share:
    the helper (its pid in v's pid_file) dies while bulkheadd is away; the restarted
    bulkheadd does not adopt a VM without it: v is reported Halted, its QEMU is gone,
    the helper's log_name says why, nothing is left."""
    rt = d.runtime / "qubes/v"
    qemu = int((rt / "qemu.pid").read_text().split()[0])
    helper = int((rt / pid_file).read_text().split()[0])
    d.stop(9)
    assert alive(qemu)  # control: the VM outlives bulkheadd
    os.kill(helper, 9)
    assert wait_for(lambda: not alive(helper), 10, 0.1)
    d.start()
    assert wait_for(lambda: state_of(d, "v") == "Halted", 60, 0.2)
    assert not alive(qemu)
    assert "while bulkheadd was not running" in (rt / log_name).read_text()
    assert vm_leftovers(d, "v") == []


def test_host_bridge_killed_from_outside_stops_the_qube(vm_env):
    """The host bridge's worker killed on the host (OOM, an admin): the qube is stopped
    cleanly rather than left Running without qrexec."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    sup = int((d.runtime / "qubes/v/bridge.pid").read_text().split()[0])
    worker = int(pathlib.Path(f"/proc/{sup}/task/{sup}/children").read_text().split()[0])
    os.kill(worker, 9)
    assert wait_for(lambda: state_of(d, "v") == "Halted", 60, 0.2)
    assert "killed (signal 9)" in (d.runtime / "qubes/v/bridge.log").read_text()
    assert vm_leftovers(d, "v") == []


def test_whole_host_bridge_killed_is_reported_and_the_qube_starts_again(vm_env):
    """The host bridge's supervisor SIGKILLed (its worker follows it): QEMU alone would
    run on, Running without qrexec, and stay so. bulkheadd watches the bridge beside
    QEMU: the qube is stopped, reported as stopped unexpectedly, the reason is logged,
    nothing is left, and it starts and answers again. Also the same while bulkheadd is
    down: the restarted daemon does not adopt a VM without its bridge.
    QEMU runs on without its bridge: telling that from a QEMU that is ending cleanly
    takes a 2 s grace, which runs beside bulkheadd's loop (a guest can make its bridge
    end: junk on its port), so Admin API calls are answered meanwhile."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    assert qvm_run(d, "-p", "v", "echo before").stdout == b"before\n"  # control: qrexec worked
    qemu = int((d.runtime / "qubes/v/qemu.pid").read_text().split()[0])
    sup = int((d.runtime / "qubes/v/bridge.pid").read_text().split()[0])
    log_at = d.log.stat().st_size  # the module's daemon log: earlier tests' lines too
    os.kill(sup, 9)
    t0, waits = time.monotonic(), []
    while time.monotonic() - t0 < 60:
        t1 = time.monotonic()
        st = state_of(d, "v")
        d.call("admin.vm.List", "v")
        waits.append(time.monotonic() - t1)
        if st == "Halted":
            break
        time.sleep(0.05)
    took = time.monotonic() - t0
    assert not alive(sup)  # control: the kill landed
    assert st == "Halted", st
    assert not alive(qemu)
    # control: the grace was paid (said only once it is over with QEMU still running)
    assert "vchan bridge ended while the qube ran" in (d.runtime / "qubes/v/bridge.log").read_text()
    assert took >= 1.9, took
    assert max(waits) < 1.0, (max(waits), took)  # in the loop: one call waited ~2 s
    assert "v: stopped unexpectedly" in d.log.read_bytes()[log_at:].decode(errors="replace")
    assert vm_leftovers(d, "v") == []
    start(d, "v")
    assert qvm_run(d, "-p", "v", "echo again").stdout == b"again\n"
    helper_dies_while_bulkheadd_is_away(d, "bridge.pid", "bridge.log")


def test_virtiofsd_killed_from_outside_stops_the_qube(vm_env):
    """The virtiofsd that serves the guest's /usr killed on the host (the qube's OOM, an
    admin): without it every file access of the guest on /usr hangs, so a qube left
    Running would answer nothing. bulkheadd watches it beside QEMU: the qube is stopped,
    reported as stopped unexpectedly with the reason, nothing is left, and it starts and
    answers again. Also while bulkheadd is down: the restarted daemon does not adopt it."""
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    assert qvm_run(d, "-p", "v", "echo before").stdout == b"before\n"  # control: the qube works
    rt = d.runtime / "qubes/v"
    qemu = int((rt / "qemu.pid").read_text().split()[0])
    vfs = int((rt / "virtiofsd.pid").read_text().split()[0])
    assert alive(vfs)  # control: template `host` shares /usr through this virtiofsd
    log_at = d.log.stat().st_size  # the module's daemon log: earlier tests' lines too
    os.kill(vfs, 9)
    assert wait_for(lambda: state_of(d, "v") == "Halted", 60, 0.2)
    assert not alive(qemu)
    assert "virtiofsd of /usr ended while the qube ran" in (rt / "virtiofsd.log").read_text()
    assert "v: stopped unexpectedly" in d.log.read_bytes()[log_at:].decode(errors="replace")
    assert vm_leftovers(d, "v") == []
    start(d, "v")
    assert qvm_run(d, "-p", "v", "echo again").stdout == b"again\n"
    helper_dies_while_bulkheadd_is_away(d, "virtiofsd.pid", "virtiofsd.log")
