"""qvm-volume against a real bulkheadd. The volume calls come with the storage work;
where the daemon does not offer them yet, only the argument handling is checked."""
import re

import pytest

from tools_fixtures import qd, usage_error  # noqa: F401


def needs_volumes(qd):
    if not qd.has_method("admin.vm.volume.List", "work"):
        pytest.skip("this bulkheadd has no admin.vm.volume.* methods yet")


def test_argument_errors(qd):
    r = qd.run("qvm-volume", "info", "nosuch:private")
    assert r.rc == 1 and r.err == "qvm-volume: error: no vm 'nosuch'\n"
    usage_error(qd.run("qvm-volume", "info", "work"), "qvm-volume",
                "expected a vm & volume combination like foo:bar")
    usage_error(qd.run("qvm-volume", "info"), "qvm-volume",
                "the following arguments are required: VM:VOLUME")
    usage_error(qd.run("qvm-volume", "explode"), "qvm-volume",
                "argument command: invalid choice: 'explode' (choose from 'info', 'i', 'config', "
                "'c', 'set', 's', 'resize', 'extend', 'list', 'ls', 'l', 'revert', 'rv', 'r', "
                "'import')")


def test_list_and_info(qd):
    needs_volumes(qd)
    vols = qd.call("admin.vm.volume.List", "work").splitlines()
    assert "private" in vols
    r = qd.run("qvm-volume", "list", "work")
    assert r.rc == 0
    lines = r.out.splitlines()
    assert re.split(r"\s{2,}", lines[0]) == ["POOL:VOLUME", "VMNAME", "VOLUME_NAME", "REVERT_POSSIBLE"]
    assert any(re.split(r"\s{2,}", l)[1:3] == ["work", "private"] for l in lines[1:])
    r = qd.run("qvm-volume", "info", "work:private")
    assert r.rc == 0
    keys = [l.split()[0] for l in r.out.splitlines() if l and not l.startswith(("List", " "))]
    assert keys == ["pool", "vid", "rw", "source", "save_on_stop", "snap_on_start", "size",
                    "usage", "revisions_to_keep", "ephemeral", "is_outdated"]
    assert "List of available revisions (for revert)" in r.out
    size = qd.run("qvm-volume", "info", "work:private", "size")
    info = dict(l.split("=", 1) for l in qd.call("admin.vm.volume.Info", "work", arg="private").splitlines())
    assert size.out == info["size"] + "\n"
    r = qd.run("qvm-volume", "info", "work:nosuchvolume")
    assert r.rc == 1 and r.err == "qvm-volume: error: vm 'work' has no volume 'nosuchvolume'\n"


def test_resize_refuses_shrinking(qd):
    needs_volumes(qd)
    r = qd.run("qvm-volume", "resize", "work:private", "1")
    assert r.rc == 1 and r.err.startswith("Error: For your own safety, shrinking of private is disabled")
    r = qd.run("qvm-volume", "resize", "work:private", "lots")
    assert r.rc == 1 and r.err == "Error: Invalid size: LOTS.\n"
