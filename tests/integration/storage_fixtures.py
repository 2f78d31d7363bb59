"""Fixtures for the storage tests: a private Bulkhead root per test, the
`bulkhead-storage` front end, and loop mounts that are always undone."""
import contextlib
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

import mount_cleanup

INFO_KEYS = ["pool", "vid", "size", "usage", "rw", "source", "save_on_stop", "snap_on_start",
             "revisions_to_keep", "ephemeral", "is_outdated"]


class Storage:
    def __init__(self, build_dir, root):
        self.exe = str(pathlib.Path(build_dir) / "src/storage/bulkhead-storage")
        self.qvm_template = str(pathlib.Path(build_dir) / "src/storage/qvm-template")
        self.root = pathlib.Path(root)
        self.pool = self.root / "pools/default"
        self.qubes = self.pool / "qubes"

    def run(self, *args, check=True, env=None, **opts):
        argv = [self.exe, "--root", str(self.root)]
        for k, v in opts.items():
            argv += ["--" + k.replace("_", "-"), str(v)]
        argv += [str(a) for a in args]
        e = dict(os.environ)
        if env:
            e.update(env)
        r = subprocess.run(argv, capture_output=True, text=True, env=e, timeout=300)
        if check and r.returncode != 0:
            raise AssertionError(f"{argv} failed ({r.returncode}): {r.stderr}")
        return r

    def info(self, name, vol, **opts):
        out = self.run("info", name, vol, **opts).stdout
        pairs = [line.split("=", 1) for line in out.splitlines()]
        assert [k for k, _ in pairs] == INFO_KEYS
        return dict(pairs)

    def layout(self, name, **opts):
        out = self.run("prepare", name, **opts).stdout
        return dict(line.split("=", 1) for line in out.splitlines())

    def qdir(self, name):
        return self.qubes / name

    def leftovers(self):
        """Temporaries visible anywhere in the pool's own directories."""
        found = []
        for d in [self.qubes] + [p for p in self.qubes.iterdir() if p.is_dir() and not p.is_symlink()]:
            found += [str(p) for p in d.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
            revs = d / "revisions"
            if revs.is_dir():
                for v in revs.iterdir():
                    found += [str(p) for p in v.iterdir() if p.name.startswith((".tmp-", ".trash-"))]
        return found


@pytest.fixture
def storage(build_dir):
    root = tempfile.mkdtemp(prefix="bh-storage-")
    s = Storage(build_dir, root)
    yield s
    # Template roots stay mounted until their qube is removed; nothing else may stay
    # mounted below the root. Then remove it.
    unexpected = [mp for mp in mount_cleanup.mounts_below(root)
                  if not (mp.endswith("/root") and os.path.isfile(mp + ".img"))]
    mount_cleanup.unmount_below(root)  # also what the test should not have left
    assert not unexpected, f"a test left a mount behind: {unexpected}"
    shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def loop_mounted(image, mountpoint=None, fstype="ext4"):
    """Mounts an ext4 image through an explicit loop device; always unmounts and
    detaches the loop device afterwards."""
    made = mountpoint is None
    mnt = pathlib.Path(mountpoint or tempfile.mkdtemp(prefix="bh-mnt-"))
    dev = subprocess.run(["losetup", "-f", "--show", str(image)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        subprocess.run(["mount", "-t", fstype, dev, str(mnt)], check=True)
        try:
            yield mnt
        finally:
            mount_cleanup.unmount_below(mnt)  # template roots of a pool made in it
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        subprocess.run(["losetup", "-d", dev], check=True)
        if made:
            mnt.rmdir()


def disk_usage(path):
    st = os.stat(path, follow_symlinks=False)
    return st.st_blocks * 512
