"""Networking of vm-engine qubes: a `pvh` qube behind sys-firewall and sys-net (`ns`
qubes), plugged into a small internet made of namespaces this module creates
(net_fixtures.py; no traffic leaves them). The guest's network card is a tap in the
qube's host-owned namespace, wired frame for frame to that namespace's link to its netvm
(src/net/guestnic.c): the netvm's rules apply to it as to an `ns` qube.

Two boots in all (TCG here): one networked VM shared by the tests in the order written,
and one boot of the same qube with no netvm."""
import os
import pathlib
import signal
import subprocess
import time

import pytest

from net_fixtures import WEB, OTHER, sh
from admin_fixtures import state_of
from vm_fixtures import start, vm_leftovers, wait_for
from vm_net_fixtures import vmnet, booted, netns_of, VM, WEB6, INET6  # noqa: F401


def test_vm_qube_gets_the_addresses_its_properties_report(vmnet):
    n = booted(vmnet)
    ip, gw, mac = n.prop(VM, "ip"), n.prop(VM, "visible_gateway"), n.prop(VM, "mac")
    qid = int(n.prop(VM, "qid"))
    assert ip == f"10.137.{qid >> 8}.{qid & 255}" and gw == n.prop("sys-firewall", "ip")
    assert n.prop(VM, "dns") == "10.139.1.1 10.139.1.2"
    r = n.run(VM, "uname -r; ip -4 -o addr show dev eth0; ip route; cat /etc/resolv.conf; "
                  "cat /sys/class/net/eth0/address")
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0] != os.uname().release  # really the guest's kernel
    assert f"inet {ip}/32 scope global eth0" in r.stdout
    assert f"default via {gw} dev eth0" in r.stdout
    assert "nameserver 10.139.1.1\nnameserver 10.139.1.2" in r.stdout
    assert mac in r.stdout


