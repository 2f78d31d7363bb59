"""Routed IPv6 as Qubes does it (the `ipv6` feature), in a small internet made of
namespaces this module creates (tests/integration/net_fixtures.py) that speaks IPv6 too:

    work (ipv6 via sys-net's feature) ── sys-firewall ── sys-net ══ uplink (a ULA /64,
    personal (ipv6 feature '' = off) ─┘                    NAT66 in [inet]) ══ [inet]
                                                       2001:db8:80::1 │
                                                              [srv] 2001:db8:80::80, ::81

Checked: the properties as Qubes reports them; a qube with the feature reaches an IPv6
server through both netvms; one without it cannot (positive control: it reaches the
IPv4 server); `dst6` rules hold; a forged IPv6 source (another qube's, link-local, or
any address but the qube's ip6) is dropped even as a hand-made frame beneath the
qube's limits, while the same frame with the qube's own source arrives. The IPv4-only
case is tests/attack/test_net_isolation.py::test_no_ipv6_around_the_firewall."""
import json
import pathlib as _pl
import subprocess
import sys as _sys
import textwrap
import time

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from net_fixtures import Internet, Net, WEB, sink, words_received  # noqa: E402
from admin_fixtures import wait_state  # noqa: E402

WEB6, OTHER6, INET6 = "2001:db8:80::80", "2001:db8:80::81", "2001:db8:80::1"
PREFIX = "fd09:24ef:4179::"

WEB6_SERVER = textwrap.dedent(r'''
    import http.server, socket, sys, threading
    class S(http.server.ThreadingHTTPServer):
        address_family = socket.AF_INET6
    class H(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            b = ("hello over ipv6 from %s\n" % self.client_address[0]).encode()
            self.send_response(200); self.send_header("Content-Length", str(len(b))); self.end_headers()
            self.wfile.write(b)
        def log_message(self, *a): pass
    for ip in sys.argv[1:]:
        threading.Thread(target=S((ip, 8080), H).serve_forever).start()
''')

SINK6 = textwrap.dedent(r'''
    import socket, sys
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s.bind(("2001:db8:80::80", 5556))
    with open(sys.argv[1], "ab", buffering=0) as f:
        while True:
            d, a = s.recvfrom(2048)
            f.write(d + b"\n")
''')

# A UDP datagram to [2001:db8:80::80]:5556 as a hand-made frame from eth0 of the
# namespace it runs in: argv = dst_mac src_mac src_ip6 payload.
FRAME6 = textwrap.dedent(r'''
    import socket, struct, sys
    dmac, smac, sip, payload = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].encode()
    src, dst = socket.inet_pton(socket.AF_INET6, sip), socket.inet_pton(socket.AF_INET6, "2001:db8:80::80")
    udp = struct.pack("!HHHH", 40000, 5556, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17) + udp
    if len(pseudo) % 2: pseudo += b"\0"
    c = sum(struct.unpack("!%dH" % (len(pseudo) // 2), pseudo)); c = (c >> 16) + (c & 0xffff); c += c >> 16
    udp = udp[:6] + struct.pack("!H", (~c & 0xffff) or 0xffff) + udp[8:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + src + dst
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("eth0", 0))
    s.send(bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", "")) + b"\x86\xdd" + ip6 + udp)
''')


@pytest.fixture(scope="module")
def internet6():
    i = Internet()
    try:
        links = json.loads(i.exec(i.srv, "ip", "-j", "link").stdout)
        b = [l for l in links if l["ifname"] != "lo"][0]["ifname"]
        links = json.loads(i.exec(i.inet, "ip", "-j", "link").stdout)
        a = [l for l in links if l["ifname"].startswith("bha")][0]["ifname"]
        i.exec(i.srv, "sysctl", "-qw", f"net.ipv6.conf.{b}.disable_ipv6=0", check=True)
        i.exec(i.inet, "sysctl", "-qw", f"net.ipv6.conf.{a}.disable_ipv6=0", check=True)
        for ip in (WEB6, OTHER6):
            i.exec(i.srv, "ip", "-6", "addr", "add", ip + "/64", "dev", b, "nodad", check=True)
        i.exec(i.inet, "ip", "-6", "addr", "add", INET6 + "/64", "dev", a, "nodad", check=True)
        i.spawn(i.srv, [_sys.executable, "-c", WEB6_SERVER, WEB6, OTHER6])
        for ip in (WEB6, OTHER6):
            for _ in range(1200):
                if i.exec(i.srv, _sys.executable, "-c",
                          f"import socket; socket.create_connection(('{ip}', 8080), 1)").returncode == 0:
                    break
                time.sleep(0.05)
        yield i
    finally:
        i.close()


