"""Mounting an attached block device inside an ns qube, as a Qubes user does:
`qvm-block attach work dom0:loop7`, then in the qube `sudo mount /dev/xvdi /mnt/removable`.
The qube cannot mount (Landlock) and the host kernel must not parse a disk the qube
controls, so the familiar command runs fuse2fs inside the qube (mount(8) -> our
mount.ext4 -> fuse2fs -> libfuse -> our fusermount -> the qube's FUSE broker, which
makes the FUSE mount in the qube's namespaces). A real ext4 image on a dom0 loop device:
the qube reads a file, writes one (seen in dom0 after the detach, read by debugfs
without mounting), umount works, and a read-only attach refuses writes."""
import os
import shutil
import subprocess
import time

import pytest

from admin_fixtures import engine_daemon  # noqa: F401
from qrexec_fixtures import bin_path

pytestmark = pytest.mark.skipif(not shutil.which("fuse2fs") or not os.path.exists("/dev/fuse"),
                                reason="needs fuse2fs (Debian package fuse2fs) and /dev/fuse on the host")


@pytest.fixture
def ext4_loop(tmp_path):
    """A loop device over a 32 MiB ext4 image holding hello.txt; detached at the end."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "hello.txt").write_bytes(b"hello from dom0\n")
    img = tmp_path / "disk.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", str(src), str(img), "32M"],
                   check=True, capture_output=True)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                         check=True).stdout.strip()
    yield os.path.basename(dev), img
    subprocess.run(["losetup", "-d", dev], check=False)


def qrun(d, qube, cmd, user="root"):
    return subprocess.run([bin_path("qvm-run"), "-p", "-u", user, qube, cmd], env=d.env,
                          capture_output=True, timeout=90)


def debugfs_cat(img, path):
    r = subprocess.run(["debugfs", "-R", f"cat {path}", str(img)], capture_output=True, timeout=30)
    return r.stdout


def test_mount_read_write_umount_then_dom0_sees_the_file(engine_daemon, ext4_loop):
    d = engine_daemon
    port, img = ext4_loop
    d.call("admin.vm.Start", "a")
    r = d.tool("qvm-block", "attach", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    r = qrun(d, "a", "mkdir -p /mnt/removable && mount /dev/xvdi /mnt/removable && "
                     "cat /mnt/removable/hello.txt && grep ' /mnt/removable ' /proc/self/mounts")
    assert r.returncode == 0, r.stderr
    out = r.stdout.decode()
    assert out.startswith("hello from dom0\n"), out
    assert "/dev/xvdi /mnt/removable fuse.ext4 rw,nosuid,nodev" in out, out
    # a user of the qube reads it too, with the file's modes checked by the kernel
    r = qrun(d, "a", "cat /mnt/removable/hello.txt; touch /mnt/removable/by-user", user="user")
    assert r.stdout == b"hello from dom0\n" and r.returncode != 0, r
    r = qrun(d, "a", "echo written in the qube > /mnt/removable/new.txt && umount /mnt/removable && "
                     "! grep -q ' /mnt/removable ' /proc/self/mounts && echo unmounted")
    assert (r.returncode, r.stdout) == (0, b"unmounted\n"), r.stderr
    r = d.tool("qvm-block", "detach", "a", f"dom0:{port}")
    assert r.returncode == 0, r.stderr
    assert debugfs_cat(img, "/new.txt") == b"written in the qube\n"
    assert debugfs_cat(img, "/hello.txt") == b"hello from dom0\n"


def test_read_only_attach_mounts_read_only(engine_daemon, ext4_loop):
    d = engine_daemon
    port, img = ext4_loop
    d.call("admin.vm.Start", "a")
    r = d.tool("qvm-block", "attach", "--ro", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    r = qrun(d, "a", "mkdir -p /mnt/ro && mount /dev/xvdi /mnt/ro; cat /mnt/ro/hello.txt; "
                     "grep ' /mnt/ro ' /proc/self/mounts")
    assert r.stdout.startswith(b"hello from dom0\n"), r
    assert b"write-protected, mounted read-only" in r.stderr, r.stderr
    assert b" /mnt/ro fuse.ext4 ro," in r.stdout, r.stdout
    r = qrun(d, "a", "echo x > /mnt/ro/new.txt; echo status=$?")
    assert r.stdout != b"status=0\n" and b"Read-only file system" in r.stderr, r
    # and past the mount: the device itself does not open for writing
    r = qrun(d, "a", "umount /mnt/ro; printf x | dd of=/dev/xvdi bs=1 seek=0 conv=notrunc status=none; echo $?")
    assert r.stdout.endswith(b"1\n"), r
    d.tool("qvm-block", "detach", "a", f"dom0:{port}")
    assert debugfs_cat(img, "/new.txt") == b""


def test_attach_to_a_paused_qube_returns_and_mounts_after_unpause(engine_daemon, ext4_loop, tmp_path):
    """The mount broker's helper would freeze in a paused qube's cgroup before its exec,
    and bulkheadd with it (unpausing needs bulkheadd): attaching to a paused qube answers
    at once, and after unpause a detach and attach again give a mountable device."""
    d = engine_daemon
    port, img = ext4_loop
    d.call("admin.vm.Start", "a")
    d.call("admin.vm.Pause", "a")
    t0 = time.time()
    r = d.tool("qvm-block", "attach", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, ""), r
    assert time.time() - t0 < 10
    d.call("admin.vm.Unpause", "a")
    assert d.tool("qvm-block", "detach", "a", f"dom0:{port}").returncode == 0
    assert d.tool("qvm-block", "attach", "a", f"dom0:{port}").returncode == 0
    r = qrun(d, "a", "mkdir -p /mnt/removable && mount /dev/xvdi /mnt/removable && cat /mnt/removable/hello.txt "
                     "&& umount /mnt/removable")
    assert r.stdout == b"hello from dom0\n", r
    assert d.tool("qvm-block", "detach", "a", f"dom0:{port}").returncode == 0
