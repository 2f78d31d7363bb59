"""Storage pools and volumes through the bulkhead-storage front end: real ext4 images,
real loop mounts, a private root per test."""
import os
import subprocess

import pytest

from storage_fixtures import storage, loop_mounted, disk_usage, INFO_KEYS  # noqa: F401

MiB = 1 << 20
GiB = 1 << 30


def make_template(s, name="tpl", **opts):
    s.run("create", name, **{"class": "TemplateVM", **opts})


def make_app(s, name="work", template="tpl", **opts):
    s.run("create", name, template=template, **{"class": "AppVM", **opts})


def test_volume_list(storage):
    assert storage.run("volumes").stdout == "root\nprivate\nvolatile\nkernel\n"


def test_info_fields_per_class(storage):
    make_template(storage, revisions=2)
    make_app(storage)
    t_root = storage.info("tpl", "root", **{"class": "TemplateVM"}, revisions=2)
    assert t_root["vid"] == "qubes/tpl/root" and t_root["pool"] == "default"
    assert (t_root["rw"], t_root["save_on_stop"], t_root["snap_on_start"]) == ("True", "True", "False")
    assert t_root["revisions_to_keep"] == "2" and t_root["size"] == str(10 * GiB)
    a_root = storage.info("work", "root", template="tpl")
    assert a_root["source"] == "qubes/tpl/root"
    assert (a_root["save_on_stop"], a_root["snap_on_start"], a_root["is_outdated"]) == ("False", "True", "False")
    a_priv = storage.info("work", "private", template="tpl")
    assert a_priv["size"] == str(2 * GiB) and a_priv["save_on_stop"] == "True" and a_priv["source"] == ""
    vol = storage.info("work", "volatile", template="tpl")
    assert vol["ephemeral"] == "True" and vol["save_on_stop"] == "False"
    kern = storage.info("work", "kernel", template="tpl")
    assert kern["rw"] == "False" and kern["size"] == "0" and kern["pool"] == "linux-kernel"


def test_private_is_sparse(storage):
    make_template(storage)
    make_app(storage)
    img = storage.qdir("work") / "private.img"
    assert img.stat().st_size == 2 * GiB
    assert disk_usage(img) < 80 * MiB  # ext4 metadata only
    assert int(storage.info("work", "private", template="tpl")["usage"]) == disk_usage(img)


def test_layout_per_class(storage):
    storage.run("ensure-host")
    make_app(storage, template="host")
    q = str(storage.qubes)
    app = storage.layout("work", template="host")
    assert app == {
        "root_lower": f"{q}/host/root", "root_rw": "", "root_throwaway": "True",
        "private_img": f"{q}/work/private.img", "private_dir": f"{q}/work/private-mnt",
        "volatile_bytes": str(GiB), "host_usr": "/usr",
    }
    tpl = storage.layout("host", **{"class": "TemplateVM"})
    assert tpl["root_rw"] == f"{q}/host/root" and tpl["root_lower"] == "" and tpl["root_throwaway"] == "False"
    assert tpl["host_usr"] == "/usr"
    make_template(storage)  # an empty template: not host-usr based
    make_app(storage, "other")
    assert storage.layout("other", template="tpl")["host_usr"] == ""
    # A standalone made from the host template owns a copy of its root, still host-usr based.
    storage.run("create", "alone", template="host", **{"class": "StandaloneVM"})
    alone = storage.layout("alone", **{"class": "StandaloneVM"})
    assert alone["root_rw"] == f"{q}/alone/root" and alone["host_usr"] == "/usr"
    assert (storage.qdir("alone") / "root/etc/passwd").read_text() == (storage.qdir("host") / "root/etc/passwd").read_text()


