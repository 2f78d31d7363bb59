"""Attacks on the qubes' network from inside qubes (as their root), each with a
positive control proving the attempt really ran. The network is a small internet made
of namespaces this module creates (tests/integration/net_fixtures.py)."""
import pathlib as _pl
import subprocess
import sys as _sys
import textwrap

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from net_fixtures import net, internet, sink, words_received, WEB, OTHER, HOST, LAN, CONNECT_ECHO, WAIT_FORWARDER  # noqa: E402,F401

SINK = textwrap.dedent(r'''
    import socket, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("198.51.100.80", 5555))
    with open(sys.argv[1], "ab", buffering=0) as f:
        while True:
            d, a = s.recvfrom(2048)
            f.write(d + b"\n")
''')

# Sends UDP datagrams to WEB:5555 as hand-made Ethernet frames from eth0 of the
# namespace it runs in: argv = src_mac src_ip payload.
FRAME = textwrap.dedent(r'''
    import socket, struct, sys
    def csum(b):
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        s = (s >> 16) + (s & 0xffff); s += s >> 16
        return ~s & 0xffff
    smac, sip, payload = sys.argv[1], sys.argv[2], sys.argv[3].encode()
    udp = struct.pack("!HHHH", 40000, 5555, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                     socket.inet_aton(sip), socket.inet_aton("198.51.100.80"))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    eth = bytes.fromhex("feffffffffff") + bytes.fromhex(smac.replace(":", "")) + b"\x08\x00"
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    s.send(eth + ip + udp)
''')


# waits (up to 10 s, on a loaded machine) until a server started in the background answers
WAIT_UP = "for i in $(seq 100); do curl -s -o /dev/null -m 1 http://{ip}:{port}/ && break; sleep 0.1; done"


def qid(net, q):
    return int(net.d.call("admin.vm.property.Get+qid", q).split()[-1])


def test_qube_root_cannot_change_or_forge_its_identity(net):
    r = net.run("work", "id -u; "
                "ip addr add 10.137.0.250/32 dev eth0; echo addr=$?; "
                "ip link set eth0 address 00:16:3e:00:00:01; echo mac=$?; "
                "ip route add 198.51.100.0/24 dev eth0; echo route=$?; "
                "python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'; echo packet=$?; "
                "python3 -c 'import socket; socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)'; echo raw=$?; "
                "ip -o link show eth0", user="root")
    out = r.stdout
    assert out.splitlines()[0] == "0"  # positive control: really the qube's root
    for k in ("addr", "mac", "route", "packet", "raw"):
        assert f"{k}=0" not in out and f"{k}=" in out, out
    assert "00:16:3e:5e:6c:00" in out and "10.137.0.250" not in net.run("work", "ip -o addr").stdout
    # and the qube still works (the attempts did not just break its network)
    assert net.curl("work", f"http://{WEB}:8080/")


def test_forged_address_or_mac_dropped_even_if_the_qube_could_send_them(net, internet, tmp_path):
    """Beyond the missing capabilities: even a qube whose namespace is fully subverted
    (simulated here by host root sending from inside it) cannot get a frame with another
    address or MAC past its netvm."""
    assert net.run("work", "true").returncode == 0
    log = tmp_path / "sink.log"
    with sink(internet, SINK, log):
        ns = net.d.runtime / "net" / f"q{qid(net, 'work')}"
        mine, other = net.prop("work", "ip"), net.prop("personal", "ip")
        mac = "00:16:3e:5e:6c:00"
        # the genuine frame last: once it is in, any forged one sent before would be too
        for smac, sip, tag in ((mac, other, "forged-ip"), ("00:16:3e:11:22:33", mine, "forged-mac"),
                               (mac, "198.51.100.1", "forged-host-ip"), (mac, mine, "genuine")):
            subprocess.run(["nsenter", f"--net={ns}", _sys.executable, "-c", FRAME, smac, sip, tag], check=True, timeout=30)
        got = words_received(log, "genuine", settle=0.2)
        assert "genuine" in got  # positive control: hand-made frames do get through
        assert "forged-ip" not in got and "forged-mac" not in got and "forged-host-ip" not in got


