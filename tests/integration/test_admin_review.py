"""Regressions found reviewing bulkheadd against qubesd's behaviour (PROTOCOLS.md §1)."""
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