def test_template_changes_seen_and_outdated(storage):
    make_template(storage)
    make_app(storage)
    lay = storage.layout("work", template="tpl")
    # The template qube installs something into its root while the app qube runs.
    storage.layout("tpl", **{"class": "TemplateVM"})
    (storage.qdir("tpl") / "root/installed").write_text("new package\n")
    storage.run("stopped", "tpl", **{"class": "TemplateVM"})
    assert storage.info("work", "root", template="tpl")["is_outdated"] == "True"
    storage.run("stopped", "work", template="tpl")
    # At its next start the app qube sees the template's change through its lower root.
    lay = storage.layout("work", template="tpl")
    assert (open(os.path.join(lay["root_lower"], "installed")).read()) == "new package\n"
    assert storage.info("work", "root", template="tpl")["is_outdated"] == "False"
    storage.run("stopped", "work", template="tpl")


@pytest.fixture
def small_fs_storage(build_dir, tmp_path):
    """A pool on its own 256 MiB filesystem (tmpfs), so that the host side's free space
    is measured exactly, without other processes' writes."""
    from storage_fixtures import Storage
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256M,mode=0700", "bh-storage-test", str(mnt)], check=True)
    try:
        yield Storage(build_dir, mnt)
    finally:
        import mount_cleanup
        mount_cleanup.unmount_below(mnt)  # template roots mounted in the pool
        subprocess.run(["umount", str(mnt)], check=True)


def test_size_limit_holds(small_fs_storage):
    """Filling a private volume stops at its size; the host loses at most that much."""
    s = small_fs_storage
    make_template(s)
    make_app(s, private_size="64M")
    img = s.qdir("work") / "private.img"
    before = os.statvfs(s.root)
    with loop_mounted(img) as mnt:
        r = subprocess.run(["dd", "if=/dev/zero", f"of={mnt}/fill", "bs=1M", "count=1024"],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "No space left" in r.stderr
        written = os.stat(mnt / "fill").st_size
        subprocess.run(["sync", "-f", str(mnt / "fill")], check=True)
    after = os.statvfs(s.root)
    assert 32 * MiB < written < 64 * MiB
    assert img.stat().st_size == 64 * MiB
    assert disk_usage(img) <= 64 * MiB
    lost = (before.f_bfree - after.f_bfree) * after.f_frsize
    assert 32 * MiB < lost <= 64 * MiB
    assert after.f_bfree * after.f_frsize > 150 * MiB  # the host filesystem is far from full


def write_marker(img, text):
    with loop_mounted(img) as mnt:
        (mnt / "marker").write_text(text)


def read_marker(img):
    with loop_mounted(img) as mnt:
        return (mnt / "marker").read_text()


def test_revisions_keep_newest_and_revert(storage):
    make_template(storage)
    opts = dict(template="tpl", revisions=2)
    make_app(storage, private_size="32M", revisions=2)
    img = storage.qdir("work") / "private.img"
    for v in ("v1", "v2", "v3"):
        write_marker(img, v)
        storage.run("prepare", "work", **opts)  # a revision: the volume before this session
        storage.run("stopped", "work", **opts)
    revs = storage.run("snapshots", "work", "private", **opts).stdout.split()
    assert len(revs) == 2 and revs == sorted(revs, key=int) and all(r.isdigit() for r in revs)
    write_marker(img, "v4")
    storage.run("revert", "work", "private", revs[0], **opts)
    assert read_marker(img) == "v2"
    storage.run("revert", "work", "private", **opts)  # no name: the newest
    assert read_marker(img) == "v3"
    assert storage.run("revert", "work", "private", "1", check=False, **opts).returncode != 0
    # revisions_to_keep lowered to 0: the next stop drops them all.
    storage.run("stopped", "work", template="tpl", revisions=0)
    assert storage.run("snapshots", "work", "private", **opts).stdout == ""


def test_template_root_revert(storage):
    make_template(storage, revisions=1)
    opts = {"class": "TemplateVM", "revisions": 1}
    (storage.qdir("tpl") / "root/etc").mkdir()
    (storage.qdir("tpl") / "root/etc/good").write_text("good")
    storage.run("prepare", "tpl", **opts)  # the session starts: revision of "good"
    (storage.qdir("tpl") / "root/etc/good").write_text("broken by an upgrade")
    (storage.qdir("tpl") / "root/junk").write_text("junk")
    storage.run("revert", "tpl", "root", **opts)
    assert (storage.qdir("tpl") / "root/etc/good").read_text() == "good"
    assert not (storage.qdir("tpl") / "root/junk").exists()
    assert storage.leftovers() == []


def test_resize_grows_refuses_shrink_and_in_use(storage):
    make_template(storage)
    make_app(storage, private_size="32M")
    img = storage.qdir("work") / "private.img"
    write_marker(img, "kept")
    storage.run("resize", "work", "private", "128M", template="tpl")
    assert img.stat().st_size == 128 * MiB
    with loop_mounted(img) as mnt:
        st = os.statvfs(mnt)
        assert st.f_blocks * st.f_frsize > 100 * MiB
        assert (mnt / "marker").read_text() == "kept"
    r = storage.run("resize", "work", "private", "64M", template="tpl", check=False)
    assert r.returncode != 0 and "shrinking" in r.stderr
    # While the engine has it mounted (loop device at private-mnt) it grows online where
    # the kernel lets us (CAP_SYS_RESOURCE), else when the qube stops; the volume reports
    # its new size at once either way. Revert waits for a halt.
    with loop_mounted(img, storage.qdir("work") / "private-mnt") as mnt:
        storage.run("resize", "work", "private", "256M", template="tpl")
        assert storage.info("work", "private", template="tpl")["size"] == str(256 * MiB)
        online = os.statvfs(mnt).f_blocks * os.statvfs(mnt).f_frsize > 230 * MiB
        assert (mnt / "marker").read_text() == "kept"
        r = storage.run("resize", "work", "private", "200M", template="tpl", check=False)
        assert r.returncode != 0 and "shrinking" in r.stderr
        r = storage.run("revert", "work", "private", template="tpl", check=False)
        assert r.returncode != 0
    storage.run("stopped", "work", template="tpl")  # completes a pending resize
    assert not (storage.qdir("work") / "private.resize").exists(), f"online={online}"
    assert img.stat().st_size == 256 * MiB
    assert subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True).returncode == 0
    with loop_mounted(img) as mnt:
        assert os.statvfs(mnt).f_blocks * os.statvfs(mnt).f_frsize > 230 * MiB
        assert (mnt / "marker").read_text() == "kept"
    # An app qube's root is its template's: not resizable; a template's root grows.
    assert storage.run("resize", "work", "root", "20G", template="tpl", check=False).returncode != 0
    storage.run("resize", "tpl", "root", "20G", **{"class": "TemplateVM"})
    assert storage.info("work", "root", template="tpl")["size"] == str(20 * GiB)


