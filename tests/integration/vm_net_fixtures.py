"""A vm-engine qube (`pvh`) behind sys-firewall and sys-net (`ns` qubes), in a small
internet made of namespaces the test creates (net_fixtures.py): one bulkheadd, one VM
qube `vmq` shared by the tests of a module (a TCG boot takes seconds)."""
import pytest

from admin_fixtures import state_of
from net_fixtures import Internet, Net
from vm_fixtures import vm_premises, start

VM = "vmq"


class VMNet:
    def __init__(self, tmp):
        self.internet = Internet()
        try:
            self.net = Net(tmp, self.internet)
        except BaseException:
            self.internet.close()
            raise
        d = self.net.d
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
