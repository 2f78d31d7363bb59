"""A template's (or standalone's) root volume is an ext4 image, root.img, mounted on the
host at root/ with nosuid, nodev and noexec (docs/storage.md "Root volume"): its size
is a real limit, it grows with resize, clone copies it, remove unmounts it, a lost
mount is made again at the next start, and a root left as a plain directory by an
earlier version is converted once. Through the bulkhead-storage front end."""
import os
import subprocess

import pytest

from storage_fixtures import storage  # noqa: F401
import mount_cleanup

MiB = 1 << 20
GiB = 1 << 30
TPL = {"class": "TemplateVM"}


def is_mount(path):
    return str(path) in mount_cleanup.mounts_below(os.path.dirname(str(path)))


def loops_backing(img):
    """Loop devices whose backing file is img (by name, as sysfs shows it)."""
    found = []
    for dev in os.listdir("/sys/block"):
        try:
            with open(f"/sys/block/{dev}/loop/backing_file") as f:
                if f.read().strip() == str(img):
                    found.append(dev)
        except OSError:
            pass
    return found


def fs_size(path):
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize


def fs_blocks(img):
    out = subprocess.run(["dumpe2fs", "-h", str(img)], capture_output=True, text=True, check=True).stdout
    return int(next(ln for ln in out.splitlines() if ln.startswith("Block count:")).split()[-1])


def test_template_root_is_a_mounted_sized_image(storage):
    storage.run("create", "tpl", **TPL)
    q = storage.qdir("tpl")
    img, root = q / "root.img", q / "root"
    assert img.is_file() and img.stat().st_size == 10 * GiB
    assert img.stat().st_blocks * 512 < 64 * MiB          # sparse: mkfs without mounting
    assert is_mount(root)
    flags = os.statvfs(root).f_flag
    assert flags & os.ST_NOSUID and flags & os.ST_NODEV and flags & os.ST_NOEXEC
    assert 9 * GiB < fs_size(root) <= 10 * GiB
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("x\n")
    info = storage.info("tpl", "root", **TPL)
    assert info["size"] == str(10 * GiB)
    assert int(info["usage"]) == img.stat().st_blocks * 512


def test_resize_grows_the_image_shrink_refused(storage):
    storage.run("create", "tpl", **TPL)
    q = storage.qdir("tpl")
    (q / "root/marker").write_text("kept\n")
    assert storage.run("resize", "tpl", "root", "8G", check=False, **TPL).returncode != 0
    storage.run("resize", "tpl", "root", "12G", **TPL)
    assert (q / "root.img").stat().st_size == 12 * GiB
    assert 11 * GiB < fs_size(q / "root") <= 12 * GiB       # the filesystem grew, not only the file
    assert (q / "root/marker").read_text() == "kept\n"
    assert not (q / "root.resize").exists()
    assert storage.info("tpl", "root", **TPL)["size"] == str(12 * GiB)
    assert storage.leftovers() == []


def test_resize_waits_while_a_qube_holds_the_root(storage, tmp_path):
    """Another mount of the image (as a running qube's) keeps its superblock: the image
    must not be resized offline under it; the wish is kept and done at the next start."""
    storage.run("create", "tpl", **TPL)
    q = storage.qdir("tpl")
    held = tmp_path / "held"
    held.mkdir()
    subprocess.run(["mount", "--bind", str(q / "root"), str(held)], check=True)
    try:
        storage.run("resize", "tpl", "root", "11G", **TPL)
        assert (q / "root.resize").read_text().strip() == str(11 * GiB)
        assert storage.info("tpl", "root", **TPL)["size"] == str(11 * GiB)
        assert fs_size(held) <= 10 * GiB                     # not touched under its user
        assert is_mount(q / "root")                          # and the host mount is back
    finally:
        subprocess.run(["umount", str(held)], check=True)
    storage.run("prepare", "tpl", **TPL)
    assert not (q / "root.resize").exists()
    assert 10 * GiB < fs_size(q / "root") <= 11 * GiB
    storage.run("stopped", "tpl", **TPL)