def test_clone_is_sparse_and_independent(storage):
    make_template(storage)
    make_app(storage, private_size="64M")
    src = storage.qdir("work") / "private.img"
    write_marker(src, "original")
    storage.run("clone", "work", "copy", template="tpl")
    dst = storage.qdir("copy") / "private.img"
    assert dst.stat().st_size == src.stat().st_size
    assert disk_usage(dst) <= disk_usage(src) + MiB
    write_marker(dst, "changed")
    assert read_marker(src) == "original"
    assert storage.run("clone", "work", "copy", template="tpl", check=False).returncode != 0
    # App qube cloned to a standalone: gets its own root copied from the template.
    (storage.qdir("tpl") / "root/etc").mkdir()
    storage.run("clone", "work", "alone", template="tpl", **{"class": "StandaloneVM"})
    assert (storage.qdir("alone") / "root/etc").is_dir()


def test_disposable_private_is_fresh_copy(storage):
    make_template(storage)
    make_app(storage, "dvm", private_size="32M")
    write_marker(storage.qdir("dvm") / "private.img", "from dvm template")
    opts = {"class": "DispVM", "template": "tpl", "dispvm_template": "dvm"}
    storage.run("create", "disp1", **opts)
    assert not (storage.qdir("disp1") / "private.img").exists()
    info = storage.info("disp1", "private", **opts)
    assert info["source"] == "qubes/dvm/private" and info["snap_on_start"] == "True" and info["save_on_stop"] == "False"
    lay = storage.layout("disp1", **opts)
    assert lay["root_lower"].endswith("/qubes/tpl/root") and lay["root_throwaway"] == "True"
    img = storage.qdir("disp1") / "private.img"
    assert read_marker(img) == "from dvm template"
    write_marker(img, "disposable's secret")
    storage.run("stopped", "disp1", **opts)
    assert not img.exists()  # destroyed after use
    storage.layout("disp1", **opts)
    assert read_marker(img) == "from dvm template"
    storage.run("stopped", "disp1", **opts)
    storage.run("remove", "disp1", **opts)
    assert not storage.qdir("disp1").exists()


