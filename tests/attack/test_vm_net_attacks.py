"""Attacks on the qubes' network from inside a vm-engine qube, as its root. Unlike an
`ns` qube's root, a guest's root owns its kernel: it can change its address and MAC,
open packet sockets and write any frame. What it sends leaves by the tap in its
host-owned namespace, wired straight to its link (src/net/guestnic.c), so the netvm's
anti-spoofing, isolation and firewall rules on that link must stop it exactly as they
stop a subverted `ns` qube. Each attack has a positive control proving it ran.
One TCG boot for the module (tests/integration/vm_net_fixtures.py)."""
import pathlib as _pl
import subprocess
import sys as _sys
import time

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from net_fixtures import WEB, OTHER, HOST  # noqa: E402
from admin_fixtures import BUILD  # noqa: E402
from vm_net_fixtures import vmnet, booted, VM  # noqa: E402,F401
from test_net_isolation import FRAME, SINK  # noqa: E402  (the same frames as for ns qubes)
from test_net_ipv6 import FRAME6, SINK6  # noqa: E402


def guest_root(n, cmd, stdin=None, timeout=120):
    return subprocess.run([str(BUILD / "src/qrexec/qvm-run"), "-p", "-u", "root", VM, cmd], env=n.d.env,
                          capture_output=True, text=True, input=stdin, timeout=timeout)


def sink(n, log):
    p = n.internet.spawn(n.internet.srv, [_sys.executable, "-c", SINK, str(log)])
    for _ in range(1200):  # the sink creates its log once it listens
        if log.exists():
            break
        time.sleep(0.05)
    return p


def test_guest_root_forged_frames_are_dropped_by_the_netvm(vmnet, tmp_path):
    n = booted(vmnet)
    r = guest_root(n, "id -u; python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)' && echo packet-ok")
    assert r.stdout.split() == ["0", "packet-ok"], r.stdout + r.stderr  # really root, with packet sockets
    log = tmp_path / "sink.log"
    p = sink(n, log)
    try:
        mine, mac = n.prop(VM, "ip"), n.prop(VM, "mac")
        other = n.prop("work", "ip")  # a neighbour behind the same netvm
        # the genuine frame last: once it is in, any forged one sent before would be too
        for smac, sip, tag in ((mac, other, "forged-ip"), ("00:16:3e:11:22:33", mine, "forged-mac"),
                               (mac, HOST, "forged-host-ip"), ("00:16:3e:11:22:33", other, "forged-both"),
                               (mac, mine, "genuine")):
            r = guest_root(n, f"python3 - {smac} {sip} {tag}", stdin=FRAME)
            assert r.returncode == 0, r.stderr
        for _ in range(600):
            if "genuine" in log.read_text().split():
                break
            time.sleep(0.1)
        time.sleep(0.3)
        got = log.read_text().split()
        assert "genuine" in got  # positive control: hand-made frames from the guest do arrive
        assert not {"forged-ip", "forged-mac", "forged-host-ip", "forged-both"} & set(got), got
    finally:
        p.kill()


def test_guest_root_forged_ipv6_frames_are_dropped_by_the_netvm(vmnet, tmp_path):
    """The VM has routed IPv6 (sys-net's `ipv6` feature): its IPv6 sources are checked
    like its IPv4 ones."""
    n = booted(vmnet)
    log = tmp_path / "sink6.log"
    p = n.internet.spawn(n.internet.srv, [_sys.executable, "-c", SINK6, str(log)])
    try:
        for _ in range(1200):
            if log.exists():
                break
            time.sleep(0.05)
        mine, mac = n.prop(VM, "ip6"), n.prop(VM, "mac")
        assert mine
        other = n.prop("sys-firewall", "ip6")  # the netvm's own address
        gw = "fe:ff:ff:ff:ff:ff"
        for smac, sip, tag in ((mac, other, "forged-ip6"), (mac, "fe80::1", "forged-linklocal"),
                               ("00:16:3e:11:22:33", mine, "forged-mac6"), (mac, mine, "genuine6")):
            r = guest_root(n, f"python3 - {gw} {smac} {sip} {tag}", stdin=FRAME6)
            assert r.returncode == 0, r.stderr
        for _ in range(600):
            if "genuine6" in log.read_text().split():
                break
            time.sleep(0.1)
        time.sleep(0.3)
        got = log.read_text().split()
        assert "genuine6" in got  # positive control
        assert not {"forged-ip6", "forged-linklocal", "forged-mac6"} & set(got), got
    finally:
        p.kill()


def test_guest_root_changing_its_mac_or_address_gets_nowhere(vmnet):
    n = booted(vmnet)
    mine = n.prop(VM, "ip")
    other = n.prop("work", "ip")
    url = f"http://{WEB}:8080/"
    # each change is undone in the same command, so a failure leaves the guest usable;
    # arp_notify: the restored MAC is announced to the netvm at once (the forged one
    # was answered to its ARP too: ARP is not IP, and only the guest's own link is
    # affected by that)
    r = guest_root(n,
                   "sysctl -qw net.ipv4.conf.eth0.arp_notify=1; "
                   f"curl -s -m 10 -o /dev/null {url} && echo before-ok; "
                   f"ip addr add {other}/32 dev eth0; "
                   f"curl -s -m 3 -o /dev/null --interface {other} {url} && echo address-got-through; "
                   f"ip addr del {other}/32 dev eth0; "
                   "ip link set eth0 address 00:16:3e:11:22:33; "
                   f"curl -s -m 3 -o /dev/null {url} && echo mac-got-through; "
                   f"ip link set eth0 address {n.prop(VM, 'mac')}; "
                   f"for i in 1 2 3 4; do curl -s -m 5 -o /dev/null {url} && echo after-ok && break; done; "
                   "ip -4 -o addr show dev eth0")
    out = r.stdout
    assert "before-ok" in out and "after-ok" in out, out + r.stderr  # positive controls
    assert "mac-got-through" not in out and "address-got-through" not in out, out
    assert f"inet {mine}/32" in out


def test_guest_reaches_no_neighbour_netvm_or_host(vmnet):
    n = booted(vmnet)
    fw = n.prop("sys-firewall", "ip")
    work = n.prop("work", "ip")
    n.d.call("admin.vm.Start", "work")
    # a service in the neighbour ns qube and one in sys-firewall (both on every address)
    srv = "python3 -c \"import socket; s=socket.socket(); s.setsockopt(1,2,1); s.bind(('0.0.0.0',8000)); s.listen(); " \
          "[c.close() for c, _ in iter(s.accept, None)]\" >/dev/null 2>&1 &"
    n.run("work", srv)
    n.run("sys-firewall", srv, user="root")
    time.sleep(1)
    probe = "python3 -c \"import socket,sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 3); print('open', sys.argv[1], sys.argv[2])\" {} {} 2>/dev/null; "
    r = guest_root(n, probe.format(WEB, 8080) + probe.format(work, 8000) + probe.format(fw, 8000) +
                   probe.format(HOST, 9000) + probe.format(OTHER, 8080))
    out = r.stdout
    assert f"open {WEB} 8080" in out and f"open {OTHER} 8080" in out, out + r.stderr  # positive controls
    for target in (f"{work} 8000", f"{fw} 8000", f"{HOST} 9000"):
        assert f"open {target}" not in out, out
    # the services were really listening: reachable from inside their own qubes
    assert "open" in n.run("work", probe.format("127.0.0.1", 8000)).stdout
    assert "open" in n.run("sys-firewall", probe.format("127.0.0.1", 8000)).stdout
