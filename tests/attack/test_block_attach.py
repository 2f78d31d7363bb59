"""Attacks on block devices handed to a qube (qvm-block attach dom0:loopN), from the
qube's root. Each attack has a positive control proving that the attempt ran:
- a qube cannot open a block device that is not attached to it: not another qube's,
  and not its own after the detach, even through a hard link it kept of the node;
- a read-only attach cannot be written, even after chmod of the node;
- the loop ioctls that need no capability (LOOP_CLR_FD would detach dom0's loop
  device from its file) are refused; an ordinary block ioctl on the same fd works."""
import os
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from admin_fixtures import engine_daemon, wait_state  # noqa: E402,F401
from qrexec_fixtures import bin_path  # noqa: E402
from waiting import wait_for  # noqa: E402

PROBE = r'''
import errno, fcntl, os, struct, sys
def try_open(path, flags):
    try:
        fd = os.open(path, flags)
    except OSError as e:
        return errno.errorcode[e.errno]
    os.close(fd)
    return "ok"
for arg in sys.argv[1:]:
    op, path = arg.split(":", 1)
    if op == "r":
        print(try_open(path, os.O_RDONLY))
    elif op == "w":
        print(try_open(path, os.O_WRONLY))
    elif op == "link":
        os.link(path, path + "-kept"); print("ok")
    elif op == "chmod":
        os.chmod(path, 0o666); print("ok")
    elif op == "mknod":
        try:
            os.mknod(path + "-made", 0o600 | 0o60000, os.stat("/dev/null").st_rdev + 0)
            print("ok")
        except OSError as e:
            print(errno.errorcode[e.errno])
    elif op == "ioctl":
        fd = os.open(path, os.O_RDONLY)
        size = struct.unpack("Q", fcntl.ioctl(fd, 0x80081272, b"\0" * 8))[0]  # BLKGETSIZE64
        try:
            fcntl.ioctl(fd, 0x4C01)                                           # LOOP_CLR_FD
            clr = "ok"
        except OSError as e:
            clr = errno.errorcode[e.errno]
        print(size, clr)
'''


def run_probe(d, qube, *ops):
    script = PROBE.replace("'", "'\\''")
    cmd = "python3 -c '" + script + "' " + " ".join(ops)
    r = subprocess.run([bin_path("qvm-run"), "-p", "-u", "root", qube, cmd], env=d.env, capture_output=True,
                       text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\n")[:-1]


@pytest.fixture
def loopdev(tmp_path):
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.truncate(4 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                         check=True).stdout.strip()
    yield os.path.basename(dev), dev
    subprocess.run(["losetup", "-d", dev], check=False)


def test_unattached_and_detached_devices_stay_closed(engine_daemon, loopdev):
    d = engine_daemon
    port, _ = loopdev
    d.call("admin.vm.Start", "a")
    d.call("admin.vm.Start", "b")
    d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="")
    # control: a opens its device, and keeps a hard link of the node
    assert run_probe(d, "a", "r:/dev/xvdi", "w:/dev/xvdi", "link:/dev/xvdi", "r:/dev/xvdi-kept") == \
        ["ok", "ok", "ok", "ok"]
    # b has no node and cannot make one (its root is root of a user namespace only)
    assert run_probe(d, "b", "r:/dev/xvdi", "mknod:/dev/x") == ["ENOENT", "EPERM"]
    d.call(f"admin.vm.device.block.Detach+dom0+{port}", "a")
    # after the detach the kept link is still there, but the device is closed to a
    assert run_probe(d, "a", "r:/dev/xvdi", "r:/dev/xvdi-kept", "w:/dev/xvdi-kept") == ["ENOENT", "EPERM", "EPERM"]
    # attached to b now: b opens it (control), a still cannot
    d.call(f"admin.vm.device.block.Attach+dom0+{port}", "b", payload="")
    assert run_probe(d, "b", "r:/dev/xvdi") == ["ok"]
    assert run_probe(d, "a", "r:/dev/xvdi-kept") == ["EPERM"]


def test_read_only_attach_cannot_be_written(engine_daemon, loopdev):
    d = engine_daemon
    port, _ = loopdev
    d.call("admin.vm.Start", "a")
    d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="_read-only='yes'")
    # control: reading works and the node's mode can be changed; writing still cannot
    assert run_probe(d, "a", "r:/dev/xvdi", "chmod:/dev/xvdi", "w:/dev/xvdi") == ["ok", "ok", "EPERM"]


def test_loop_ioctls_refused(engine_daemon, loopdev):
    d = engine_daemon
    port, dev = loopdev
    d.call("admin.vm.Start", "a")
    d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="")
    # control: BLKGETSIZE64 on the same fd answers; LOOP_CLR_FD is refused
    assert run_probe(d, "a", "ioctl:/dev/xvdi") == [f"{4 << 20} EPERM"]
    back = open(f"/sys/block/{port}/loop/backing_file").read().strip()
    assert back.endswith("disk.img")                                     # dom0's loop device is intact


def test_attachment_does_not_outlive_the_daemon_that_made_it(engine_daemon, loopdev):
    """A restarted bulkheadd knows of no attachment (the device is listed free again and
    could go to another qube): the qube it adopts must have lost the device too."""
    d = engine_daemon
    port, _ = loopdev
    d.call("admin.vm.Start", "a")
    d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="")
    # control: attached and open; the qube's root keeps a hard link of the node
    assert run_probe(d, "a", "r:/dev/xvdi", "link:/dev/xvdi") == ["ok", "ok"]
    d.stop(signal.SIGKILL)  # the qube outlives its daemon
    d.start()
    assert "state=Running" in d.call("admin.vm.List", "a")
    assert d.call("admin.vm.device.block.Attached", "a") == ""
    # its node is gone, and the kept link no longer opens (the cgroup took it back)
    assert run_probe(d, "a", "r:/dev/xvdi", "r:/dev/xvdi-kept", "w:/dev/xvdi-kept") == ["ENOENT", "EPERM", "EPERM"]
    # attached again by the new daemon (its first free name again), it opens: the
    # revocation did not break the qube
    d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="")
    assert run_probe(d, "a", "r:/dev/xvdi") == ["ok"]


def test_loop_freed_by_dom0_is_not_reused_while_attached(engine_daemon, loopdev):
    """The qube is allowed a device number: if dom0 frees the loop device (losetup -d)
    while it is attached, another qube's private image must not land on that number.
    bulkheadd holds the device open while it is attached, so the kernel defers the clear
    to the detach."""
    d = engine_daemon
    port, dev = loopdev
    d.call("admin.vm.Start", "a")
    d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="")
    backing = f"/sys/block/{port}/loop/backing_file"
    subprocess.run(["losetup", "-d", dev], check=True)  # dom0 frees it without a detach
    assert open(backing).read().strip().endswith("disk.img")  # still bound: not reusable
    d.call("admin.vm.Start", "b")  # a qube start binds a loop device for its private image
    assert open(backing).read().strip().endswith("disk.img")
    d.call(f"admin.vm.device.block.Detach+dom0+{port}", "a")
    # control: with the attachment gone, the deferred clear happens
    assert wait_for(lambda: not os.path.exists(backing))
