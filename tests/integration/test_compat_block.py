"""qvm-block with a real ns qube: dom0's free loop devices are exported through
admin.vm.device.block.Available (Qubes' serialisation), `qvm-block attach` gives the
running qube a real block device node (read-write by default as in Qubes, read-only
with --ro / read-only=yes), detach takes it away, a halt detaches, and every step
sends Qubes' device events. Exact bytes where Qubes defines them."""
import os
import subprocess
import sys
import time

import pytest

from admin_fixtures import AdminError, engine_daemon, raw_call, wait_state  # noqa: F401
from event_fixtures import drain, records, subscribe
from qrexec_fixtures import bin_path
sys.path.insert(0, os.path.dirname(__file__))

PATTERN = b"bulkhead-block-test\n"


@pytest.fixture
def loopdev(tmp_path):
    """A loop device (not autoclear, as losetup makes them) over a 4 MiB image that
    starts with PATTERN; detached at the end."""
    img = tmp_path / "disk.img"
    with open(img, "wb") as f:
        f.write(PATTERN)
        f.truncate(4 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True, check=True).stdout.strip()
    yield os.path.basename(dev), img
    subprocess.run(["losetup", "-d", dev], check=False)


def qrun(d, qube, cmd, user="root"):
    return subprocess.run([bin_path("qvm-run"), "-p", "-u", user, qube, cmd], env=d.env,
                          capture_output=True, timeout=60)


def device_events(s, upto):
    """(subject, event, [k, v, ...]) of the device events read until `upto` = (marker,
    times) was seen."""
    return records(drain(s, upto[0], upto[1]), prefix=b"device-")


