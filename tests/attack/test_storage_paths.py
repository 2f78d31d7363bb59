"""Attacks on the storage layer through names and planted links: hostile qube, volume
and revision names; symlinks planted in a pool's directories (by anyone) and inside a
template's root (by the template qube itself, which owns that tree). None may make
storage read, write, copy or delete anything outside the qube's own volumes."""
import os
import subprocess
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from storage_fixtures import storage  # noqa: E402,F401

HOSTILE_NAMES = ["..", ".", "../../etc", "a/b", "/etc", ".tmp-1-x", ".trash-1-x", "x" * 40, "work\nx", "",
                 "-rf", "none", "sys-dm", "wörk", "work ", "work/."]


@pytest.fixture
def canary(tmp_path):
    """A directory outside the pool with a secret file: it must stay exactly as it is."""
    d = tmp_path / "canary"
    d.mkdir()
    (d / "secret").write_text("host secret")
    (d / "1700000000").write_text("not a revision")
    return d


def tree(path):
    return sorted(str(p.relative_to(path)) for p in pathlib.Path(path).rglob("*"))


def assert_canary_intact(canary):
    assert (canary / "secret").read_text() == "host secret"
    assert sorted(os.listdir(canary)) == ["1700000000", "secret"]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_qube_names(storage, name):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    before = tree(storage.root)
    for args, opts in [(("create", name), {"class": "TemplateVM"}), (("create", name), {"template": "tpl"}),
                       (("create", "work"), {"template": name}), (("clone", "tpl", name), {"class": "TemplateVM"}),
                       (("info", name, "private"), {"template": "tpl"}), (("prepare", name), {"template": "tpl"}),
                       (("remove", name), {}), (("revert", name, "private"), {"template": "tpl"})]:
        r = storage.run(*args, check=False, **opts)
        assert r.returncode != 0, (args, opts)
    assert tree(storage.root) == before


@pytest.mark.parametrize("vol", ["../private", "private.img", "root/..", "/etc", "", "private\n", "revisions"])
def test_hostile_volume_names(storage, vol):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl")
    for args in (("info", "work", vol), ("resize", "work", vol, "4G"), ("snapshots", "work", vol),
                 ("revert", "work", vol)):
        assert storage.run(*args, check=False, template="tpl").returncode != 0, args


@pytest.mark.parametrize("rev", ["../../../etc/passwd", "0", "01", "1/../2", "99999999999999999999", "-1", "1 2",
                                 ".tmp-1-1"])
def test_hostile_revision_names(storage, rev):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl", revisions=1, private_size="16M")
    # a real revision to aim next to (revisions are taken at start: prepare, then stopped)
    storage.run("prepare", "work", template="tpl", revisions=1)
    storage.run("stopped", "work", template="tpl", revisions=1)
    revs = storage.run("snapshots", "work", "private", template="tpl", revisions=1).stdout.split()
    assert len(revs) == 1, revs
    r = storage.run("revert", "work", "private", rev, check=False, template="tpl", revisions=1)
    assert r.returncode != 0
    # control: the real revision's name is accepted by the same call
    r = storage.run("revert", "work", "private", revs[0], check=False, template="tpl", revisions=1)
    assert r.returncode == 0, r.stderr


def test_hostile_sizes(storage):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl", private_size="16M")
    for size in ("18446744073709551615", "16777216T", "1K", "-5G", "5Q", "0"):
        assert storage.run("resize", "work", "private", size, check=False, template="tpl").returncode != 0
    assert (storage.qdir("work") / "private.img").stat().st_size == 16 << 20


def test_symlinked_qube_dir_not_followed(storage, canary):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    os.symlink(canary, storage.qdir("evil"))
    for args, opts in [(("info", "evil", "private"), {"template": "tpl"}), (("prepare", "evil"), {"template": "tpl"}),
                       (("remove", "evil"), {}), (("clone", "evil", "copy"), {"template": "tpl"}),
                       (("resize", "evil", "private", "4G"), {"template": "tpl"})]:
        storage.run(*args, check=False, **opts)
        assert_canary_intact(canary)
    assert not storage.qdir("copy").exists()