@pytest.fixture(scope="module")
def net6(internet6, tmp_path_factory):
    n = Net(tmp_path_factory.mktemp("net6"), internet6)
    try:
        # sys-net and sys-firewall autostarted without the feature: it takes effect
        # at the next start (as in Qubes)
        for q in ("sys-firewall", "sys-net"):
            n.d.call("admin.vm.Kill", q)
            wait_state(n.d, q, "Halted")
        n.d.call("admin.vm.feature.Set+ipv6", "sys-net", "1")
        n.d.call("admin.vm.feature.Set+ipv6", "personal", "")  # explicitly off
        for q in ("work", "personal"):
            n.d.call("admin.vm.Start", q)
        yield n
    finally:
        n.close()


def qid(net, q):
    return int(net.prop(q, "qid"))


def curl6(net, qube, ip, t=3):
    r = net.run(qube, f"curl -sS -g -m {t} http://[{ip}]:8080/")
    return r.returncode == 0 and "hello over ipv6" in r.stdout


def test_properties_as_qubes(net6):
    w, fw, sn = qid(net6, "work"), qid(net6, "sys-firewall"), qid(net6, "sys-net")
    assert net6.prop("work", "ip6") == f"{PREFIX}a89:{w:x}"
    assert net6.prop("work", "visible_ip6") == f"{PREFIX}a89:{w:x}"
    # the feature is inherited along the netvm chain: sys-firewall has it through sys-net
    assert net6.prop("sys-firewall", "gateway6") == f"{PREFIX}a89:{fw:x}"
    assert net6.prop("sys-net", "gateway6") == f"{PREFIX}a89:{sn:x}"
    assert net6.prop("work", "visible_gateway6") == f"{PREFIX}a89:{fw:x}"
    assert net6.prop("work", "gateway6") == ""  # not a netvm
    # '' switches it off for that qube (Qubes' false); offline qubes have none
    for q in ("personal", "vault"):
        assert net6.prop(q, "ip6") == "" and net6.prop(q, "visible_gateway6") == "", q
    # and the qube has exactly that
    r = net6.run("work", "ip -6 -o addr show dev eth0 scope global; ip -6 route")
    assert f"inet6 {PREFIX}a89:{w:x}/128" in r.stdout, r.stdout
    assert f"default via {PREFIX}a89:{fw:x} dev eth0" in r.stdout, r.stdout
    r = net6.run("personal", "cat /proc/sys/net/ipv6/conf/eth0/disable_ipv6")
    assert r.stdout.strip() == "1", r.stdout


