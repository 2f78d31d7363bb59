"""qvm-volume against a real bulkheadd: argument handling, info, resize, config, and a
revert checked by the data in the volume."""
import re

from tools_fixtures import qd, qube_file, require_qubes_start, usage_error  # noqa: F401


def needs_volumes(qd):
    assert qd.has_method("admin.vm.volume.List", "work"), "bulkheadd lost its admin.vm.volume.* methods"


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


def test_config_resize_revert(qd):
    needs_volumes(qd)
    info = lambda prop: qd.run("qvm-volume", "info", "vault:private", prop).out.strip()  # noqa: E731
    size = int(info("size"))
    assert qd.run("qvm-volume", "resize", "vault:private", str(size + (1 << 20))).rc == 0
    assert int(info("size")) == size + (1 << 20)
    assert qd.run("qvm-volume", "config", "vault:private", "revisions_to_keep", "2").rc == 0
    assert info("revisions_to_keep") == "2"
    r = qd.run("qvm-volume", "config", "vault:private", "pool", "x")
    assert r.rc == 1 and r.err == "Error: Invalid property: pool\n"
    assert qd.run("qvm-volume", "info", "vault:private", "revisions").out.strip() == ""
    r = qd.run("qvm-volume", "revert", "vault:private")
    assert r.rc == 1 and r.err == "Error: No snapshots available\n"
    # A start keeps a revision of the private volume as it was before that session
    # (save_on_stop); revert brings that data back.
    require_qubes_start()
    assert qd.run("qvm-start", "vault").rc == 0
    qube_file(qd, "vault", "/home/user/marker", write="session-1")
    assert qd.run("qvm-shutdown", "--wait", "--timeout", "30", "vault").rc == 0
    assert qd.run("qvm-start", "vault").rc == 0  # the revision of "session-1" is taken here
    assert qube_file(qd, "vault", "/home/user/marker") == "session-1"
    qube_file(qd, "vault", "/home/user/marker", write="session-2")
    assert qd.run("qvm-shutdown", "--wait", "--timeout", "30", "vault").rc == 0
    revs = qd.run("qvm-volume", "info", "vault:private", "revisions").out.split()
    assert len(revs) == 2, revs
    r = qd.run("qvm-volume", "info", "vault:private")
    assert "List of available revisions (for revert):\n  " + revs[0] in r.out
    listed = qd.run("qvm-volume", "list", "vault").out
    assert any(l.split()[-1] == "Yes" for l in listed.splitlines()[1:] if " private " in l)
    r = qd.run("qvm-volume", "revert", "vault:private")
    assert r.rc == 0, r
    assert qd.run("qvm-start", "vault").rc == 0
    assert qube_file(qd, "vault", "/home/user/marker") == "session-1"
    assert qd.run("qvm-shutdown", "--wait", "--timeout", "30", "vault").rc == 0
