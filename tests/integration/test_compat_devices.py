"""Qubes' device API as a Qubes client walks it (Qubes.clone_vm, qvm-device ls):
admin.deviceclass.List, admin.vm.device.<class>.{Available,Assigned,Attached} answer
with what exists (only dom0's loop devices: test_compat_block.py), attach/assign/detach
are refused with Qubes' errors, and admin.vm.device.denied.* keep devices_denied as Qubes does
(sorted, without duplicates, Qubes' validation and error messages). Exact bytes."""
import pytest

from admin_fixtures import AdminError, daemon  # noqa: F401


def test_device_tree_walk(daemon):
    d = daemon
    assert d.raw(b"admin.deviceclass.List+ dom0 name dom0\0") == b"0\0pci\nblock\n"
    for cls in ("pci", "block"):
        for op in ("Available", "Assigned", "Attached"):
            assert d.raw(f"admin.vm.device.{cls}.{op}+ dom0 name work\0".encode()) == b"0\0"
        assert d.raw(f"admin.vm.device.{cls}.Assigned+dom0+loop7 dom0 name work\0".encode()) == b"0\0"
    # a class Qubes does not have is no method at all
    assert d.raw(b"admin.vm.device.bogus.Available+ dom0 name work\0").startswith(b"2\0ProtocolError\0")
    # deviceclass.List is global: on a qube it is refused
    assert d.raw(b"admin.deviceclass.List+ dom0 name work\0").startswith(b"2\0")


def test_attach_detach_errors(daemon):
    d = daemon
    with pytest.raises(AdminError) as e:   # Qubes 4.2's keys are no DeviceAssignment arguments in 4.3
        d.call("admin.vm.device.block.Attach+dom0+loop7:dev", "work", payload="required='no' attach_automatically='no'")
    assert (e.value.exc_type, e.value.msg) == (
        "ProtocolError", "DeviceAssignment.__init__() got an unexpected keyword argument 'required'")
    with pytest.raises(AdminError) as e:   # work is halted
        d.call("admin.vm.device.block.Attach+dom0+loop7:dev", "work", payload="mode='manual'")
    assert (e.value.exc_type, e.value.msg) == ("QubesVMNotRunningError",
                                               "VM not running, cannot attach device, do you mean `assign`?")
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.device.block.Detach+dom0+loop7", "work")
    assert (e.value.exc_type, e.value.msg) == ("DeviceNotAssigned", "block device loop7 not attached to work")
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.device.pci.Unassign+dom0+00_1f.2", "work")
    assert (e.value.exc_type, e.value.msg) == ("DeviceNotAssigned", "pci device 00_1f.2 not assigned to work")
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.device.block.Attach+nosuch+loop7", "work", payload="x")
    assert e.value.exc_type == "QubesVMNotFoundError"


def test_denied_list(daemon):
    d = daemon
    assert d.call("admin.vm.device.denied.List", "work") == ""
    d.call("admin.vm.device.denied.Add", "work", payload="u03****b******")
    d.call("admin.vm.device.denied.Add", "work", payload="b******p0e0100")   # b****** again: kept once
    assert d.raw(b"admin.vm.device.denied.List+ dom0 name work\0") == b"0\0b******\np0e0100\nu03****"
    assert d.call("admin.vm.property.Get+devices_denied", "work") == "default=False type=str b******p0e0100u03****"
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.device.denied.Add", "work", payload="u03****u03****")
    assert (e.value.exc_type, e.value.msg) == ("ProtocolError", "Duplicated device interfaces in payload.")
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.device.denied.Add", "work", payload="u03***")
    assert e.value.exc_type == "QubesValueError" and "expected multiple of 7" in e.value.msg
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.device.denied.Add", "work", payload="x000000")
    assert e.value.exc_type == "QubesPropertyValueError"
    assert e.value.msg.startswith("Interface code list should be in the form chhhhhhchhhhhh...,where c is one of")
    with pytest.raises(AdminError) as e:                    # bounded: 1024 interfaces at most
        d.call("admin.vm.device.denied.Add", "work", payload="".join("b%06x" % i for i in range(1025)))
    assert e.value.exc_type == "QubesValueError"
    d.call("admin.vm.device.denied.Remove", "work", payload="p0e0100q123456")   # missing ones ignored
    assert d.call("admin.vm.device.denied.List", "work") == "b******\nu03****"
    d.call("admin.vm.device.denied.Remove", "work", payload="all")
    assert d.call("admin.vm.device.denied.List", "work") == ""
    assert d.call("admin.vm.property.Get+devices_denied", "dom0") == "default=True type=str "


