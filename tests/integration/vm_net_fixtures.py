"""A vm-engine qube (`pvh`) behind sys-firewall and sys-net (`ns` qubes), in a small
internet made of namespaces the test creates (net_fixtures.py): one bulkheadd, one VM
qube `vmq` shared by the tests of a module (a TCG boot takes seconds). The internet
also speaks IPv6 and sys-net has Qubes' `ipv6` feature, so every qube behind it (the VM
too) has routed IPv6 besides IPv4 (docs/network.md, "IPv6")."""
import json
import pathlib
import sys
import time

import pytest

from admin_fixtures import state_of, wait_state
from net_fixtures import Internet, Net
from vm_fixtures import vm_premises, start

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "attack"))
from test_net_ipv6 import WEB6, OTHER6, INET6, WEB6_SERVER  # noqa: E402,F401

VM = "vmq"


def add_ipv6(i):
    """IPv6 in the test internet, as tests/attack/test_net_ipv6.py sets it up."""
    b = [l for l in json.loads(i.exec(i.srv, "ip", "-j", "link").stdout) if l["ifname"] != "lo"][0]["ifname"]
    a = [l for l in json.loads(i.exec(i.inet, "ip", "-j", "link").stdout) if l["ifname"].startswith("bha")][0]["ifname"]
    i.exec(i.srv, "sysctl", "-qw", f"net.ipv6.conf.{b}.disable_ipv6=0", check=True)
    i.exec(i.inet, "sysctl", "-qw", f"net.ipv6.conf.{a}.disable_ipv6=0", check=True)
    for ip in (WEB6, OTHER6):
        i.exec(i.srv, "ip", "-6", "addr", "add", ip + "/64", "dev", b, "nodad", check=True)
    i.exec(i.inet, "ip", "-6", "addr", "add", INET6 + "/64", "dev", a, "nodad", check=True)
    i.spawn(i.srv, [sys.executable, "-c", WEB6_SERVER, WEB6, OTHER6])
    for ip in (WEB6, OTHER6):
        for _ in range(1200):
            if i.exec(i.srv, sys.executable, "-c", f"import socket; socket.create_connection(('{ip}', 8080), 1)").returncode == 0:
                break
            time.sleep(0.05)


class VMNet:
    def __init__(self, tmp):
        self.internet = Internet()
        try:
            add_ipv6(self.internet)
            self.net = Net(tmp, self.internet)
        except BaseException:
            self.internet.close()
            raise
        d = self.net.d
        # sys-net and sys-firewall autostarted without the feature: it takes effect at
        # their next start (as in Qubes)
        for q in ("sys-firewall", "sys-net"):
            d.call("admin.vm.Kill", q)
            wait_state(d, q, "Halted")
        d.call("admin.vm.feature.Set+ipv6", "sys-net", "1")
        d.call("admin.vm.Create.AppVM+host", payload=f"name={VM} label=red")
        d.call("admin.vm.property.Set+virt_mode", VM, "pvh")
        d.call("admin.vm.property.Set+memory", VM, "300")
        d.call("admin.vm.property.Set+qrexec_timeout", VM, "240")  # a TCG boot under load

    def close(self):
        try:
            self.net.close()
        finally:
            self.internet.close()


@pytest.fixture(scope="module")
def vmnet(tmp_path_factory):
    why = vm_premises()
    if why:
        pytest.skip(why)
    env = VMNet(tmp_path_factory.mktemp("vmnet"))
    yield env
    env.close()


def booted(vmnet):
    n = vmnet.net
    if state_of(n.d, VM) != "Running":
        start(n.d, VM)  # starts sys-firewall and sys-net first
    return n


def netns_of(n, qube):
    return n.d.runtime / "net" / f"q{n.prop(qube, 'qid')}"