def test_no_qube_to_qube(net):
    pip = net.prop("personal", "ip")
    net.run("personal", "nohup python3 -m http.server 8000 >/dev/null 2>&1 & " + WAIT_UP.format(ip=pip, port=8000))
    try:
        # positive control: the service answers at that address
        assert net.run("personal", f"curl -sS -m 2 -o /dev/null -w '%{{http_code}}' http://{pip}:8000/").stdout == "200"
        r = net.run("work", f"curl -sS -m 2 http://{pip}:8000/; echo rc=$?")
        assert "rc=0" not in r.stdout
        # nor from the netvm, as root
        r = net.run("sys-firewall", f"curl -sS -m 2 http://{pip}:8000/; echo rc=$?", user="root")
        assert "rc=0" not in r.stdout
    finally:
        net.run("personal", "pkill -f 'http.server 8000'")


def test_no_qube_to_netvm_services(net):
    for netvm in ("sys-firewall", "sys-net"):
        gw = net.prop(netvm, "ip")
        net.run(netvm, "nohup python3 -m http.server 8001 >/dev/null 2>&1 & " + WAIT_UP.format(ip=gw, port=8001), user="root")
        try:
            assert net.run(netvm, f"curl -sS -m 2 -o /dev/null -w '%{{http_code}}' http://{gw}:8001/").stdout == "200"
            r = net.run("work", f"curl -sS -m 2 http://{gw}:8001/; echo rc=$?")
            assert "rc=0" not in r.stdout, netvm
        finally:
            net.run(netvm, "pkill -f 'http.server 8001'", user="root")


def test_no_qube_to_host(net, internet):
    # positive control: the host's service answers from the test's own network
    r = internet.exec(internet.srv, _sys.executable, "-c",
                      f"import socket; print(socket.create_connection(('{HOST}', 9000), 2).recv(100))")
    assert "host-secret" in r.stdout
    for q in ("work", "sys-net"):
        r = net.run(q, f"python3 -c \"import socket; print(socket.create_connection(('{HOST}', 9000), 2).recv(100))\"; echo rc=$?",
                    user="root")
        assert "host-secret" not in r.stdout and "rc=0" not in r.stdout, q
    # nor the uplink peer's own address
    peer = internet.exec(internet.inet, "ip", "-4", "-o", "addr").stdout
    peer_ip = [l.split()[3].split("/")[0] for l in peer.splitlines() if "bh" in l.split()[1]][0]
    r = net.run("sys-net", f"python3 -c \"import socket; socket.create_connection(('{peer_ip}', 9000), 2)\"; echo rc=$?", user="root")
    assert "rc=0" not in r.stdout


def test_updates_proxy_reaches_repositories_only(net, internet):
    """From a template (root in it), the updates proxy in sys-net is no way to the
    uplink's other services or to private addresses: CONNECT only to 443/873 (Qubes'
    tinyproxy ConnectPort list), and no private, shared or loopback destination, also
    when a name resolves there (checked after resolution)."""
    peer = internet.exec(internet.inet, "ip", "-4", "-o", "addr").stdout
    peer_ip = [l.split()[3].split("/")[0] for l in peer.splitlines() if l.split()[3].startswith("100.")][0]
    # positive control: CONNECT to a repository's port carries bytes both ways
    r = net.run("host", WAIT_FORWARDER + CONNECT_ECHO.format(dst="web.test:443"), user="root", timeout=120)
    assert "HTTP/1.1 200 Connection established" in r.stdout and "ping-through-proxy" in r.stdout, r.stdout + r.stderr
    # other ports: refused before any connection (the host service, the echo port)
    for dst in (f"{HOST}:9000", f"{WEB}:7", "web.test:8080"):
        r = net.run("host", CONNECT_ECHO.format(dst=dst), user="root", timeout=60)
        assert "403" in r.stdout and "ping" not in r.stdout, (dst, r.stdout)
    # private destinations on an allowed port, by address and by a name leading there;
    # positive control: that private address is reachable through sys-net otherwise
    r = net.run("work", f"python3 -c \"import socket; s=socket.create_connection(('{LAN}', 443), 5); "
                "s.sendall(b'lan\\n'); print(s.recv(10).decode())\"")
    assert "lan" in r.stdout, r.stdout + r.stderr
    for dst in ("lan.test:443", f"{LAN}:443", f"{peer_ip}:443", "172.16.0.1:443", "127.0.0.1:443"):
        r = net.run("host", CONNECT_ECHO.format(dst=dst), user="root", timeout=60)
        assert "502" in r.stdout and "ping" not in r.stdout, (dst, r.stdout)
    # plain http:// to a private name is refused the same way; to the web server it works
    r = net.run("host", "curl -sS -m 10 -o /dev/null -w '%{http_code}' -x http://127.0.0.1:8082 http://lan.test:8080/")
    assert r.stdout == "502", r.stdout
    r = net.run("host", "curl -sS -m 10 -x http://127.0.0.1:8082 http://web.test:8080/")
    assert "hello from the test internet" in r.stdout, r.stdout + r.stderr


