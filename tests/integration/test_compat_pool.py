"""Storage pools as Qubes' Admin API and qvm-pool handle them (qubes/api/admin.py
pool_add/pool_remove/pool_listdrivers, qubes/app.py add_pool/remove_pool,
qubesadmin/app.py add_pool, qubesadmin/tools/qvm_pool.py): Qubes' directory drivers
`file` and `file-reflink`, the payload qubesadmin sends, Qubes' checks in Qubes' order
with Qubes' exception classes and messages, events, persistence, and a refused removal
of the pool that holds the qubes' volumes."""
import os
import subprocess

import pytest

from admin_fixtures import AdminError, daemon  # noqa: F401
from event_fixtures import drain, records, subscribe

NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."


def exc(d, method, payload=b""):
    with pytest.raises(AdminError) as e:
        d.call(method, payload=payload)
    return (e.value.exc_type, e.value.msg)


def test_drivers_add_list_info_remove(daemon, tmp_path):
    d = daemon
    assert d.raw(b"admin.pool.ListDrivers+ dom0 name dom0\0") == (
        b"0\0file revisions_to_keep dir_path ephemeral_volatile\n"
        b"file-reflink revisions_to_keep dir_path setup_check ephemeral_volatile\n")
    r = d.tool("qvm-pool", "drivers")
    assert r.stdout == ("DRIVER        OPTIONS\nfile          revisions_to_keep, dir_path, ephemeral_volatile\n"
                        "file-reflink  revisions_to_keep, dir_path, setup_check, ephemeral_volatile\n"), r
    ev = subscribe(d)
    pdir = tmp_path / "extra" / "p1"
    # qvm-pool add p1 file -o ...: qubesadmin's payload, name first, options sorted
    r = d.tool("qvm-pool", "add", "p1", "file", "-o", f"dir_path={pdir}", "-o", "revisions_to_keep=2")
    assert (r.returncode, r.stderr) == (0, ""), r
    assert pdir.is_dir() and (pdir / "qubes").is_dir()
    assert records(drain(ev, b"pool-add"), prefix=b"pool-") == [(b"", b"pool-add", [b"pool", b"p1"])]
    assert d.call("admin.pool.List") == "default\np1\n"
    info = d.call("admin.pool.Info+p1").splitlines()
    assert info[:5] == [f"dir_path={pdir}", "driver=file", "ephemeral_volatile=True", "name=p1",
                        "revisions_to_keep=2"], info
    assert info[5].startswith("size=") and info[6].startswith("usage=") and len(info) == 7
    assert d.call("admin.pool.UsageDetails+p1").startswith("data_size=")
    assert d.call("admin.pool.volume.List+p1") == ""
    assert "qubes/work/private\n" in d.call("admin.pool.volume.List+default")
    # a qube's volumes go to default only: a create in p1 says so, and nothing is made
    assert exc(d, "admin.vm.CreateInPool.AppVM+host", "name=inp1 label=red pool=p1") == (
        "QubesException", "Pool p1 holds no qube's volumes: Bulkhead makes volumes in pool default only")
    assert "inp1" not in d.call("admin.vm.List")
    d.call("admin.pool.Set.revisions_to_keep+p1", payload="0")
    assert "revisions_to_keep=0\n" in d.call("admin.pool.Info+p1")
    r = d.tool("qvm-pool")
    assert r.stdout.splitlines()[:3] == ["NAME     DRIVER", "default  file", "p1       file"], r
    r = d.tool("qvm-pool", "info", "p1")
    assert r.stdout.splitlines()[:3] == [f"name                p1", f"dir_path            {pdir}", "driver              file"], r
    # kept across a daemon restart
    d.stop()
    d.start()
    assert d.call("admin.pool.List") == "default\np1\n"
    assert "revisions_to_keep=0\n" in d.call("admin.pool.Info+p1")
    # the pool that holds the qubes' volumes stays; an unused one goes, its directory stays
    ev = subscribe(d)
    assert exc(d, "admin.pool.Remove+default") == ("QubesPoolInUseError", "Storage pool is in use: 'default'")
    r = d.tool("qvm-pool", "remove", "default")
    assert (r.returncode, r.stderr) == (
        1, "qvm-pool: error: Failed to remove pool default: Storage pool is in use: 'default'\n\n")
    r = d.tool("qvm-pool", "rm", "p1")
    assert (r.returncode, r.stderr) == (0, ""), r
    assert records(drain(ev, b"pool-delete"), prefix=b"pool-") == [
        (b"", b"pool-pre-delete", [b"pool", b"p1"]), (b"", b"pool-delete", [b"pool", b"p1"])]
    assert d.call("admin.pool.List") == "default\n" and pdir.is_dir()
    assert exc(d, "admin.pool.Remove+p1") == ("PermissionDenied", "Argument not in 'pools'")
    assert exc(d, "admin.pool.Info+p1") == ("PermissionDenied", "Argument not in 'pools'")
    d.stop()
    d.start()
    assert d.call("admin.pool.List") == "default\n"


