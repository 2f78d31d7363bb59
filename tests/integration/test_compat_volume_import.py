"""Qubes' volume import flow (admin.vm.volume.Import/ImportWithSize as its dom0 script
runs it: internal.vm.volume.ImportBegin -> data -> internal.vm.volume.ImportEnd),
admin.vm.volume.Clear, driven through `qvm-volume import` and raw
calls against a real bulkheadd, with a real qube reading the imported volume."""
import filecmp
import os
import signal
import subprocess
import time

import pytest

from admin_fixtures import BUILD, AdminError, engine_daemon  # noqa: F401
from event_fixtures import drain, subscribe
from qrexec_fixtures import bin_path


def make_ext4(path, size_mib, files):
    """An ext4 image populated from a directory (mkfs.ext4 -d), root-owned files."""
    src = path.with_suffix(".d")
    for name, data in files.items():
        (src / os.path.dirname(name)).mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "root_owner=0:0", "-d", str(src), str(path), f"{size_mib}M"],
                   check=True, capture_output=True)
    return path


def private_img(d, qube):
    return d.root / "pools/default/qubes" / qube / "private.img"


def ident(path):
    """The volume file's identity: an import or clear renames a new file over it, and
    nothing else writes it while the qube is halted (its 2 GiB are not read here)."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)


def qrun(d, qube, cmd, input=None):
    return subprocess.run([bin_path("qvm-run"), "-p", "-u", "root", qube, cmd], env=d.env, capture_output=True,
                          timeout=60, input=input)


def test_import_private_and_read_it_in_the_qube(engine_daemon, tmp_path):
    d = engine_daemon
    img = make_ext4(tmp_path / "new.img", 40, {"marker": b"imported-data\n"})
    ev = subscribe(d)
    r = d.tool("qvm-volume", "import", "a:private", str(img))
    assert (r.returncode, r.stderr) == (0, ""), r.stderr
    buf = drain(ev, b"domain-volume-import-end")
    size = os.path.getsize(img)
    assert f"1\0a\0domain-volume-import-begin\0volume\0private\0size\0{size}\0\0".encode() in buf
    assert b"1\0a\0domain-volume-import-end\0volume\0private\0success\0True\0\0" in buf
    assert filecmp.cmp(img, private_img(d, "a"), shallow=False)           # the bytes, and the new size
    assert d.call("admin.vm.volume.Info+private", "a").count(f"size={size}\n") == 1
    assert not [n for n in os.listdir(private_img(d, "a").parent) if n.startswith(".tmp-")]
    d.call("admin.vm.Start", "a")
    r = qrun(d, "a", "cat /rw/marker")
    assert (r.returncode, r.stdout) == (0, b"imported-data\n"), r.stderr
    # while running: Qubes' error, nothing changes
    with pytest.raises(AdminError) as e:
        d.call("internal.vm.volume.ImportBegin+private", "a")
    assert (e.value.exc_type, e.value.msg) == ("QubesVMNotHaltedError", "Domain is powered on: a")
    r = d.tool("qvm-volume", "import", "a:private", str(img))
    assert r.returncode == 1 and "Domain is powered on: a" in r.stderr


def test_import_refusals_leave_the_volume_alone(engine_daemon, tmp_path):
    d = engine_daemon
    before = ident(private_img(d, "b"))
    junk = tmp_path / "junk.img"
    junk.write_bytes(os.urandom(1 << 20) * 16)                             # 16 MiB, no filesystem
    r = d.tool("qvm-volume", "import", "b:private", str(junk))
    assert r.returncode == 1 and "the imported data is not an ext4 filesystem" in r.stderr, r.stderr
    good = make_ext4(tmp_path / "good.img", 16, {"x": b"x"})
    r = d.tool("qvm-volume", "import", "--size", str(32 << 20), "b:private", str(good))
    assert r.returncode == 1
    assert r.stderr.endswith(f"Data import failed: not enough data (copied {16 << 20} bytes, "
                             f"expected {32 << 20} bytes)\n"), r.stderr
    r = d.tool("qvm-volume", "import", "--size", str(12 << 20), "b:private", str(good))
    assert r.returncode == 1 and r.stderr.endswith(f"Data import failed: too much data (expected {12 << 20} bytes)\n")
    # a damaged filesystem (superblock right, the rest gone) fails e2fsck
    broken = tmp_path / "broken.img"
    data = bytearray(good.read_bytes())
    data[4096:1 << 20] = b"\xa5" * ((1 << 20) - 4096)
    broken.write_bytes(bytes(data))
    r = d.tool("qvm-volume", "import", "b:private", str(broken))
    assert r.returncode == 1 and "is not clean" in r.stderr, r.stderr
    assert ident(private_img(d, "b")) == before
    assert not [n for n in os.listdir(private_img(d, "b").parent) if n.startswith(".tmp-")]
    # volumes that cannot take data, as Qubes words it where it has words
    with pytest.raises(AdminError) as e:
        d.call("internal.vm.volume.ImportBegin+root", "b")
    assert e.value.msg == "Can not import into save_on_stop=False volume b:root"
    with pytest.raises(AdminError) as e:
        d.call("internal.vm.volume.ImportBegin+root", "host")
    assert "directory tree" in e.value.msg
    with pytest.raises(AdminError) as e:
        d.call("internal.vm.volume.ImportBegin+bogus", "b")
    assert (e.value.exc_type, e.value.msg) == ("ProtocolError", "Argument not in volume names of the destination")
    for bad in ("12x", "-5", "", "0", "9999999999999999999"):
        if bad == "":
            continue
        with pytest.raises(AdminError) as e:
            d.call("internal.vm.volume.ImportBegin+private", "b", payload=bad)
        assert e.value.exc_type in ("ProtocolError", "QubesValueError"), bad
    with pytest.raises(AdminError) as e:
        d.call("internal.vm.volume.ImportEnd+private", "b", payload="ok")
    assert "No import in progress" in e.value.msg
    # a failed import reported by the writer: Qubes' message, the file gone
    d.call("internal.vm.volume.ImportBegin+private", "b", payload=str(16 << 20))
    with pytest.raises(AdminError) as e:
        d.call("internal.vm.volume.ImportEnd+private", "b", payload="fail\nerror copying data")
    assert (e.value.exc_type, e.value.msg) == ("QubesException", "Data import failed: error copying data")
    assert ident(private_img(d, "b")) == before
    # a qube's call of internal.* is refused whatever it is
    out = d.raw(b"internal.vm.volume.ImportBegin+private a name b\0")
    assert out.startswith(b"2\0PermissionDenied\0")


def test_import_interrupted_by_a_daemon_crash(engine_daemon, tmp_path):
    d = engine_daemon
    before = ident(private_img(d, "b"))
    body = d.call("internal.vm.volume.ImportBegin+private", "b", payload=str(16 << 20))
    size, path = body.split(" ", 1)
    assert size == str(16 << 20) and os.path.getsize(path) == 16 << 20
    d.proc.send_signal(signal.SIGKILL)
    d.proc.wait()
    d.proc = None
    d.start()
    assert not os.path.exists(path)                                        # swept at the next start
    assert ident(private_img(d, "b")) == before


def test_clear(engine_daemon, tmp_path):
    d = engine_daemon
    d.call("admin.vm.Start", "a")
    assert qrun(d, "a", "echo kept > /rw/marker && sync").returncode == 0
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.volume.Clear+private", "a")
    assert e.value.exc_type == "QubesVMNotHaltedError"
    d.call("admin.vm.Kill", "a")
    deadline = time.time() + 30
    while "power_state=Halted" not in d.call("admin.vm.CurrentState", "a") and time.time() < deadline:
        time.sleep(0.1)
    size = os.path.getsize(private_img(d, "a"))
    ev = subscribe(d)
    d.call("admin.vm.volume.Clear+private", "a")
    buf = drain(ev, b"domain-volume-import-end")
    assert (f"1\0a\0domain-volume-import-begin\0volume\0private\0size\0{size}\0\0"
            "1\0a\0domain-volume-import-end\0volume\0private\0success\0True\0\0").encode() in buf
    assert os.path.getsize(private_img(d, "a")) == size
    d.call("admin.vm.Start", "a")
    r = qrun(d, "a", "test -e /rw/marker")
    assert r.returncode == 1                                              # empty again
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.volume.Clear+volatile", "b")
    assert e.value.msg == "Can not import into save_on_stop=False volume b:volatile"


CVM = "/usr/lib/bulkhead/qrexec-client-vm"


def test_import_from_a_qube_over_qrexec(engine_daemon, tmp_path):
    """Qubes' /etc/qubes-rpc/admin.vm.volume.Import[WithSize] as dom0 runs it for a
    managing qube (qubesadmin's Volume.import_data[_with_size] calls it on the target):
    allowed by the qrexec policy, the data does not pass through bulkheadd, exactly the
    announced size is taken (Qubes' 'not enough data' / 'too much data' refusals leave
    the volume alone), and the qube then reads the imported file."""
    d = engine_daemon
    img = make_ext4(tmp_path / "new.img", 16, {"marker": b"imported-over-qrexec\n"})
    size = os.path.getsize(img)
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-import.policy").write_text("admin.vm.volume.ImportWithSize  +private  b  a  allow  target=dom0\n")
    r = qrun(d, "b", "cat > /tmp/img", input=img.read_bytes())
    assert r.returncode == 0, r.stderr
    before = ident(private_img(d, "a"))

    def imp(cmd):
        return qrun(d, "b", cmd)
    # hostile sizes: short of data, too much data, a size line over Qubes' 21 bytes
    for cmd, why in ((f"(echo {size + 4096}; cat /tmp/img) | {CVM} a admin.vm.volume.ImportWithSize+private",
                      f"not enough data (copied {size} bytes, expected {size + 4096} bytes)"),
                     (f"(echo {size - 4096}; cat /tmp/img) | {CVM} a admin.vm.volume.ImportWithSize+private",
                      f"too much data (expected {size - 4096} bytes)")):
        r = imp(cmd)
        assert r.stdout == b"2\0QubesException\0\0Data import failed: " + why.encode() + b"\0", (r.stdout, r.stderr)
        assert ident(private_img(d, "a")) == before
    r = imp(f"(printf '%030d\\n' 1; cat /tmp/img) | {CVM} a admin.vm.volume.ImportWithSize+private")
    assert r.stdout.startswith(b"2\0ProtocolError\0"), r.stdout
    # not allowed by policy: Import without size, and another target
    r = imp(f"{CVM} a admin.vm.volume.Import+private < /tmp/img")
    assert r.returncode != 0 and not r.stdout.startswith(b"0\0"), r
    r = imp(f"(echo {size}; cat /tmp/img) | {CVM} b admin.vm.volume.ImportWithSize+private")
    assert r.returncode != 0 and not r.stdout.startswith(b"0\0"), r
    assert ident(private_img(d, "a")) == before
    # control: the allowed call with the right size imports
    ev = subscribe(d)
    r = imp(f"(echo {size}; cat /tmp/img) | {CVM} a admin.vm.volume.ImportWithSize+private")
    assert r.stdout == b"0\0", (r.stdout, r.stderr)
    buf = drain(ev, b"domain-volume-import-end")
    assert f"1\0a\0domain-volume-import-begin\0volume\0private\0size\0{size}\0\0".encode() in buf
    assert filecmp.cmp(img, private_img(d, "a"), shallow=False)
    d.call("admin.vm.Start", "a")
    r = qrun(d, "a", "cat /rw/marker")
    assert (r.returncode, r.stdout) == (0, b"imported-over-qrexec\n"), r.stderr
    # a running target: qubesd's refusal comes back as is
    r = imp(f"(echo {size}; cat /tmp/img) | {CVM} a admin.vm.volume.ImportWithSize+private")
    assert r.stdout == b"2\0QubesVMNotHaltedError\0\0Domain is powered on: a\0", r.stdout


def test_two_imports_into_one_volume_at_once_keep_their_own_data(engine_daemon, tmp_path):
    """Review finding: two imports into one volume at once shared one temporary file, so
    the second's begin removed the first's file and the first ended with "No import in
    progress" (its data lost). Each import now writes its own file; the one that ends
    last wins, whole."""
    d = engine_daemon
    first = make_ext4(tmp_path / "first.img", 16, {"who": b"first\n"})
    second = make_ext4(tmp_path / "second.img", 16, {"who": b"second\n"})
    ev = subscribe(d)
    slow = subprocess.Popen([str(BUILD / "src/tools/qvm-volume"), "import", "--size", str(first.stat().st_size), "a:private",
                             "-"], env=d.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert b"domain-volume-import-begin" in drain(ev, b"domain-volume-import-begin")  # its file exists
        r = d.tool("qvm-volume", "import", "a:private", str(second))
        assert (r.returncode, r.stderr) == (0, ""), r.stderr
        assert filecmp.cmp(second, private_img(d, "a"), shallow=False)
        out, err = slow.communicate(first.read_bytes(), timeout=60)
    finally:
        if slow.poll() is None:
            slow.kill()
            slow.wait()
    assert (slow.returncode, err) == (0, b""), err
    assert filecmp.cmp(first, private_img(d, "a"), shallow=False)
    assert not [n for n in os.listdir(private_img(d, "a").parent) if n.startswith(".tmp-")]