def test_vm_qube_has_routed_ipv6_as_qubes(vmnet):
    n = booted(vmnet)
    ip6, gw6 = n.prop(VM, "ip6"), n.prop(VM, "visible_gateway6")
    assert ip6.startswith("fd09:24ef:4179::a89:") and gw6 == n.prop("sys-firewall", "gateway6") != ""
    r = n.run(VM, "ip -6 -o addr show dev eth0; ip -6 route; "
                  f"curl -sS -g -m 10 http://[{WEB6}]:8080/; ping -6 -c1 -W5 {WEB6}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"inet6 {ip6}/128 scope global" in r.stdout and "fe80:" not in r.stdout  # no link-local
    assert f"default via {gw6} dev eth0" in r.stdout
    assert f"hello over ipv6 from {INET6}" in r.stdout  # NAT66 at each hop, as Qubes' netvms
    assert "1 received" in r.stdout


def test_ipv6_feature_changed_while_the_vm_runs(vmnet):
    """Qubes' `ipv6` feature of the running VM switched off ('') and back (deleted: it
    follows sys-net's again): the link is plugged again and the guest told, as for a
    netvm change, so its eth0 loses and regains its ip6 and default route."""
    n = booted(vmnet)
    ip6 = n.prop(VM, "ip6")
    show = "ip -6 -o addr show dev eth0; ip -6 route"

    def v6():
        r = n.run(VM, show)
        return r.returncode == 0 and f"inet6 {ip6}/128" in r.stdout and "default via" in r.stdout

    assert v6()  # control: it has IPv6 now (sys-net's feature)
    try:
        n.d.call("admin.vm.feature.Set+ipv6", VM, "")
        assert n.prop(VM, "ip6") == ""
        assert wait_for(lambda: not v6(), 120, 1)
        r = n.run(VM, f"curl -sS -g -m 5 http://[{WEB6}]:8080/")
        assert "hello over ipv6" not in r.stdout
    finally:
        n.d.call("admin.vm.feature.Remove+ipv6", VM)
    assert wait_for(v6, 120, 1)
    r = n.run(VM, f"curl -sS -g -m 10 http://[{WEB6}]:8080/")
    assert f"hello over ipv6 from {INET6}" in r.stdout, r.stdout + r.stderr


def test_vm_qube_fetches_by_name_and_by_address(vmnet):
    n = booted(vmnet)
    r = n.run(VM, f"id -u; curl -sS -m 10 http://web.test:8080/; curl -sS -m 10 http://{OTHER}:8080/; "
                  "ping -c1 -W5 web.test")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == "1000"  # as the qube's user, name resolution through 10.139.1.1
    assert r.stdout.count("hello from the test internet") == 2
    assert "1 received" in r.stdout


def test_qvm_firewall_drop_rule_applies_to_the_vm(vmnet):
    n = booted(vmnet)
    assert n.curl(VM, f"http://{OTHER}:8080/", t=10)
    try:
        assert n.tool("qvm-firewall", VM, "add", "--before", "0", "action=drop", f"dst4={OTHER}").returncode == 0
        assert not n.curl(VM, f"http://{OTHER}:8080/", t=3)
        assert n.curl(VM, f"http://{WEB}:8080/", t=10)  # positive control: another address still works
        # only DNS and the web server by name: everything else refused, names still resolve
        n.d.call("admin.vm.firewall.Set", VM, "action=accept specialtarget=dns\n"
                                             "action=accept dsthost=web.test proto=tcp dstports=8080\naction=drop\n")
        assert n.curl(VM, "http://web.test:8080/", t=10)
        assert not n.curl(VM, "http://other.test:8080/", t=3)
    finally:
        n.d.call("admin.vm.firewall.Set", VM, "action=accept\n")
    assert n.curl(VM, f"http://{OTHER}:8080/", t=10)


def guest_has_route(n, want, timeout=60):
    """Waits until the guest's `ip route` shows `want` (a string) or, with want=None,
    no default route; the host tells the guest beside its own work (over qrexec)."""
    def ok():
        r = n.run(VM, "ip -4 route", timeout=30)
        return (want in r.stdout) if want else ("default" not in r.stdout and r.returncode == 0)
    return wait_for(ok, timeout, step=1)


def test_live_netvm_change_replugs_the_vm(vmnet):
    n = booted(vmnet)
    d = n.d
    # a second firewall qube (ns engine) with another address: the qube's gateway
    # changes, and the guest is told (its routes and neighbours follow)
    d.call("admin.vm.Create.AppVM+host", payload="name=fw2 label=green")
    d.call("admin.vm.property.Set+provides_network", "fw2", "True")
    d.call("admin.vm.property.Set+netvm", "fw2", "sys-net")
    d.call("admin.vm.Start", "fw2")
    gw1, gw2 = n.prop("sys-firewall", "ip"), n.prop("fw2", "ip")
    try:
        assert guest_has_route(n, f"default via {gw1} dev eth0", 5)  # control: as booted
        d.call("admin.vm.property.Set+netvm", VM, "")
        assert not n.curl(VM, f"http://{WEB}:8080/", t=3)  # unplugged at once
        assert guest_has_route(n, None), n.run(VM, "ip route").stdout  # and the guest's link is down
        d.call("admin.vm.property.Set+netvm", VM, "fw2")
        assert n.prop(VM, "visible_gateway") == gw2 != gw1
        assert guest_has_route(n, f"default via {gw2} dev eth0"), n.run(VM, "ip route").stdout
        r = n.run(VM, "ip route; ip neigh show dev eth0")
        assert gw1 not in r.stdout, r.stdout  # nothing of the old gateway is left
        assert n.curl(VM, "http://web.test:8080/", t=10)
        r = n.run(VM, f"curl -sS -g -m 10 http://[{WEB6}]:8080/")  # and its IPv6 too
        assert "hello over ipv6" in r.stdout, r.stderr
        d.call("admin.vm.property.Set+netvm", VM, "sys-firewall")
        assert guest_has_route(n, f"default via {gw1} dev eth0")
        assert n.curl(VM, "http://web.test:8080/", t=10)
    finally:
        d.call("admin.vm.property.Set+netvm", VM, "sys-firewall")
        d.call("admin.vm.Kill", "fw2")


def test_qemu_has_no_host_network(vmnet):
    """QEMU runs in an empty network namespace of its own: the guest's card is the tap
    it was handed, and a compromised QEMU reaches no host service over IP."""
    n = booted(vmnet)
    qemu = int((n.d.runtime / "qubes" / VM / "qemu.pid").read_text().split()[0])
    assert os.readlink(f"/proc/{qemu}/ns/net") != os.readlink("/proc/self/ns/net")
    links = pathlib.Path(f"/proc/{qemu}/net/dev").read_text().splitlines()[2:]
    assert [l.split(":")[0].strip() for l in links] == ["lo"]
    # the tap is in the qube's own namespace (host-owned), beside its link
    out = sh("nsenter", f"--net={netns_of(n, VM)}", "ip", "-o", "link").stdout
    assert "guest0" in out and "eth0" in out


def test_daemon_crash_adopts_the_networked_vm_and_stop_cleans_up(vmnet):
    n = booted(vmnet)
    d = n.d
    ns = netns_of(n, VM)
    d.stop(signal.SIGKILL)
    d.start()
    assert state_of(d, VM) == "Running"
    assert n.curl(VM, f"http://{WEB}:8080/", t=10)
    # a rule set after the restart still reaches the adopted qube
    d.call("admin.vm.firewall.Set", VM, f"action=drop dst4={WEB}\naction=accept\n")
    assert not n.curl(VM, f"http://{WEB}:8080/", t=3) and n.curl(VM, f"http://{OTHER}:8080/", t=10)
    d.call("admin.vm.firewall.Set", VM, "action=accept\n")
    d.call("admin.vm.Kill", VM)
    assert state_of(d, VM) == "Halted"
    assert vm_leftovers(d, VM) == []
    assert not ns.exists()  # the namespace (with its tap and wire) is gone
    fw = sh("nsenter", f"--net={netns_of(n, 'sys-firewall')}", "ip", "-o", "link").stdout
    assert f"vif{n.prop(VM, 'qid')}.0" not in fw  # and the netvm's end of the link


def test_vm_booted_without_netvm_gets_its_link_when_one_is_set(vmnet):
    """A VM booted with `netvm` empty has a card with no link (down, no address, no
    route; its tap's frames are dropped on the host); a netvm set while it runs plugs
    the link and tells the guest, with no new device (a microvm has no hot-plug)."""
    n = vmnet.net
    d = n.d
    if state_of(d, VM) != "Halted":
        d.call("admin.vm.Kill", VM)
    d.call("admin.vm.property.Set+netvm", VM, "")
    try:
        start(d, VM)
        r = n.run(VM, "ls /sys/class/net; ip -4 addr show dev eth0; ip route; ip -6 route; "
                      f"curl -sS -m 3 http://{WEB}:8080/; echo rc=$?")
        assert r.stdout.split()[:2] == ["eth0", "lo"], r.stdout
        assert "inet " not in r.stdout and "default" not in r.stdout, r.stdout
        assert "rc=0" not in r.stdout and "rc=" in r.stdout
        assert n.prop(VM, "ip") == ""
        # positive control: the same fetch from a networked qube works
        assert n.curl("work", f"http://{WEB}:8080/")
        # the guest's root brings the card up with an address of its choosing: nothing
        # gets anywhere (no link behind the tap), then it takes it down again
        r = n.run(VM, f"ip link set eth0 up && ip addr add {n.prop('work', 'ip')}/32 dev eth0 && "
                      f"ip route add default dev eth0 && ip route; curl -sS -m 3 http://{WEB}:8080/; echo rc=$?; "
                      "ip addr flush dev eth0; ip link set eth0 down", user="root")
        assert "default dev eth0" in r.stdout and "rc=" in r.stdout and "rc=0" not in r.stdout, r.stdout + r.stderr
        d.call("admin.vm.property.Set+netvm", VM, "sys-firewall")
        ip, gw = n.prop(VM, "ip"), n.prop(VM, "visible_gateway")
        assert guest_has_route(n, f"default via {gw} dev eth0"), n.run(VM, "ip route; ip addr").stdout
        assert f"inet {ip}/32" in n.run(VM, "ip -4 addr show dev eth0").stdout
        assert n.curl(VM, f"http://{WEB}:8080/", t=10) and n.curl(VM, "http://web.test:8080/", t=10)
        d.call("admin.vm.Kill", VM)
        assert wait_for(lambda: state_of(d, VM) == "Halted", 20)
        assert vm_leftovers(d, VM) == []
        assert not netns_of(n, VM).exists()
    finally:
        d.call("admin.vm.property.Reset+netvm", VM)