def test_remove(storage):
    make_template(storage)
    make_app(storage)
    storage.run("remove", "work")
    assert not storage.qdir("work").exists()
    assert storage.leftovers() == []
    storage.run("remove", "work")  # idempotent
    # A volume in use is not removed.
    make_app(storage, "busy", private_size="16M")
    with loop_mounted(storage.qdir("busy") / "private.img", storage.qdir("busy") / "private-mnt"):
        assert storage.run("remove", "busy", check=False).returncode != 0
    assert storage.qdir("busy").exists()


def test_disposable_from_running_dvm_template_uses_revision(storage):
    """A running disposable template's private is being written: a disposable started
    then gets its newest revision (a consistent state), or an error if it has none."""
    make_template(storage)
    make_app(storage, "dvm", private_size="32M", revisions=1)
    dvm_img = storage.qdir("dvm") / "private.img"
    opts = {"class": "DispVM", "template": "tpl", "dispvm_template": "dvm"}
    storage.run("create", "disp1", **opts)
    with loop_mounted(dvm_img, storage.qdir("dvm") / "private-mnt") as mnt:
        r = storage.run("prepare", "disp1", check=False, **opts)
        assert r.returncode != 0 and "no revision" in r.stderr
    write_marker(dvm_img, "saved at shutdown")
    storage.run("prepare", "dvm", template="tpl", revisions=1)  # its session starts: a revision
    with loop_mounted(dvm_img) as mnt:  # as the engine mounts it: loop device, not in the pool
        (mnt / "marker").write_text("being written")
        storage.layout("disp1", **opts)
    assert read_marker(storage.qdir("disp1") / "private.img") == "saved at shutdown"
    storage.run("stopped", "disp1", **opts)


def test_in_use_through_loop_device_as_the_engine_mounts(storage):
    """The ns engine mounts a private image through a loop device and a detached mount,
    nowhere on the host's tree. Storage sees it in use by the loop device's backing
    inode: no remove, no revert, no revision copied from the live image; a resize waits
    for the stop."""
    make_template(storage)
    make_app(storage, private_size="32M", revisions=1)
    opts = {"template": "tpl", "revisions": 1}
    img = storage.qdir("work") / "private.img"
    write_marker(img, "saved")
    storage.layout("work", **opts)  # a start: the revision of "saved" is taken here
    storage.run("stopped", "work", **opts)
    revs = storage.run("snapshots", "work", "private", **opts).stdout.split()
    assert len(revs) == 1, revs
    with loop_mounted(img) as mnt:  # mounted outside the pool, as the engine's
        (mnt / "marker").write_text("live")
        assert storage.run("remove", "work", check=False).returncode != 0
        r = storage.run("revert", "work", "private", check=False, **opts)
        assert r.returncode != 0 and "halted" in r.stderr
        storage.run("resize", "work", "private", "64M", **opts)
        assert storage.info("work", "private", **opts)["size"] == str(64 * MiB)
        # daemon confused: it "starts" the qube that still runs, then "stops" it; the
        # live image is copied into no revision at either step
        storage.layout("work", **opts)
        r = storage.run("stopped", "work", **opts)
        assert "no revision taken" in r.stderr
        assert storage.run("snapshots", "work", "private", **opts).stdout.split() == revs
    storage.run("stopped", "work", **opts)
    assert img.stat().st_size == 64 * MiB and read_marker(img) == "live"
    assert subprocess.run(["e2fsck", "-fn", str(img)], capture_output=True).returncode == 0
