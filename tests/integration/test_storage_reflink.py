"""On a filesystem with reflinks (XFS here, on a loop device this test makes), clones
and revisions share blocks instead of copying, and the pool's default
revisions_to_keep is Qubes' 1; on ext4 (no reflinks) it is 0."""
import os
import shutil
import subprocess

import pytest

from storage_fixtures import Storage, storage, disk_usage, loop_mounted  # noqa: F401

MiB = 1 << 20


def xfs_in_kernel():
    with open("/proc/filesystems") as f:
        return any(line.split()[-1] == "xfs" for line in f if line.strip())


@pytest.fixture
def xfs_storage(build_dir, tmp_path):
    if not shutil.which("mkfs.xfs"):
        pytest.skip("mkfs.xfs (xfsprogs) not installed")
    # The kernel must mount XFS: built in or a module that loads (a kernel without it,
    # or one that loads no modules, cannot run this test at all).
    if not xfs_in_kernel():
        subprocess.run(["modprobe", "-q", "xfs"], capture_output=True)
        if not xfs_in_kernel():
            pytest.skip("the kernel has no XFS (not in /proc/filesystems, modprobe xfs failed)")
    backing = tmp_path / "xfs.img"
    with open(backing, "wb") as f:
        f.truncate(1 << 30)
    subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(backing)], check=True)
    mnt = tmp_path / "xfs"
    mnt.mkdir()
    with loop_mounted(backing, mnt, fstype="xfs"):
        yield Storage(build_dir, mnt)


def pool_info(s):
    return dict(line.split("=", 1) for line in s.run("pool-info").stdout.splitlines())


def test_no_reflink_default_zero(storage):
    info = pool_info(storage)
    assert info["driver"] == "file" and info["name"] == "default"
    assert info["dir_path"] == str(storage.pool)
    fs = subprocess.run(["stat", "-f", "-c", "%T", str(storage.root)], capture_output=True, text=True).stdout
    if "xfs" not in fs and "btrfs" not in fs:
        assert info["revisions_to_keep"] == "0"


def test_reflink_clone_and_revision_share_blocks(xfs_storage):
    s = xfs_storage
    assert pool_info(s)["revisions_to_keep"] == "1"
    s.run("create", "tpl", **{"class": "TemplateVM"})
    s.run("create", "work", template="tpl", private_size="512M", revisions=1)
    img = s.qdir("work") / "private.img"
    with open(img, "r+b") as f:
        f.seek(64 * MiB)
        for _ in range(200):
            f.write(os.urandom(MiB))
        os.fsync(f.fileno())
    before = os.statvfs(s.root)
    s.run("clone", "work", "copy", template="tpl")
    s.run("prepare", "work", template="tpl", revisions=1)
    after = os.statvfs(s.root)
    used = (before.f_bfree - after.f_bfree) * after.f_frsize
    assert used < 16 * MiB, f"clone + revision used {used} bytes: not shared"
    assert open(s.qdir("copy") / "private.img", "rb").read(1 << 20) == open(img, "rb").read(1 << 20)
