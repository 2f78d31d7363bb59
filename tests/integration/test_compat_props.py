"""Qubes 4.3's property set per class (qubes/vm/*.py, qubes/app.py) with Qubes' types,
defaults and errors."""
import os

import pytest

from admin_fixtures import AdminError, daemon  # noqa: F401

# Qubes 4.3 properties, per class (qubes-core-admin qubes/vm/*.py, mix/*.py).
QUBESVM = {"audiovm", "autostart", "backup_timestamp", "bootmode", "debug", "default_dispvm",
           "default_user", "devices_denied", "dns", "gateway", "gateway6", "guivm", "icon",
           "include_in_backups", "installed_by_rpm", "ip", "ip6", "kernel", "kernelopts",
           "keyboard_layout", "klass", "label", "mac", "management_dispvm", "maxmem", "memory",
           "name", "netvm", "provides_network", "qid", "qrexec_timeout", "shutdown_timeout",
           "start_time", "stubdom_mem", "stubdom_uuid", "stubdom_xid", "updateable", "uuid",
           "vcpus", "virt_mode", "visible_gateway", "visible_gateway6", "visible_ip",
           "visible_ip6", "visible_netmask", "xid"}
PER_CLASS = {
    "AppVM": QUBESVM | {"template", "template_for_dispvms"},
    "TemplateVM": QUBESVM | {"appvm_default_bootmode", "template_for_dispvms"},
    "StandaloneVM": QUBESVM | {"template_for_dispvms"},
    "DispVM": QUBESVM | {"template", "auto_cleanup", "dispid", "is_preload"},
    "AdminVM": {"default_dispvm", "devices_denied", "icon", "include_in_backups", "keyboard_layout",
                "klass", "label", "management_dispvm", "maxmem", "name", "qid", "updateable", "uuid",
                "xid"},
}
GLOBAL = {"check_updates_vm", "clockvm", "default_audiovm", "default_dispvm", "default_guivm",
          "default_kernel", "default_netvm", "default_pool", "default_pool_kernel",
          "default_pool_private", "default_pool_root", "default_pool_volatile",
          "default_qrexec_timeout", "default_shutdown_timeout", "default_template",
          "management_dispvm", "maxmem", "no_cpus", "stats_interval", "updatevm"}
# Bulkhead's own, documented in docs/admin.md (virt_mode is Qubes' name, with values
# ns/vm instead of hvm/pvh/pv; default_virt_mode is the global default for it).
OURS = set()
GLOBAL_OURS = {"default_virt_mode"}


def names(d, dest, method="admin.vm.property.List"):
    return set(d.call(method, dest).split())


def test_property_set_per_class(daemon):
    d = daemon
    d.call("admin.vm.Create.StandaloneVM", payload="name=sa label=red")
    disp = d.call("admin.vm.CreateDisposable", "default-dvm")
    for qube, cls in (("work", "AppVM"), ("host", "TemplateVM"), ("sa", "StandaloneVM"),
                      (disp, "DispVM"), ("dom0", "AdminVM")):
        got = names(d, qube)
        assert PER_CLASS[cls] - got == set(), (cls, "missing", PER_CLASS[cls] - got)
        assert got - PER_CLASS[cls] - OURS == set(), (cls, "extra", got - PER_CLASS[cls])
    got = names(d, "dom0", "admin.property.List")
    assert GLOBAL - got == set() and got - GLOBAL - GLOBAL_OURS == set(), got ^ GLOBAL


def test_values_as_qubes(daemon):
    d = daemon
    g = lambda q, p: d.call(f"admin.vm.property.Get+{p}", q)
    assert g("work", "bootmode") == "default=True type=str default"
    assert g("work", "backup_timestamp") == "default=True type=int "
    assert g("work", "installed_by_rpm") == "default=True type=bool False"
    assert g("work", "stubdom_xid") == "default=True type=int -1"
    assert g("work", "visible_ip6") == "default=True type=str "
    assert g("host", "appvm_default_bootmode") == "default=True type=str default"
    disp = d.call("admin.vm.CreateDisposable", "default-dvm")
    assert g(disp, "auto_cleanup") == "default=True type=bool True"
    assert g(disp, "include_in_backups") == "default=True type=bool False"
    assert g(disp, "is_preload") == "default=True type=bool False"
    assert g(disp, "dispid") == f"default=True type=int {disp[4:]}"
    assert g("dom0", "include_in_backups") == "default=True type=bool True"
    assert g("dom0", "updateable") == "default=True type=bool True"
    assert int(g("dom0", "maxmem").split()[-1]) > 0
    ncpu = d.call("admin.property.Get+no_cpus")
    assert ncpu == f"default=True type=int {os.cpu_count()}"
    assert int(d.call("admin.property.Get+maxmem").split()[-1]) > 0


def test_errors_as_qubes(daemon):
    d = daemon
    cases = [("memory", "0", "QubesPropertyValueError", "memory must be positive"),
             ("memory", "x", "QubesValueError", "Failed to parse property value as int"),
             ("autostart", "maybe", "QubesValueError", "Invalid literal for boolean property: 'maybe'")]
    for prop, val, exc, msg in cases:
        with pytest.raises(AdminError) as e:
            d.call(f"admin.vm.property.Set+{prop}", "work", val)
        assert (e.value.exc_type, e.value.msg) == (exc, msg)
    with pytest.raises(AdminError) as e:
        d.call("admin.property.Set+no_cpus", payload="3")
    assert e.value.exc_type in ("QubesValueError", "QubesPropertyValueError")


def _cg_tag(runtime):
    h = 1469598103934665603
    for c in os.path.realpath(runtime).encode():
        h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
    return "bulkhead-%012x" % (h & 0xFFFFFFFFFFFF)


def test_live_limits_on_running_ns_qube(tmp_path):
    """As Qubes, memory/maxmem/vcpus may be set on a running qube; an ns qube gets them at
    once in its cgroup (cgroup v1 here; v2 writes memory.max/cpu.max)."""
    from admin_fixtures import Daemon, kill_all
    if not os.path.exists("/sys/fs/cgroup/cpu/cgroup.procs"):
        pytest.skip("needs cgroup v1 with the cpu controller (this test reads its files)")
    d = Daemon(tmp_path, defaults=False).start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
        d.call("admin.vm.Create.AppVM+host", payload="name=a label=red")
        d.call("admin.vm.Start", "a")
        tag = _cg_tag(d.runtime)
        quota = f"/sys/fs/cgroup/cpu/{tag}/a/cpu.cfs_quota_us"
        limit = f"/sys/fs/cgroup/memory/{tag}/a/memory.limit_in_bytes"
        assert open(quota).read().strip() == "200000"            # control: vcpus 2 at start
        d.call("admin.vm.property.Set+vcpus", "a", "1")
        assert open(quota).read().strip() == "100000"
        d.call("admin.vm.property.Set+maxmem", "a", "3000")
        assert int(open(limit).read()) == 3000 << 20
        d.call("admin.vm.property.Set+memory", "a", "500")        # accepted while running
        assert d.call("admin.vm.property.Get+memory", "a") == "default=False type=int 500"
    finally:
        kill_all(d)
        d.stop()
        d.cleanup()