def test_clone_copies_the_image(storage):
    storage.run("create", "tpl", **TPL)
    q = storage.qdir("tpl")
    (q / "root/a").write_text("from tpl\n")
    storage.run("resize", "tpl", "root", "11G", **TPL)
    storage.run("clone", "tpl", "tpl2", **TPL)
    q2 = storage.qdir("tpl2")
    assert is_mount(q2 / "root") and (q2 / "root/a").read_text() == "from tpl\n"
    assert (q2 / "root.img").stat().st_size == 11 * GiB
    (q2 / "root/a").write_text("changed in tpl2\n")
    assert (q / "root/a").read_text() == "from tpl\n"


def test_remove_unmounts_and_frees_the_loop_device(storage):
    storage.run("create", "tpl", **TPL)
    q = storage.qdir("tpl")
    img = q / "root.img"
    assert loops_backing(img)
    storage.run("remove", "tpl")
    assert not q.exists()
    assert not mount_cleanup.mounts_below(storage.root)
    for _ in range(1200):
        if not loops_backing(img):
            break
        import time
        time.sleep(0.05)
    assert not loops_backing(img)


def test_lost_mount_is_made_again_at_start(storage):
    """After a reboot (or an administrator's umount) the next start mounts the root
    again, for the template and for an app qube started on it."""
    storage.run("create", "tpl", **TPL)
    storage.run("create", "work", template="tpl")
    q = storage.qdir("tpl")
    (q / "root/marker").write_text("m\n")
    subprocess.run(["umount", str(q / "root")], check=True)
    assert not (q / "root/marker").exists()
    lay = storage.layout("work", template="tpl")
    assert lay["root_lower"] == str(q / "root")
    assert is_mount(q / "root") and (q / "root/marker").read_text() == "m\n"
    storage.run("stopped", "work", template="tpl")


def make_legacy(storage, name="tpl"):
    """The layout of an earlier version: root/ a plain directory, no root.img."""
    storage.run("create", name, **TPL)
    q = storage.qdir(name)
    subprocess.run(["umount", str(q / "root")], check=True)
    (q / "root.img").unlink()
    root = q / "root"
    (root / "etc").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0::/root:/bin/sh\n")
    os.symlink("/etc/passwd", root / "abs-link")
    os.link(root / "etc/passwd", root / "hard")
    (root / "suid").write_bytes(b"#!/bin/sh\n")
    os.chown(root / "suid", 1234, 1234)
    os.chmod(root / "suid", 0o4755)
    return q


def test_legacy_directory_root_is_converted_once(storage):
    q = make_legacy(storage)
    assert storage.info("tpl", "root", **TPL)["size"] == str(10 * GiB)
    storage.run("prepare", "tpl", **TPL)
    root = q / "root"
    assert (q / "root.img").is_file() and is_mount(root)
    assert (root / "etc/passwd").read_text().startswith("root:")
    assert os.readlink(root / "abs-link") == "/etc/passwd"
    assert os.stat(root / "hard").st_ino == os.stat(root / "etc/passwd").st_ino
    st = os.stat(root / "suid")
    assert st.st_mode & 0o7777 == 0o4755 and st.st_uid == 1234
    assert (q / "root.img").stat().st_size == 10 * GiB
    storage.run("stopped", "tpl", **TPL)
    assert storage.leftovers() == []
    ino = (q / "root.img").stat().st_ino
    storage.run("prepare", "tpl", **TPL)                  # once: the image stays
    assert (q / "root.img").stat().st_ino == ino


def test_legacy_conversion_crash_keeps_the_tree(storage):
    q = make_legacy(storage)
    r = storage.run("prepare", "tpl", check=False, env={"BH_STORAGE_FAILPOINT": "convert-before-rename"}, **TPL)
    assert r.returncode < 0
    assert not (q / "root.img").exists() and (q / "root/etc/passwd").is_file()
    # The next start sweeps the dead temporaries and converts.
    storage.run("prepare", "tpl", **TPL)
    assert is_mount(q / "root") and (q / "root/etc/passwd").is_file()
    storage.run("stopped", "tpl", **TPL)
    assert storage.leftovers() == []