def test_add_refusals_in_qubes_order(daemon, tmp_path):
    d = daemon
    good = f"name=q\ndir_path={tmp_path}/q\n"
    cases = [
        ("admin.pool.Add+lvm_thin", good, ("PermissionDenied", "Argument not in 'available drivers'")),
        ("admin.pool.Add+file", "name=q\ndir_path=/tmp/\xe9\n".encode("latin-1"),
         ("ProtocolError", "Pool parameters contains non-ASCII characters")),
        ("admin.pool.Add+file", "name=q\nnoequal\n", ("ProtocolError", "Options must be separated by equal sign")),
        ("admin.pool.Add+file", "name=q\n\n", ("ProtocolError", "Options must be separated by equal sign")),
        ("admin.pool.Add+file", "name=q\nname=r\n", ("ProtocolError", "Options must be unique")),
        ("admin.pool.Add+file", f"dir_path={tmp_path}/q\n", ("ProtocolError", "Pool configuration must contain key: name")),
        ("admin.pool.Add+file", "", ("ProtocolError", "Pool configuration must contain key: name")),
        ("admin.pool.Add+file", f"name=a/b\ndir_path={tmp_path}/q\n",
         ("ProtocolError", "Pool name must be in safe set: " + NAME_CHARS)),
        ("admin.pool.Add+file", f"name=q\ndir_path={tmp_path}/q\nbogus=1\n", ("ProtocolError", "Unexpected driver options found")),
        ("admin.pool.Add+file", f"name=q\nsetup_check=False\n", ("ProtocolError", "Unexpected driver options found")),
        ("admin.pool.Add+file", "name=q\nrevisions_to_keep=1\n", ("QubesException", "missing required driver options: dir_path")),
        ("admin.pool.Add+file", f"name=default\ndir_path={tmp_path}/q\n", ("QubesPoolInUseError", "Storage pool is in use: 'default'")),
        # ours: dir_path must be a plain absolute path away from Bulkhead's state and the system
        ("admin.pool.Add+file", "name=q\ndir_path=relative/q\n", None),
        ("admin.pool.Add+file", f"name=q\ndir_path={tmp_path}/../q\n", None),
        ("admin.pool.Add+file", "name=q\ndir_path=/proc/q\n", None),
        ("admin.pool.Add+file", f"name=q\ndir_path={d.root}/pools/x\n", None),
        ("admin.pool.Add+file", f"name=q\ndir_path={d.root.parent}\n", None),
        ("admin.pool.Add+file", f"name=q\ndir_path={tmp_path}/q\nrevisions_to_keep=-2\n", None),
        ("admin.pool.Add+file", f"name=q\ndir_path={tmp_path}/q\nephemeral_volatile=maybe\n", None),
        # bounds: a payload over 4 KiB, a value over 1 KiB, more than 16 options
        ("admin.pool.Add+file", "name=q\ndir_path=/" + "a" * 5000 + "\n", ("ProtocolError", "Pool parameters too long")),
        ("admin.pool.Add+file", "name=q\ndir_path=/" + "a" * 1100 + "\n", ("ProtocolError", "Pool parameter too long")),
        ("admin.pool.Add+file", "name=q\n" + "".join(f"k{i}=v\n" for i in range(20)), ("ProtocolError", "Too many pool parameters")),
    ]
    for method, payload, want in cases:
        got = exc(d, method, payload)
        if want is None:
            assert got[0] == "QubesValueError", (payload, got)
        else:
            assert got == want, (payload, got)
    assert d.call("admin.pool.List") == "default\n"
    assert not (tmp_path / "q").exists()
    # control: the same payload that the refusals varied is accepted; a second one is in use
    d.call("admin.pool.Add+file", payload=good)
    assert exc(d, "admin.pool.Add+file", good) == ("QubesPoolInUseError", "Storage pool is in use: 'q'")
    assert exc(d, "admin.pool.Add+file", f"name=q2\ndir_path={tmp_path}/q/sub\n")[0] == "QubesValueError"  # nested
    r = d.tool("qvm-pool", "add", "q", "file", "-o", f"dir_path={tmp_path}/q")
    assert (r.returncode, r.stderr) == (1, "qvm-pool: error: Failed to add pool q: Storage pool is in use: 'q'\n\n")
    # str.splitlines() separators: \r\n and \r end lines as \n does
    d.call("admin.pool.Add+file", payload=f"name=r\r\ndir_path={tmp_path}/r\r")
    assert d.call("admin.pool.List") == "default\nq\nr\n"


