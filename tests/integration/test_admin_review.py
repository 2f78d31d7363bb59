"""Regressions found reviewing bulkheadd against qubesd's behaviour (docs/admin.md)."""
import resource
import socket
import time

import pytest

from admin_fixtures import AdminError, Daemon, daemon, bare_daemon  # noqa: F401


def _events_until(s, want, timeout=10):
    s.settimeout(timeout)
    buf = b""
    deadline = time.time() + timeout
    while time.time() < deadline and want not in buf:
        buf += s.recv(65536)
    return buf


def test_reset_emits_property_reset_then_del(daemon):
    # Qubes' client library drops cached values on property-set:/property-reset:;
    # property-del: is only the old name, still sent after it.
    s = socket.socket(socket.AF_UNIX)
    s.connect(daemon.sock)
    s.sendall(b"admin.Events+ dom0 name dom0\0")
    s.shutdown(socket.SHUT_WR)
    _events_until(s, b"connection-established")
    daemon.call("admin.vm.property.Set+memory", "work", "500")
    daemon.call("admin.vm.property.Reset+memory", "work")
    daemon.call("admin.property.Set+default_qrexec_timeout", payload="30")
    daemon.call("admin.property.Reset+default_qrexec_timeout")
    buf = _events_until(s, b"property-del:default_qrexec_timeout\0name\0default_qrexec_timeout\0oldvalue\x0030\0\0")
    s.close()
    reset = b"1\0work\0property-reset:memory\0name\0memory\0oldvalue\x00500\0\0"
    dele = b"1\0work\0property-del:memory\0name\0memory\0oldvalue\x00500\0\0"
    assert reset in buf and dele in buf and buf.index(reset) < buf.index(dele)
    assert b"1\0\0property-reset:default_qrexec_timeout\0name\0default_qrexec_timeout\0oldvalue\x0030\0\0" in buf


def test_create_disposable_refuses_unknown_payload(daemon):
    before = daemon.call("admin.vm.List")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.CreateDisposable", "default-dvm", "name")
    assert e.value.exc_type == "QubesValueError"
    assert daemon.call("admin.vm.List") == before
    out = daemon.call("admin.vm.CreateDisposable", "default-dvm", "uuid")
    assert out.startswith("uuid:") and len(out) == 41


def test_reset_cannot_bypass_in_use_checks(daemon):
    # sys-firewall uses sys-net as netvm: resetting provides_network (default False)
    # must be refused exactly like setting it to False.
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.property.Reset+provides_network", "sys-net")
    assert e.value.exc_type == "QubesValueError"
    assert daemon.call("admin.vm.property.Get+provides_network", "sys-net") == "default=False type=bool True"
    disp = daemon.call("admin.vm.CreateDisposable", "default-dvm")
    with pytest.raises(AdminError):
        daemon.call("admin.vm.property.Reset+template_for_dispvms", "default-dvm")
    assert daemon.call("admin.vm.property.Get+template_for_dispvms", "default-dvm").endswith(" True")
    daemon.call("admin.vm.Remove", disp)
    daemon.call("admin.vm.property.Reset+template_for_dispvms", "default-dvm")  # now unused: fine


def test_default_netvm_must_keep_providing_network(bare_daemon):
    d = bare_daemon
    d.call("admin.vm.Create.TemplateVM", payload="name=t label=black")
    d.call("admin.vm.Create.AppVM+t", payload="name=net2 label=red")
    d.call("admin.vm.property.Set+provides_network", "net2", "True")
    d.call("admin.property.Set+default_netvm", payload="net2")
    d.call("admin.vm.Create.AppVM+t", payload="name=c label=blue")  # netvm by default: net2
    assert d.call("admin.vm.property.Get+netvm", "c") == "default=True type=vm net2"
    for call in (("admin.vm.property.Set+provides_network", "net2", "False"),
                 ("admin.vm.property.Reset+provides_network", "net2")):
        with pytest.raises(AdminError) as e:
            d.call(*call)
        assert e.value.exc_type == "QubesValueError"
    assert d.call("admin.vm.property.Get+provides_network", "net2").endswith(" True")