def test_qvm_device_and_qvm_block(daemon):
    d = daemon
    for args in (("qvm-block", "ls", "work"), ("qvm-device", "pci", "ls", "work"), ("qvm-device", "pci")):
        r = d.tool(*args)
        assert (r.returncode, r.stdout, r.stderr) == (0, "", ""), args   # qubes and pci export nothing
    r = d.tool("qvm-block", "attach", "work", "dom0:loop7")
    assert (r.returncode, r.stderr) == (1, "qvm-block: error: VM not running, cannot attach device, do you mean `assign`?\n")
    r = d.tool("qvm-block", "detach", "work", "dom0:loop7")
    assert (r.returncode, r.stderr) == (1, "qvm-block: error: block device loop7 not attached to work\n")
    r = d.tool("qvm-device", "usb", "ls")
    assert r.returncode == 2 and "invalid choice: 'usb'" in r.stderr


def test_clone_sequence_as_qubes_client(daemon):
    """The calls qubesadmin's Qubes.clone_vm makes (app.py clone_vm), in its order: create,
    copy non-default properties, tags (not created-by-*), features, notes, firewall, the
    persistent volumes (CloneFrom/CloneTo), then the devices of every class. Each step
    succeeds, so no half-made clone is left behind."""
    d = daemon
    d.call("admin.vm.property.Set+memory", "work", "700")
    d.call("admin.vm.tag.Set+proj", "work")
    d.call("admin.vm.feature.Set+f1", "work", "v")
    d.call("admin.vm.notes.Set", "work", "notes!")
    d.call("admin.vm.Create.AppVM+host", payload="name=clone label=blue")
    skip = {"name", "qid", "template", "label", "uuid", "installed_by_rpm"}
    for line in d.call("admin.vm.property.GetAll", "work").splitlines():
        prop, rest = line.split(" ", 1)
        if prop in skip or rest.startswith("default=True"):
            continue
        value = rest.split(" ", 2)[2] if rest.count(" ") >= 2 else ""
        try:
            d.call(f"admin.vm.property.Set+{prop}", "clone", value)
        except AdminError as e:      # read-only values are skipped, as the client's AttributeError
            assert e.exc_type in ("QubesValueError",), (prop, e)
    for tag in d.call("admin.vm.tag.List", "work").split():
        if not tag.startswith("created-by-"):
            d.call(f"admin.vm.tag.Set+{tag}", "clone")
    for feat in d.call("admin.vm.feature.List", "work").split():
        d.call(f"admin.vm.feature.Set+{feat}", "clone", d.call(f"admin.vm.feature.Get+{feat}", "work"))
    d.call("admin.vm.notes.Set", "clone", d.call("admin.vm.notes.Get", "work"))
    d.call("admin.vm.firewall.Set", "clone", d.call("admin.vm.firewall.Get", "work"))
    token = d.call("admin.vm.volume.CloneFrom+private", "work")
    d.call("admin.vm.volume.CloneTo+private", "clone", token)
    for cls in d.call("admin.deviceclass.List").split():
        assert d.call(f"admin.vm.device.{cls}.Assigned", "work") == ""
    assert d.call("admin.vm.property.Get+memory", "clone") == "default=False type=int 700"
    assert "proj" in d.call("admin.vm.tag.List", "clone").split()
    assert d.call("admin.vm.notes.Get", "clone") == "notes!"
