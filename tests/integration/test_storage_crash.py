"""Crash safety: a process killed with SIGKILL in the middle of any change leaves the
old state or the new one, never a half; its temporaries are invisible as volumes and
are swept at the next pool open.

Two ways: failpoints (the test build of the library kills itself at a named instant,
exactly like a crash there) and real kills at several moments of a long copy."""
import hashlib
import signal
import subprocess
import time

import pytest

from storage_fixtures import storage, loop_mounted  # noqa: F401

MiB = 1 << 20


def crash(s, failpoint, *args, **opts):
    r = s.run(*args, check=False, env={"BH_STORAGE_FAILPOINT": failpoint}, **opts)
    assert r.returncode == -signal.SIGKILL, f"failpoint {failpoint} not reached: {r.returncode} {r.stderr}"
    assert s.leftovers(), "the crash happened mid-operation, so a temporary must exist"


def reopen(s):
    s.run("remove", "nosuchqube")  # any pool open sweeps dead processes' temporaries
    assert s.leftovers() == []


def setup_pair(s, revisions=0):
    s.run("create", "tpl", **{"class": "TemplateVM"})
    s.run("create", "work", template="tpl", private_size="32M", revisions=revisions)


def marker(img, text=None):
    with loop_mounted(img) as mnt:
        if text is not None:
            (mnt / "marker").write_text(text)
        return (mnt / "marker").read_text()


def test_create_crash(storage):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    crash(storage, "create-before-rename", "create", "work", template="tpl")
    assert not storage.qdir("work").exists()
    reopen(storage)
    storage.run("create", "work", template="tpl")  # the name is free again


def test_clone_crash(storage):
    setup_pair(storage)
    crash(storage, "clone-before-rename", "clone", "work", "copy", template="tpl")
    assert not storage.qdir("copy").exists()
    reopen(storage)


def test_remove_crash(storage):
    setup_pair(storage)
    crash(storage, "remove-after-rename", "remove", "work")
    assert not storage.qdir("work").exists()  # gone from view in one step
    reopen(storage)


def test_revert_private_crash(storage):
    setup_pair(storage, revisions=1)
    img = storage.qdir("work") / "private.img"
    marker(img, "old")
    storage.run("prepare", "work", template="tpl", revisions=1)
    marker(img, "current")
    crash(storage, "revert-before-rename", "revert", "work", "private", template="tpl", revisions=1)
    assert marker(img) == "current"
    reopen(storage)
    storage.run("revert", "work", "private", template="tpl", revisions=1)
    assert marker(img) == "old"


def test_revert_root_crash(storage):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    opts = {"class": "TemplateVM", "revisions": 1}
    (storage.qdir("tpl") / "root/f").write_text("old")
    storage.run("prepare", "tpl", **opts)
    (storage.qdir("tpl") / "root/f").write_text("current")
    crash(storage, "revert-before-rename", "revert", "tpl", "root", **opts)
    assert (storage.qdir("tpl") / "root/f").read_text() == "current"
    reopen(storage)


def test_resize_crash(storage):
    setup_pair(storage)
    img = storage.qdir("work") / "private.img"
    marker(img, "data")
    crash(storage, "resize-before-rename", "resize", "work", "private", "64M", template="tpl")
    assert img.stat().st_size == 32 * MiB and marker(img) == "data"
    reopen(storage)


def test_snapshot_crash(storage):
    setup_pair(storage, revisions=2)
    crash(storage, "snapshot-before-rename", "prepare", "work", template="tpl", revisions=2)
    assert storage.run("snapshots", "work", "private", template="tpl").stdout == ""
    reopen(storage)


def test_template_build_crash(storage):
    crash(storage, "template-before-rename", "ensure-host")
    assert not storage.qdir("host").exists()
    reopen(storage)
    assert storage.run("ensure-host").stdout == "created\n"


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def fill_image_data(img, byte, mib):
    """Real data extents in the image file (copied byte by byte, not as holes)."""
    with open(img, "r+b") as f:
        f.seek(64 * MiB)
        block = bytes([byte]) * MiB
        for _ in range(mib):
            f.write(block)


@pytest.mark.parametrize("delay", [0.02, 0.1, 0.3])
def test_kill_during_clone(storage, delay):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl", private_size="512M")
    img = storage.qdir("work") / "private.img"
    fill_image_data(img, 0xA5, 300)
    want = sha(img)
    p = subprocess.Popen([storage.exe, "--root", str(storage.root), "--template", "tpl", "clone", "work", "copy"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.kill()
    p.wait()
    dst = storage.qdir("copy") / "private.img"
    if storage.qdir("copy").exists():  # finished before the kill: then it is whole
        assert sha(dst) == want
    reopen(storage)
    assert sha(img) == want


@pytest.mark.parametrize("delay", [0.02, 0.1, 0.3])
def test_kill_during_revert(storage, delay):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl", private_size="512M", revisions=1)
    img = storage.qdir("work") / "private.img"
    fill_image_data(img, 0x11, 300)
    old = sha(img)
    storage.run("prepare", "work", template="tpl", revisions=1)
    fill_image_data(img, 0x22, 300)
    cur = sha(img)
    p = subprocess.Popen([storage.exe, "--root", str(storage.root), "--template", "tpl", "--revisions", "1",
                          "revert", "work", "private"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(delay)
    p.kill()
    p.wait()
    assert sha(img) in (old, cur)
    reopen(storage)