def test_file_reflink_setup_check(daemon, tmp_path):
    """file-reflink's setup: a filesystem without reflinks (tmpfs) is refused with Qubes'
    StoragePoolException, and what the setup made is gone again; setup_check=False
    takes it."""
    d = daemon
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "none", str(mnt)], check=True)
    try:
        pdir = mnt / "pool"
        got = exc(d, "admin.pool.Add+file-reflink", f"name=rf\ndir_path={pdir}\n")
        assert got == ("StoragePoolException",
                       f"The filesystem for '{pdir}' does not support reflinks. If you can live with delays on VM "
                       "startup/shutdown/etc. and wasted disk space, pass the 'setup_check=False' option."), got
        assert not pdir.exists()
        d.call("admin.pool.Add+file-reflink", payload=f"name=rf\ndir_path={pdir}\nsetup_check=False\n")
        assert "driver=file-reflink\n" in d.call("admin.pool.Info+rf")
        d.call("admin.pool.Remove+rf")
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_pool_set(daemon):
    d = daemon
    d.call("admin.pool.Set.revisions_to_keep+default", payload="3")
    assert "revisions_to_keep=3\n" in d.call("admin.pool.Info+default")
    assert "revisions_to_keep=3\n" in d.call("admin.vm.volume.Info+private", "work")
    for bad in ("-2", "x", ""):                       # Qubes: validate_number, then enforce()
        assert exc(d, "admin.pool.Set.revisions_to_keep+default", bad)[0] == "ProtocolError", bad
    assert exc(d, "admin.pool.Set.revisions_to_keep+nosuch", "1") == ("PermissionDenied", "Argument not in 'pools'")
    d.call("admin.pool.Set.revisions_to_keep+default", payload="-1")
    assert "revisions_to_keep=-1\n" in d.call("admin.pool.Info+default")
    d.call("admin.pool.Set.ephemeral_volatile+default", payload="True")
    assert exc(d, "admin.pool.Set.ephemeral_volatile+default", "False") == (
        "QubesException", "Bulkhead's volatile volumes are always ephemeral (tmpfs)")
    assert exc(d, "admin.pool.Set.ephemeral_volatile+default", "maybe")[0] == "ProtocolError"
    r = d.tool("qvm-pool", "set", "default", "-o", "revisions_to_keep=2", "-o", "dir_path=/x")
    assert (r.returncode, r.stderr) == (1, "qvm-pool: error: Setting option dir_path is not supported for pool default\n\n")
    assert "revisions_to_keep=2\n" in d.call("admin.pool.Info+default")