ATTACK = ("nft flush ruleset; echo nft=$?; "
          "nft add table inet mine; echo nftadd=$?; "
          "ip link set eth0 down; echo down=$?; "
          "ip addr flush dev eth0; echo flush=$?; "
          "ip route flush table main; echo route=$?; "
          "for v in $(ls /sys/class/net | grep vif); do ip link del $v; done; echo del=$?; "
          "echo 0 > /proc/sys/net/ipv4/ip_forward; echo fwd=$?; "
          "echo 0 > /proc/sys/net/ipv4/conf/all/rp_filter; echo rpf=$?; "
          "python3 -c 'import socket; socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'; echo packet=$?; "
          "id -u")


@pytest.mark.parametrize("victim", ["sys-firewall", "sys-net"])
def test_compromised_netvm_root_cannot_lift_the_rules(net, victim):
    net.d.call("admin.vm.firewall.Set", "work", f"action=drop dst4={OTHER}\naction=accept\n")
    try:
        assert net.curl("work", f"http://{WEB}:8080/") and not net.curl("work", f"http://{OTHER}:8080/")
        r = net.run(victim, ATTACK, user="root")
        out = r.stdout
        assert out.splitlines()[-1] == "0", out  # positive control: it ran, as root
        for k in ("nft", "nftadd", "down", "flush", "route", "fwd", "rpf", "packet"):
            assert f"{k}=0" not in out and f"{k}=" in out, (k, out)
        # the rules hold, the allowed path still works, nothing in the netvm changed
        assert not net.curl("work", f"http://{OTHER}:8080/")
        assert net.curl("work", f"http://{WEB}:8080/")
    finally:
        net.d.call("admin.vm.firewall.Set", "work", "action=accept\n")


SINK6 = textwrap.dedent(r'''
    import select, socket, sys
    s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); s6.bind(("2001:db8:80::80", 5555))
    s4 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s4.bind(("198.51.100.80", 5557))
    with open(sys.argv[1], "ab", buffering=0) as f:
        while True:
            for s in select.select([s6, s4], [], [])[0]:
                f.write(s.recv(2048) + b"\n")
''')

# IPv6 UDP datagrams to [2001:db8:80::80]:5555 as hand-made frames from an interface of
# the namespace it runs in: argv = ifname dst_mac src_mac src_ip6 payload.
FRAME6 = textwrap.dedent(r'''
    import socket, struct, sys
    ifname, dmac, smac, sip, payload = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5].encode()
    src, dst = socket.inet_pton(socket.AF_INET6, sip), socket.inet_pton(socket.AF_INET6, "2001:db8:80::80")
    udp = struct.pack("!HHHH", 40000, 5555, 8 + len(payload), 0) + payload
    pseudo = src + dst + struct.pack("!IxxxB", len(udp), 17) + udp
    if len(pseudo) % 2: pseudo += b"\0"
    c = sum(struct.unpack("!%dH" % (len(pseudo) // 2), pseudo)); c = (c >> 16) + (c & 0xffff); c += c >> 16
    udp = udp[:6] + struct.pack("!H", (~c & 0xffff) or 0xffff) + udp[8:]
    ip6 = struct.pack("!IHBB", 6 << 28, len(udp), 17, 64) + src + dst
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind((ifname, 0))
    s.send(bytes.fromhex(dmac.replace(":", "")) + bytes.fromhex(smac.replace(":", "")) + b"\x86\xdd" + ip6 + udp)
''')