def test_qube_with_feature_reaches_ipv6_server(net6):
    r = net6.run("work", f"id -u; curl -sS -g -m 5 http://[{WEB6}]:8080/; ping -6 -c1 -W3 {OTHER6}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.splitlines()[0] == "1000"  # as the normal user
    # NAT at each hop, as Qubes' netvms masquerade IPv6: the server sees the uplink peer
    assert f"hello over ipv6 from {INET6}" in r.stdout
    assert "1 received" in r.stdout


def test_qube_without_feature_has_no_ipv6(net6):
    assert net6.curl("personal", f"http://{WEB}:8080/")  # positive control: it is online
    assert not curl6(net6, "personal", WEB6)
    r = net6.run("personal", "ip -6 addr add fd09:24ef:4179::a89:77/128 dev eth0; echo addr=$?; "
                 "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6; echo enable=$?; id -u", user="root")
    assert r.stdout.splitlines()[-1] == "0", r.stdout
    assert "addr=0" not in r.stdout and "enable=0" not in r.stdout, r.stdout
    assert curl6(net6, "work", WEB6)  # and the qube with it, at the same time


def test_dst6_rules_hold(net6):
    try:
        assert curl6(net6, "work", OTHER6)
        assert net6.tool("qvm-firewall", "work", "add", "--before", "0", "action=drop",
                         f"dst6={OTHER6}").returncode == 0
        assert not curl6(net6, "work", OTHER6)
        assert curl6(net6, "work", WEB6)
        # IPv4-only allow list: IPv6 falls to the final drop (Qubes writes one rule set
        # per family); the IPv4 path still works
        net6.d.call("admin.vm.firewall.Set", "work", f"action=accept dst4={WEB}\naction=drop\n")
        assert not curl6(net6, "work", WEB6)
        assert net6.curl("work", f"http://{WEB}:8080/")
        net6.d.call("admin.vm.firewall.Set", "work", f"action=accept dst6={WEB6}/128\naction=drop\n")
        assert curl6(net6, "work", WEB6)
        assert not curl6(net6, "work", OTHER6)
    finally:
        net6.d.call("admin.vm.firewall.Set", "work", "action=accept\n")


def test_compromised_netvm_root_cannot_lift_ipv6_rules(net6):
    """Root in sys-firewall can change none of the IPv6 setup its clients' rules and
    anti-spoofing rest on; a dst6 rule keeps holding."""
    net6.d.call("admin.vm.firewall.Set", "work", f"action=drop dst6={OTHER6}\naction=accept\n")
    try:
        assert curl6(net6, "work", WEB6) and not curl6(net6, "work", OTHER6)
        r = net6.run("sys-firewall", "nft flush ruleset; echo nft=$?; ip -6 route flush table main; echo route=$?; "
                     "ip -6 addr flush dev eth0; echo addr=$?; ip -6 neigh flush all; echo neigh=$?; "
                     "echo 1 > /proc/sys/net/ipv6/conf/all/disable_ipv6; echo dis=$?; "
                     "echo 0 > /proc/sys/net/ipv6/conf/all/forwarding; echo fwd=$?; id -u", user="root")
        out = r.stdout
        assert out.splitlines()[-1] == "0", out  # positive control: it ran, as root
        for k in ("nft", "route", "addr", "dis", "fwd"):
            assert f"{k}=0" not in out and f"{k}=" in out, (k, out)
        assert curl6(net6, "work", WEB6) and not curl6(net6, "work", OTHER6)
    finally:
        net6.d.call("admin.vm.firewall.Set", "work", "action=accept\n")


def test_dsthost_aaaa_becomes_dst6(net6):
    """dsthost resolves both A and AAAA (the test's DNS: dual.test = 198.51.100.81 and
    2001:db8:80::81; six.test = 2001:db8:80::80 only)."""
    from net_fixtures import OTHER
    try:
        net6.d.call("admin.vm.firewall.Set", "work", "action=drop dsthost=dual.test\naction=accept\n")
        assert not curl6(net6, "work", OTHER6) and not net6.curl("work", f"http://{OTHER}:8080/")
        assert curl6(net6, "work", WEB6) and net6.curl("work", f"http://{WEB}:8080/")  # the rest passes
        # a name with AAAA only: accepted over IPv6; IPv4 has no address for it, and
        # (as Qubes blocks the family it cannot resolve) all IPv4 is refused
        net6.d.call("admin.vm.firewall.Set", "work", "action=accept dsthost=six.test\naction=drop\n")
        assert curl6(net6, "work", WEB6)
        assert not curl6(net6, "work", OTHER6)
        assert not net6.curl("work", f"http://{WEB}:8080/")
    finally:
        net6.d.call("admin.vm.firewall.Set", "work", "action=accept\n")


def test_forged_ipv6_source_dropped(net6, internet6, tmp_path):
    log = tmp_path / "sink6.log"
    with sink(internet6, SINK6, log):
        time.sleep(0.2)
        ns = net6.d.runtime / "net" / f"q{qid(net6, 'work')}"
        mac = net6.prop("work", "mac")
        own = net6.prop("work", "ip6")
        forged = {
            "other-qube": f"{PREFIX}a89:{qid(net6, 'personal'):x}",
            "netvm": net6.prop("sys-firewall", "gateway6"),
            "linklocal": "fe80::216:3eff:fe5e:6c00",
            "outside": "2001:db8:80::99",
        }
        # as the qube's root: no other address can be taken
        r = net6.run("work", f"ip -6 addr add {forged['other-qube']}/128 dev eth0; echo addr=$?; id -u", user="root")
        assert r.stdout.splitlines()[-1] == "0" and "addr=0" not in r.stdout, r.stdout
        # beneath its limits: hand-made frames from its eth0 (host root in its namespace)
        for name, src in forged.items():
            subprocess.run(["nsenter", f"--net={ns}", _sys.executable, "-c", FRAME6, "fe:ff:ff:ff:ff:ff", mac, src,
                            "forged-" + name], check=True, timeout=30)
        # positive control: the same frame with the qube's own source arrives
        subprocess.run(["nsenter", f"--net={ns}", _sys.executable, "-c", FRAME6, "fe:ff:ff:ff:ff:ff", mac, own,
                        "genuine"], check=True, timeout=30)
        got = words_received(log, "genuine", settle=0.3)
        assert "genuine" in got, got
        assert not [g for g in got if g.startswith("forged")], got