def test_legacy_conversion_crash_while_mounted_is_swept(storage):
    """Killed while the new image is mounted at its temporary mount point: the next
    pool open detaches that mount and deletes the temporaries, then converts."""
    q = make_legacy(storage)
    r = storage.run("prepare", "tpl", check=False, env={"BH_STORAGE_FAILPOINT": "convert-mounted"}, **TPL)
    assert r.returncode < 0
    assert [m for m in mount_cleanup.mounts_below(q) if "rootmnt" in m]    # the crash's state
    storage.run("prepare", "tpl", **TPL)
    assert not [m for m in mount_cleanup.mounts_below(q) if "rootmnt" in m]
    assert is_mount(q / "root") and (q / "root/etc/passwd").is_file()
    storage.run("stopped", "tpl", **TPL)
    assert storage.leftovers() == []


def test_resize_crash_keeps_the_old_image_and_the_wish(storage):
    storage.run("create", "tpl", **TPL)
    q = storage.qdir("tpl")
    (q / "root/marker").write_text("kept\n")
    r = storage.run("resize", "tpl", "root", "12G", check=False,
                    env={"BH_STORAGE_FAILPOINT": "root-resize-before-rename"}, **TPL)
    assert r.returncode < 0
    # The image is the old filesystem (an online attempt may have lengthened the file,
    # which is harmless to it), and the wish is kept.
    assert fs_blocks(q / "root.img") * 4096 == 10 * GiB
    assert (q / "root.resize").read_text().strip() == str(12 * GiB)
    storage.run("prepare", "tpl", **TPL)                  # done at the next start
    assert not (q / "root.resize").exists()
    assert 11 * GiB < fs_size(q / "root") <= 12 * GiB
    assert (q / "root/marker").read_text() == "kept\n"
    storage.run("stopped", "tpl", **TPL)
    assert storage.leftovers() == []


def test_revert_root_swaps_the_image(storage):
    opts = dict(TPL, revisions=1)
    storage.run("create", "tpl", **opts)
    q = storage.qdir("tpl")
    (q / "root/v").write_text("1\n")
    storage.run("prepare", "tpl", **opts)                 # revision: root as it was (v=1)
    (q / "root/v").write_text("2\n")
    storage.run("stopped", "tpl", **opts)
    revs = list((q / "revisions/root").iterdir())
    assert len(revs) == 1 and revs[0].is_file()
    storage.run("revert", "tpl", "root", **opts)
    assert is_mount(q / "root") and (q / "root/v").read_text() == "1\n"
    assert storage.leftovers() == []


def test_remount_shares_the_superblock_a_qube_still_holds(storage, tmp_path):
    """A running qube keeps its own mount of the template's root (here: a bind) after
    the host mount is gone (daemon crash, admin umount). Mounting the image again must
    go through the same loop device (one superblock), never a second one: two ext4
    instances on one image would corrupt it."""
    storage.run("create", "tpl", **TPL)
    storage.run("create", "work", template="tpl")
    q = storage.qdir("tpl")
    held = tmp_path / "held"
    held.mkdir()
    subprocess.run(["mount", "--bind", str(q / "root"), str(held)], check=True)
    try:
        subprocess.run(["umount", str(q / "root")], check=True)
        assert len(loops_backing(q / "root.img")) == 1      # kept alive by the holder
        storage.layout("work", template="tpl")
        assert is_mount(q / "root")
        assert len(loops_backing(q / "root.img")) == 1      # the same device again
        (held / "written-by-the-holder").write_text("1\n")
        assert (q / "root/written-by-the-holder").read_text() == "1\n"   # one filesystem
        storage.run("stopped", "work", template="tpl")
    finally:
        subprocess.run(["umount", str(held)], check=True)
