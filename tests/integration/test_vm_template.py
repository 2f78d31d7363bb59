"""A template in a VM (virt_mode pvh): its own root tree, shared writable with the guest
by a virtiofsd that runs as the qube's root in the qube's user namespace. What the
template changes stays, and its app qubes see it at their next start in either engine
(an `ns` qube through the tree itself, a VM qube through the erofs image rebuilt from
it). KVM where /dev/kvm opens, TCG otherwise; one daemon for the module, tests in
the order written."""
import fcntl
import os
import pathlib
import struct
import subprocess

import pytest

from admin_fixtures import raw_call, parse_reply, state_of, qvm_run
from tools_fixtures import TOOLS
from vm_fixtures import SLOW_BRIDGE, VMEnv, start, vm_leftovers, vm_premises, wait_for


class Env(VMEnv):
    """vm_fixtures' daemon (template `host`, ns qube `n`, VM qube `v`) with the template
    itself set to run as a VM, as `v` is."""

    def __init__(self, tmp):
        super().__init__(tmp)
        d = self.d
        d.call("admin.vm.property.Set+virt_mode", "host", "pvh")
        d.call("admin.vm.property.Set+memory", "host", "300")
        d.call("admin.vm.property.Set+qrexec_timeout", "host", "240")
        d.call("admin.vm.property.Set+kernelopts", "host", SLOW_BRIDGE)
        self.tree = d.root / "pools/default/qubes/host/root"


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    why = vm_premises()
    if why:
        pytest.skip(why)
    e = Env(tmp_path_factory.mktemp("vmtpl"))
    yield e
    e.close()


def shutdown(d, name):
    assert parse_reply(raw_call(d.sock, f"admin.vm.Shutdown+wait dom0 name {name}".encode() + b"\0",
                                timeout=120)) == ""
    assert state_of(d, name) == "Halted"


def virtiofsd_pids(d, name):
    rt = d.runtime / "qubes" / name
    out = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes()
        except OSError:
            continue
        if cmd.startswith(b"virtiofsd\0") and str(rt).encode() in cmd:  # source=<rt>/vfs-root
            out.append(int(p.name))
    return out


def test_template_runs_in_a_vm_and_keeps_its_changes(env):
    d = env.d
    assert start(d, "host") == ""
    r = qvm_run(d, "-p", "-u", "root", "host",
                "uname -r; grep -o 'bh.root=[a-z]*' /proc/cmdline; echo kept > /etc/bh-from-vm; "
                "mkdir -p /opt/bh && echo user-file > /opt/bh/f && chown 1000:1000 /opt/bh/f; sync")
    assert r.returncode == 0, r.stderr
    kernel, root = r.stdout.decode().split()
    assert kernel != os.uname().release  # the guest's kernel: a VM
    assert root == "bh.root=virtiofs"
    shutdown(d, "host")
    assert vm_leftovers(d, "host") == []
    # on the host, in the template's tree (the image mounted at root/), with the tree's
    # own IDs: the guest's root is 0 there and its user 1000, never a host UID
    assert (env.tree / "etc/bh-from-vm").read_text() == "kept\n"
    st = (env.tree / "opt/bh/f").stat()
    assert (st.st_uid, st.st_gid) == (1000, 1000)
    assert (env.tree / "etc/bh-from-vm").stat().st_uid == 0


def test_app_qubes_of_both_engines_see_the_change(env):
    d = env.d
    r = qvm_run(d, "-p", "n", "cat /etc/bh-from-vm")  # ns: the tree under an overlay
    assert (r.returncode, r.stdout) == (0, b"kept\n"), r.stderr
    assert start(d, "v") == ""
    r = qvm_run(d, "-p", "v", "cat /etc/bh-from-vm; stat -c %u /opt/bh/f")  # vm: the erofs image
    assert (r.returncode, r.stdout) == (0, b"kept\n1000\n"), r.stderr
    for q in ("n", "v"):
        shutdown(d, q)


def test_virtiofsd_is_the_qubes_root_not_the_hosts(env):
    """The writable share's server parses the guest's requests: it runs as the qube's
    own host UID in the qube's user namespace, so a guest that takes it over holds what
    an `ns` template's root holds. The guest's root cannot give a file an ID outside the
    qube's range nor make a device node."""
    d = env.d
    assert start(d, "host") == ""
    pids = virtiofsd_pids(d, "host")
    assert pids, "no virtiofsd for the template's root"
    me = os.readlink("/proc/self/ns/user")
    for pid in pids:
        status = dict(line.split(":\t", 1) for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines()
                      if ":\t" in line)
        uids = {int(u) for u in status["Uid"].split()}
        assert 0 not in uids, status["Uid"]
        assert os.readlink(f"/proc/{pid}/ns/user") != me
        # owned by host root, not by the qube's UID (QEMU's and the bridge's): as owner
        # they would hold every capability over virtiofsd's namespace
        fd = os.open(f"/proc/{pid}/ns/user", os.O_RDONLY)
        try:
            owner = struct.unpack("I", fcntl.ioctl(fd, 0xb704, bytes(4)))[0]  # NS_GET_OWNER_UID
        finally:
            os.close(fd)
        assert owner == 0, owner
    r = qvm_run(d, "-p", "-u", "root", "host",
                "touch /etc/bh-far; chown 70000 /etc/bh-far && echo chown-ok; "
                "mknod /etc/bh-null c 1 3 && echo mknod-ok; ls -ln /etc/bh-far | cut -d' ' -f3; true")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == [b"0"], r.stdout  # neither worked; the file is the guest root's
    assert not (env.tree / "etc/bh-null").exists()
    assert (env.tree / "etc/bh-far").stat().st_uid == 0


def test_kill_of_a_template_vm_leaves_nothing(env):
    d = env.d
    d.call("admin.vm.Kill", "host")
    assert wait_for(lambda: state_of(d, "host") == "Halted", 60)
    assert vm_leftovers(d, "host") == []
    assert virtiofsd_pids(d, "host") == []


def test_standalone_switches_engines_and_keeps_root_and_private(env):
    """A standalone made from template `host` (its own copy of the tree): what it writes
    to its root and its home in a VM is there when it runs in namespaces, and the
    template's tree does not have it."""
    d = env.d
    r = subprocess.run([str(TOOLS / "qvm-create"), "--standalone", "-t", "host", "-l", "purple", "sa"],
                       env=dict(os.environ, BULKHEAD_SOCKET=d.sock), capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr  # a clone of the template's root, as Qubes' qvm-create
    for k, v in (("virt_mode", "pvh"), ("memory", "300"), ("qrexec_timeout", "240")):
        d.call(f"admin.vm.property.Set+{k}", "sa", v)
    assert start(d, "sa") == ""
    r = qvm_run(d, "-p", "-u", "root", "sa", "echo vm-root > /etc/bh-sa; echo vm-home > /home/user/bh-sa; sync")
    assert r.returncode == 0, r.stderr
    shutdown(d, "sa")
    d.call("admin.vm.property.Set+virt_mode", "sa", "ns")
    r = qvm_run(d, "-p", "sa", "cat /etc/bh-sa /home/user/bh-sa; uname -r")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().splitlines() == ["vm-root", "vm-home", os.uname().release]
    assert not (env.tree / "etc/bh-sa").exists()
    shutdown(d, "sa")
    assert vm_leftovers(d, "sa") == []