def _cpu_ticks(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def test_out_of_descriptors_neither_spins_nor_floods_the_log(tmp_path):
    # A local client holding many idle connections exhausts a low RLIMIT_NOFILE; the
    # listening socket stays readable, and accepting in a loop would burn a core and
    # write a warning per try.
    d = Daemon(tmp_path, defaults=False)
    d.preexec = lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (40, 40))
    d.start()
    held = []
    try:
        for _ in range(80):
            s = socket.socket(socket.AF_UNIX)
            s.connect(d.sock)  # queued in the backlog once the daemon stops accepting
            held.append(s)
        time.sleep(0.3)
        t0 = _cpu_ticks(d.proc.pid)
        time.sleep(1.5)
        used = _cpu_ticks(d.proc.pid) - t0
        assert used < 40, f"bulkheadd used {used} ticks in 1.5 s while out of descriptors"
        warnings = d.log.read_text().count("file descriptors") + d.log.read_text().count("accept:")
        assert warnings <= 2
        for s in held:
            s.close()
        held = []
        # Descriptors come back: the daemon serves again.
        deadline = time.time() + 60
        while True:
            try:
                assert d.call("admin.vm.List").startswith("dom0 class=AdminVM")
                break
            except (OSError, RuntimeError):
                if time.time() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        for s in held:
            s.close()
        d.stop()


def test_source_must_exist_and_dispvm_follows_the_caller(daemon):
    # qubesd resolves the source like the destination; CreateDisposable on dom0 uses
    # the *caller's* default_dispvm (a qube calling through qrexec gets its own).
    out = daemon.raw(b"admin.vm.List+ nosuch name dom0\0")
    assert out == b"2\0QubesVMNotFoundError\0\0No such domain: 'nosuch'\0"
    daemon.call("admin.vm.Create.AppVM+host", payload="name=dvm2 label=green")
    daemon.call("admin.vm.property.Set+template_for_dispvms", "dvm2", "True")
    daemon.call("admin.vm.property.Set+default_dispvm", "work", "dvm2")
    out = daemon.raw(b"admin.vm.CreateDisposable+ work name dom0\0")
    assert out.startswith(b"0\0disp")
    name = out[2:].decode()
    assert daemon.call("admin.vm.property.Get+template", name) == "default=False type=vm dvm2"
    name = daemon.call("admin.vm.CreateDisposable")  # from dom0: the global default
    assert daemon.call("admin.vm.property.Get+template", name) == "default=False type=vm default-dvm"


def test_remove_dom0_is_in_use_error(daemon):
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.Remove", "dom0")
    assert (e.value.exc_type, e.value.msg) == ("QubesVMInUseError", "'dom0' cannot be removed")


def test_netvm_loops_through_defaults_are_refused(daemon):
    # A disposable's netvm defaults to its template's: pointing the template (or the
    # global default the template follows) at the disposable closes a loop that never
    # passes through the qube being changed.
    disp = daemon.call("admin.vm.CreateDisposable", "default-dvm")
    daemon.call("admin.vm.property.Set+provides_network", disp, "True")
    with pytest.raises(AdminError) as e:
        daemon.call("admin.vm.property.Set+netvm", "default-dvm", disp)
    assert e.value.exc_type == "QubesValueError" and "Loops" in e.value.msg
    daemon.call("admin.vm.property.Reset+netvm", "default-dvm")  # now follows default_netvm
    with pytest.raises(AdminError) as e:
        daemon.call("admin.property.Set+default_netvm", payload=disp)
    assert "Loops" in e.value.msg
    assert daemon.call("admin.property.Get+default_netvm") == "default=False type=vm sys-firewall"
    assert daemon.call("admin.vm.property.Get+netvm", disp) == "default=True type=vm sys-firewall"