def test_no_ipv6_around_the_firewall(net, internet, tmp_path):
    """The qubes' network carries IPv4 only (IPv6 is off on every link and dropped by
    every netvm): a qube cannot reach anything over IPv6, as its root nor beneath its
    limits, so no IPv6 path bypasses its IPv4 firewall rules. The test's own internet
    does speak IPv6 (positive control: the same frame sent from the uplink's side
    arrives)."""
    import json
    links = json.loads(internet.exec(internet.srv, "ip", "-j", "link").stdout)
    b = [l for l in links if l["ifname"] != "lo"][0]
    links_i = json.loads(internet.exec(internet.inet, "ip", "-j", "link").stdout)
    a = [l for l in links_i if l["ifname"].startswith("bha")][0]
    internet.exec(internet.srv, "sysctl", "-qw", f"net.ipv6.conf.{b['ifname']}.disable_ipv6=0", check=True)
    internet.exec(internet.inet, "sysctl", "-qw", f"net.ipv6.conf.{a['ifname']}.disable_ipv6=0", check=True)
    internet.exec(internet.srv, "ip", "-6", "addr", "add", "2001:db8:80::80/64", "dev", b["ifname"], "nodad", check=True)
    internet.exec(internet.inet, "ip", "-6", "addr", "add", "2001:db8:80::1/64", "dev", a["ifname"], "nodad", check=True)
    log = tmp_path / "sink6.log"
    with sink(internet, SINK6, log):
        # as the qube's root: no IPv6 address can be made, nothing can be sent
        r = net.run("work", "id -u; ip -6 addr add fd09:24ef:4179::a89:99/128 dev eth0; echo addr=$?; "
                    "echo 0 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6; echo enable=$?; "
                    "python3 -c \"import socket; s=socket.socket(socket.AF_INET6, socket.SOCK_DGRAM); "
                    "s.sendto(b'qube6', ('2001:db8:80::80', 5555))\"; echo send6=$?; "
                    "python3 -c \"import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
                    "s.sendto(b'qube4', ('198.51.100.80', 5557))\"; echo send4=$?", user="root")
        out = r.stdout
        assert out.splitlines()[0] == "0", out  # positive control: the qube's root
        for k in ("addr", "enable", "send6"):
            assert f"{k}=0" not in out and f"{k}=" in out, (k, out)
        # beneath its limits: a hand-made IPv6 frame from its eth0 (host root in its
        # namespace), with the source address Qubes would give it
        ns = net.d.runtime / "net" / f"q{qid(net, 'work')}"
        mac = net.prop("work", "mac")
        subprocess.run(["nsenter", f"--net={ns}", _sys.executable, "-c", FRAME6, "eth0", "fe:ff:ff:ff:ff:ff", mac,
                        f"fd09:24ef:4179::a89:{qid(net, 'work'):x}", "beneath6"], check=True, timeout=30)
        # positive control: the same frame, sent into the test's internet, arrives
        subprocess.run(["ip", "netns", "exec", internet.inet, _sys.executable, "-c", FRAME6, a["ifname"], b["address"],
                        a["address"], "2001:db8:80::1", "control6"], check=True, timeout=30)
        got = words_received(log, "control6", "qube4", settle=0.3)
        assert "control6" in got and "qube4" in got, got  # IPv6 works here; IPv4 from the qube too
        assert "qube6" not in got and "beneath6" not in got, got