def test_symlinked_private_img_not_followed(storage, canary):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl", revisions=1)
    img = storage.qdir("work") / "private.img"
    img.unlink()
    os.symlink(canary / "secret", img)
    opts = {"template": "tpl", "revisions": 1}
    # (prepare takes the revision, so it is the step that would copy the target)
    for args in (("resize", "work", "private", "4G"), ("clone", "work", "copy"),
                 ("prepare", "work"), ("info", "work", "private")):
        assert storage.run(*args, check=False, **opts).returncode != 0, args
    storage.run("stopped", "work", check=False, **opts)  # reads no image: nothing to follow
    assert_canary_intact(canary)
    # Nothing of the target was copied anywhere in the pool.
    for p in storage.root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            assert b"host secret" not in p.read_bytes()[:64], p


def test_symlinked_revisions_not_followed(storage, canary):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl", revisions=1, private_size="16M")
    revs = storage.qdir("work") / "revisions"
    opts = {"template": "tpl", "revisions": 1}
    # control: with a real revisions dir, prepare (start) is the step that writes one
    storage.run("prepare", "work", **opts)
    storage.run("stopped", "work", **opts)
    assert len(os.listdir(revs / "private")) == 1
    import shutil
    shutil.rmtree(revs / "private")
    os.symlink(canary, revs / "private")
    assert storage.run("snapshots", "work", "private", check=False, **opts).stdout == ""
    assert storage.run("revert", "work", "private", "1700000000", check=False, **opts).returncode != 0
    storage.run("prepare", "work", check=False, **opts)  # must not write a revision into the canary
    storage.run("stopped", "work", check=False, **opts)  # nor prune one there
    assert_canary_intact(canary)
    assert (storage.qdir("work") / "private.img").read_bytes()[:16] != b"not a revision"


def test_symlinked_mount_point_refused(storage, canary):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl")
    mnt = storage.qdir("work") / "private-mnt"
    mnt.rmdir()
    os.symlink(canary, mnt)
    assert storage.run("prepare", "work", check=False, template="tpl").returncode != 0


def test_template_root_replaced_by_symlink(storage, canary):
    storage.run("create", "tpl", **{"class": "TemplateVM"})
    storage.run("create", "work", template="tpl")
    root = storage.qdir("tpl") / "root"
    subprocess.run(["umount", str(root)], check=True)  # the root image's mount point
    root.rmdir()
    os.symlink(canary, root)
    assert storage.run("prepare", "work", check=False, template="tpl").returncode != 0
    assert storage.run("prepare", "tpl", check=False, **{"class": "TemplateVM"}).returncode != 0
    assert storage.run("clone", "tpl", "tpl2", check=False, **{"class": "TemplateVM"}).returncode != 0
    assert not storage.qdir("tpl2").exists()
    storage.run("remove", "tpl")
    assert_canary_intact(canary)


def test_links_planted_inside_template_root(storage, canary):
    """The template qube owns its root tree and may plant any symlink there. Snapshots,
    clones, reverts and removal copy or delete the links themselves, never their targets."""
    opts = {"class": "TemplateVM", "revisions": 1}
    storage.run("create", "tpl", **opts)
    root = storage.qdir("tpl") / "root"
    os.symlink(canary, root / "abs")
    os.symlink("../../../../../../../../" + str(canary).lstrip("/"), root / "rel")
    (root / "d").mkdir()
    os.symlink(canary / "secret", root / "d/file")
    storage.run("prepare", "tpl", **opts)  # snapshot of root (taken at start)
    storage.run("clone", "tpl", "tpl2", **opts)
    r = storage.qdir("tpl2") / "root"
    assert (r / "abs").is_symlink() and (r / "rel").is_symlink() and (r / "d/file").is_symlink()
    # A revision of root is a copy of its image (links inside it stay links in it).
    rev = next((storage.qdir("tpl") / "revisions/root").iterdir())
    assert rev.is_file() and not rev.is_symlink()
    storage.run("revert", "tpl", "root", **opts)
    assert (root / "abs").is_symlink()
    for q in ("tpl", "tpl2"):
        storage.run("remove", q)
    assert_canary_intact(canary)