def test_block_attach_detach(engine_daemon, loopdev):
    d = engine_daemon
    port, img = loopdev
    n = port[4:]
    serial = str(img).replace("_", " ")       # Qubes shows '_' in a description as a space
    avail = d.call("admin.vm.device.block.Available", "dom0")
    line = [x for x in avail.splitlines() if x.startswith(port + ":")]
    assert line == [f"{port}::{n} device_id=':{n}' port_id='{port}' devclass='block' backend_domain='dom0' "
                    f"serial='{serial}' manufacturer='hosted by dom0' interfaces='b******'"]
    assert d.call(f"admin.vm.device.block.Available+{port}", "dom0") == line[0] + "\n"
    assert d.call("admin.vm.device.block.Available", "a") == ""          # only dom0 exports

    # a halted qube: Qubes' error
    with pytest.raises(AdminError) as e:
        d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="mode='manual'")
    assert (e.value.exc_type, e.value.msg) == ("QubesVMNotRunningError",
                                               "VM not running, cannot attach device, do you mean `assign`?")
    d.call("admin.vm.Start", "a")
    ev = subscribe(d)
    r = d.tool("qvm-block", "attach", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    att = d.call("admin.vm.device.block.Attached", "a")
    assert att == (f"dom0+{port}::{n} device_id=':{n}' port_id='{port}' devclass='block' backend_domain='dom0' "
                   "mode='manual' frontend_domain='a' _read-only='no' _frontend-dev='xvdi'\n")
    assert f"attachment='a'" in d.call(f"admin.vm.device.block.Available+{port}", "dom0")
    r = d.tool("qvm-block", "ls")
    assert f"dom0:{port}  Block_Storage: hosted by dom0 {serial}  a\n" in r.stdout

    # the qube reads the image through /dev/xvdi, and (read-write) writes to it
    r = qrun(d, "a", f"head -c {len(PATTERN)} /dev/xvdi")
    assert (r.returncode, r.stdout) == (0, PATTERN), r.stderr
    r = qrun(d, "a", "printf WRITTEN | dd of=/dev/xvdi bs=1 seek=4096 conv=notrunc,fsync status=none")
    assert r.returncode == 0, r.stderr
    with open(img, "rb") as f:
        f.seek(4096)
        assert f.read(7) == b"WRITTEN"

    # attached twice: Qubes' error
    with pytest.raises(AdminError) as e:
        d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="")
    assert (e.value.exc_type, e.value.msg) == ("DeviceAlreadyAttached",
                                               f"device dom0:{port}::{n} of class block already attached to a")
    r = d.tool("qvm-block", "detach", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    assert d.call("admin.vm.device.block.Attached", "a") == ""
    r = qrun(d, "a", "test -e /dev/xvdi")
    assert r.returncode == 1                                             # the node is gone

    # read-only: --ro, then the write fails while the read works
    r = d.tool("qvm-block", "attach", "--ro", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    assert "_read-only='yes' _frontend-dev='xvdi'" in d.call("admin.vm.device.block.Attached", "a")
    r = qrun(d, "a", f"head -c {len(PATTERN)} /dev/xvdi")
    assert (r.returncode, r.stdout) == (0, PATTERN), r.stderr
    r = qrun(d, "a", "printf NOPE | dd of=/dev/xvdi bs=1 seek=8192 conv=notrunc status=none")
    assert r.returncode != 0
    with open(img, "rb") as f:
        f.seek(8192)
        assert f.read(4) == b"\0\0\0\0"

    # a halt detaches (device-detach as Qubes)
    d.call("admin.vm.Kill", "a")
    assert wait_state(d, "a", "Halted")
    assert d.call("admin.vm.device.block.Attached", "a") == ""
    evs = device_events(ev, (b"\0device-detach:block\0", 2))
    ev.close()
    opts_rw = "{'read-only': 'no', 'frontend-dev': 'xvdi'}"
    assert evs == [
        (b"a", b"device-pre-attach:block", [b"device", f"dom0:{port}::{n}".encode(), b"options", b"{}"]),
        (b"a", b"device-attach:block", [b"device", f"dom0:{port}::{n}".encode(), b"options", opts_rw.encode()]),
        (b"a", b"device-pre-detach:block", [b"port", f"dom0:{port}".encode()]),
        (b"a", b"device-detach:block", [b"port", f"dom0:{port}".encode()]),
        (b"a", b"device-pre-attach:block", [b"device", f"dom0:{port}::{n}".encode(), b"options",
                                            b"{'read-only': 'yes'}"]),
        (b"a", b"device-attach:block", [b"device", f"dom0:{port}::{n}".encode(), b"options",
                                        b"{'read-only': 'yes', 'frontend-dev': 'xvdi'}"]),
        (b"a", b"device-detach:block", [b"port", f"dom0:{port}".encode()]),
    ], evs


def test_block_attach_errors_and_options(engine_daemon, loopdev):
    d = engine_daemon
    port, _img = loopdev
    n = port[4:]
    d.call("admin.vm.Start", "a")
    d.call("admin.vm.Start", "b")
    call = lambda q, payload, p=port: d.call(f"admin.vm.device.block.Attach+dom0+{p}", q, payload=payload)  # noqa: E731
    cases = [
        ("_bogus='1'", "QubesValueError", "Unsupported option bogus"),
        ("_frontend-dev='hda'", "QubesValueError", "Invalid frontend-dev option value: hda"),
        ("_frontend-dev='xvd/../x'", "QubesValueError", "Invalid frontend-dev option value: xvd/../x"),
        ("_read-only='maybe'", "QubesValueError", "Invalid literal for boolean property: 'maybe'"),
        ("_devtype='floppy'", "QubesValueError", "devtype option can only have 'disk' or 'cdrom' value"),
        ("backend_domain='b'", "ProtocolError", "Got device exposed by bwhen expected devices from dom0."),
        ("port_id='loop999'", "ProtocolError", f"Got device from port: loop999 when expected port: {port}."),
        ("devclass='pci'", "ProtocolError", "Got pci device when expected block."),
        ("device_id=':1234'", "ProtocolError", f"Unrecognized device identity ':1234' expected ':{n}'"),
        ("mode='sometimes'", "ProtocolError", "'sometimes' is not a valid AssignmentMode"),
        ("colour='red'", "ProtocolError", "DeviceAssignment.__init__() got an unexpected keyword argument 'colour'"),
        ("ke\"y='v'", "ProtocolError", "Invalid chars in property name: {'\"'}"),
        ("k='\x01'", "ProtocolError", "Invalid chars in property value: {'\\x01'}"),
        (b"k='\xff'", "ProtocolError", "'ascii' codec can't decode byte 0xff in position 3: ordinal not in range(128)"),
        ("k='" + "v" * 300 + "'", "ProtocolError", "Property value too long (at most 255 characters)"),
        ("k='v' " * 1000, "ProtocolError", "Device serialization too long (at most 4096 bytes)"),
    ]
    for payload, exc, msg in cases:
        with pytest.raises(AdminError) as e:
            call("a", payload)
        assert (e.value.exc_type, e.value.msg) == (exc, msg), payload
    with pytest.raises(AdminError) as e:
        call("a", "", p="loop99999")
    assert (e.value.exc_type, e.value.msg) == ("ProtocolError", "Cannot attach ambiguous block device.")
    assert d.call("admin.vm.device.block.Attached", "a") == ""

    # Qubes' quoting: \' inside a value; options as given (read-only spelled as Qubes
    # stores it), frontend-dev chosen by the client
    call("a", "device_id=':%s' port_id='%s' _read-only='True' _frontend-dev='xvdk'" % (n, port))
    assert d.call("admin.vm.device.block.Attached", "a").endswith("_read-only='yes' _frontend-dev='xvdk'\n")
    r = subprocess.run([bin_path("qvm-run"), "-p", "-u", "root", "a", "test -b /dev/xvdk"], env=d.env, timeout=60)
    assert r.returncode == 0
    # attached to a: b cannot have it too
    with pytest.raises(AdminError) as e:
        call("b", "")
    assert (e.value.exc_type, e.value.msg) == ("DeviceAlreadyAttached", f"Device dom0:{port}::{n} already attached to a")
    with pytest.raises(AdminError) as e:
        d.call(f"admin.vm.device.block.Detach+dom0+{port}", "b")
    assert (e.value.exc_type, e.value.msg) == ("DeviceNotAssigned", f"block device {port} not attached to b")
    # qvm-block -o ro=no is read-only=no
    d.call(f"admin.vm.device.block.Detach+dom0+{port}", "a")
    r = d.tool("qvm-block", "attach", "-o", "ro=no", "b", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    assert "_read-only='no'" in d.call("admin.vm.device.block.Attached", "b")


def test_read_only_loop_device_only_read_only(engine_daemon, tmp_path):
    d = engine_daemon
    img = tmp_path / "ro.img"
    img.write_bytes(b"\0" * (1 << 20))
    dev = subprocess.run(["losetup", "-r", "-f", "--show", str(img)], capture_output=True, text=True,
                         check=True).stdout.strip()
    try:
        port = os.path.basename(dev)
        d.call("admin.vm.Start", "a")
        with pytest.raises(AdminError) as e:
            d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="_read-only='no'")
        assert (e.value.exc_type, e.value.msg) == ("QubesValueError", "This device can be attached only read-only")
        d.call(f"admin.vm.device.block.Attach+dom0+{port}", "a", payload="")   # read-only by default
        assert "_read-only='yes'" in d.call("admin.vm.device.block.Attached", "a")
    finally:
        d.call("admin.vm.Kill", "a")
        wait_state(d, "a", "Halted")
        subprocess.run(["losetup", "-d", dev], check=False)


def test_block_assign_persists_and_attaches_at_start(engine_daemon, loopdev):
    d = engine_daemon
    port, _img = loopdev
    n = port[4:]
    with pytest.raises(AdminError) as e:                                 # Qubes: assign is for auto-attach
        d.call(f"admin.vm.device.block.Assign+dom0+{port}", "a", payload="mode='manual'")
    assert (e.value.exc_type, e.value.msg) == ("QubesValueError", "Only auto-attachable devices can be assigned.")
    with pytest.raises(AdminError) as e:
        d.call(f"admin.vm.device.block.Assign+dom0+{port}", "a", payload="mode='auto-attach' _bogus='1'")
    assert (e.value.exc_type, e.value.msg) == ("QubesValueError", "Unsupported option bogus")
    ev = subscribe(d)
    r = d.tool("qvm-block", "assign", "-o", "read-only=yes", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    line = (f"dom0+{port}::{n} device_id=':{n}' port_id='{port}' devclass='block' backend_domain='dom0' "
            "mode='auto-attach' frontend_domain='a' _read-only='yes'\n")
    assert d.call("admin.vm.device.block.Assigned", "a") == line
    assert d.call(f"admin.vm.device.block.Assigned+dom0+{port}", "a") == line
    assert d.call("admin.vm.device.block.Assigned+dom0+loop99999", "a") == ""
    with pytest.raises(AdminError) as e:
        d.call(f"admin.vm.device.block.Assign+dom0+{port}", "a", payload="mode='required'")
    assert (e.value.exc_type, e.value.msg) == ("DeviceAlreadyAssigned",
                                               f"block device dom0:{port}::{n} already assigned to a")
    d.call(f"admin.vm.device.block.Set.assignment+dom0+{port}", "a", payload="required")
    assert "mode='required'" in d.call("admin.vm.device.block.Assigned", "a")
    with pytest.raises(AdminError) as e:
        d.call(f"admin.vm.device.block.Set.assignment+dom0+{port}", "a", payload="manual")
    assert (e.value.exc_type, e.value.msg) == ("QubesValueError", "Cannot change assignment mode to 'manual'")
    evs = [(p[1], p[2]) for p in device_events(ev, (b"\0device-assignment-changed:block\0", 1)) if p[0] == b"a"]
    ev.close()
    dev = f"dom0:{port}::{n}".encode()
    assert evs == [
        (b"device-pre-assign:block", [b"device", dev, b"options", b"{'read-only': 'yes'}"]),
        (b"device-assign:block", [b"device", dev, b"options", b"{'read-only': 'yes'}"]),
        (b"device-pre-assign:block", [b"device", dev, b"options", b"{'read-only': 'yes'}"]),
        (b"device-assignment-changed:block", [b"device", dev]),
    ], evs
    # kept across a daemon restart, and attached when the qube starts
    d.stop()
    d.start()
    ev = subscribe(d)
    assert "mode='required'" in d.call("admin.vm.device.block.Assigned", "a")
    d.call("admin.vm.Start", "a")
    assert d.call("admin.vm.device.block.Attached", "a") == (
        f"dom0+{port}::{n} device_id=':{n}' port_id='{port}' devclass='block' backend_domain='dom0' "
        "mode='manual' frontend_domain='a' _read-only='yes' _frontend-dev='xvdi'\n")
    r = qrun(d, "a", f"head -c {len(PATTERN)} /dev/xvdi")
    assert (r.returncode, r.stdout) == (0, PATTERN), r.stderr
    d.call(f"admin.vm.device.block.Unassign+dom0+{port}", "a")
    assert d.call("admin.vm.device.block.Assigned", "a") == ""
    with pytest.raises(AdminError) as e:
        d.call(f"admin.vm.device.block.Unassign+dom0+{port}", "a")
    assert (e.value.exc_type, e.value.msg) == ("DeviceNotAssigned", f"block device {port} not assigned to a")
    evs = [(p[1], p[2]) for p in device_events(ev, (b"\0device-unassign:block\0", 1)) if p[0] == b"a"]
    ev.close()
    assert evs == [
        (b"device-attach:block", [b"device", dev, b"options", b"{'read-only': 'yes', 'frontend-dev': 'xvdi'}"]),
        (b"device-unassign:block", [b"device", dev]),
    ], evs


def test_required_device_missing_or_taken_stops_the_start(engine_daemon, tmp_path):
    """As QubesVM.start: a `required` assignment whose device is not there fails the start
    with Qubes' QubesException "Block device dom0:loopN::N not available" (str() of the
    assignment), after domain-pre-start and with domain-start-failed; the qube stays
    Halted. A device that another qube has is refused the same way; a free one is attached
    before domain-start (it is part of the domain Qubes starts)."""
    d = engine_daemon
    img = tmp_path / "req.img"
    with open(img, "wb") as f:
        f.write(PATTERN)
        f.truncate(1 << 20)
    dev = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                         check=True).stdout.strip()
    port = os.path.basename(dev)
    n = port[4:]
    try:
        d.call(f"admin.vm.device.block.Assign+dom0+{port}", "a", payload="mode='required' _read-only='yes'")
        # taken: b has it
        d.call("admin.vm.Start", "b")
        d.call(f"admin.vm.device.block.Attach+dom0+{port}", "b", payload="")
        ev = subscribe(d)
        with pytest.raises(AdminError) as e:
            d.call("admin.vm.Start", "a")
        msg = f"Block device dom0:{port}::{n} not available"
        assert (e.value.exc_type, e.value.msg) == ("QubesException", msg)
        assert "state=Halted" in d.call("admin.vm.List", "a")
        evs = records(drain(ev, b"domain-start-failed"), subject=b"a")
        ev.close()
        assert evs == [(b"a", b"domain-pre-start", []), (b"a", b"domain-start-failed", [b"reason", msg.encode()])], evs
        # free again: the start attaches it (read-only, as assigned) before domain-start
        d.call(f"admin.vm.device.block.Detach+dom0+{port}", "b")
        ev = subscribe(d)
        d.call("admin.vm.Start", "a")
        names = [r[1] for r in records(drain(ev, b"\0domain-start\0"), subject=b"a")]
        ev.close()
        assert names.index(b"device-attach:block") < names.index(b"domain-start"), names
        r = qrun(d, "a", f"head -c {len(PATTERN)} /dev/xvdi; echo x > /dev/xvdi")
        assert r.stdout == PATTERN and r.returncode != 0, r     # read-only as assigned
        d.call("admin.vm.Kill", "a")
        wait_state(d, "a", "Halted")
        # gone: dom0 freed the loop device
        subprocess.run(["losetup", "-d", dev], check=True)
        with pytest.raises(AdminError) as e:
            d.call("admin.vm.Start", "a")
        assert (e.value.exc_type, e.value.msg) == ("QubesException", msg)
        assert "state=Halted" in d.call("admin.vm.List", "a")
        # control: without the requirement the same qube starts
        d.call(f"admin.vm.device.block.Set.assignment+dom0+{port}", "a", payload="auto-attach")
        d.call("admin.vm.Start", "a")
        assert d.call("admin.vm.device.block.Attached", "a") == ""
    finally:
        subprocess.run(["losetup", "-d", dev], check=False, capture_output=True)


def test_ask_to_attach_asks_the_person_at_start(engine_daemon, loopdev, tmp_path, monkeypatch):
    """Qubes 4.3's ask-to-attach: at the qube's start the person is asked (here through
    the qrexec `ask` prompt program, replaced by a script that records the question and
    answers from a file); the device is attached only when the answer names the qube."""
    d = engine_daemon
    port, img = loopdev
    n = port[4:]
    answer, asked = tmp_path / "answer", tmp_path / "asked"
    prog = tmp_path / "ask.sh"
    prog.write_text(f"#!/bin/sh\necho \"$*\" >> {asked}\nread a < {answer}\n"
                    "[ \"$a\" = deny ] && exit 1\necho \"$a\"\n")
    prog.chmod(0o755)
    d.stop()
    monkeypatch.setenv("BULKHEAD_QREXEC_ASK", str(prog))
    d.start()
    r = d.tool("qvm-block", "assign", "--ask-to-attach", "a", f"dom0:{port}")
    assert (r.returncode, r.stderr) == (0, "")
    assert "mode='ask-to-attach'" in d.call("admin.vm.device.block.Assigned", "a")

    answer.write_text("a\n")
    ev = subscribe(d)
    d.call("admin.vm.Start", "a")
    recs = device_events(ev, (b"device-attach:block", 1))
    assert (b"a", b"device-attach:block") in [(r[0], r[1]) for r in recs], recs
    assert asked.read_text() == f"--source dom0 --service device.block+{port} --default a -- a\n"
    assert d.call("admin.vm.device.block.Attached", "a") == (
        f"dom0+{port}::{n} device_id=':{n}' port_id='{port}' devclass='block' backend_domain='dom0' "
        "mode='manual' frontend_domain='a' _read-only='no' _frontend-dev='xvdi'\n")
    d.call("admin.vm.Kill", "a")
    assert wait_state(d, "a", "Halted")

    answer.write_text("deny\n")
    d.call("admin.vm.Start", "a")
    deadline = time.time() + 60
    while time.time() < deadline and asked.read_text().count("\n") < 2:
        time.sleep(0.1)
    time.sleep(0.5)                                    # the answer is read and acted on
    assert asked.read_text().count("\n") == 2          # asked again at this start
    assert d.call("admin.vm.device.block.Attached", "a") == ""
    assert "attachment=" not in d.call(f"admin.vm.device.block.Available+{port}", "dom0")
