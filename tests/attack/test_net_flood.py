"""Connection floods: a qube opening very many connections fills only its own share of
the connection-tracking tables, never its neighbours' or the host's. The internet is
made of namespaces this module creates (tests/integration/net_fixtures.py); the flood
goes to a test-made server address whose SYNs are never answered (a tarpit in the
test's own server namespace), so every attempt would hold a conntrack entry for two
minutes in each namespace it crosses."""
import pathlib as _pl
import subprocess
import sys as _sys
import textwrap

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from net_fixtures import Internet, Net, WEB, conntrack_count  # noqa: E402

CAP = 64        # BULKHEAD_NET_CONN_MAX for this module's daemon: connections per qube
FLOOD = 600     # attempts per flood, far above CAP
SLACK = 16      # other traffic of the test (curl, DNS) that may share the tables
TARPIT = 9      # port on WEB whose SYNs the server namespace drops

# From inside a qube: non-blocking connects closed at once (no fd held), each a new
# connection with its own source port. Prints how many SYNs the kernel accepted to send.
QUBE_FLOOD = textwrap.dedent(r'''
    import errno, socket, sys
    n, sent = int(sys.argv[1]), 0
    for i in range(n):
        s = socket.socket(); s.setblocking(False)
        if s.connect_ex(("198.51.100.80", 9)) in (errno.EINPROGRESS, 0):
            sent += 1
        s.close()
    print("attempts", n, "sent", sent)
''')

# Beneath every limit of the qube's own namespace: TCP SYN frames made by hand and sent
# by a packet socket from eth0 of the namespace it runs in (host root simulating a qube
# whose namespace is fully subverted), with the qube's genuine address and MAC and a
# new source port each: only its netvm's limit stands in the way.
SYN_FRAMES = textwrap.dedent(r'''
    import socket, struct, sys
    def csum(b):
        if len(b) % 2: b += b"\0"
        s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        s = (s >> 16) + (s & 0xffff); s += s >> 16
        return ~s & 0xffff
    smac, sip, n, base = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    src, dst = socket.inet_aton(sip), socket.inet_aton("198.51.100.80")
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
    s.bind(("eth0", 0))
    for i in range(n):
        tcp = struct.pack("!HHIIBBHHH", base + i, 9, 1000 + i, 0, 5 << 4, 0x02, 64240, 0, 0)
        tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, len(tcp)) + tcp)) + tcp[18:]
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xffff, 0, 64, 6, 0, src, dst)
        ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
        s.send(bytes.fromhex("feffffffffff") + bytes.fromhex(smac.replace(":", "")) + b"\x08\x00" + ip + tcp)
    print("frames", n)
''')


@pytest.fixture(scope="module")
def flood_net(tmp_path_factory):
    i = Internet()
    try:
        # the tarpit: the test's server namespace swallows SYNs to WEB:9
        i.exec(i.srv, "nft", "add table ip tarpit; add chain ip tarpit in { type filter hook input priority 0; }; "
               f"add rule ip tarpit in tcp dport {TARPIT} drop", check=True)
        n = Net(tmp_path_factory.mktemp("flood"), i, env={"BULKHEAD_NET_CONN_MAX": str(CAP)})
        try:
            # a third qube behind sys-firewall: the neighbour once work and personal
            # have both used up their share (for two minutes)
            assert n.tool("qvm-create", "--label", "red", "third").returncode == 0
            yield n
        finally:
            n.close()
    finally:
        i.close()


def ns_of(net, qube):
    qid = int(net.d.call("admin.vm.property.Get+qid", qube).split()[-1])
    return net.d.runtime / "net" / f"q{qid}"


def host_count(net):
    return conntrack_count(f"/run/netns/{net.internet.inet}")


def test_qube_flood_is_contained_to_its_own_share(flood_net):
    net = flood_net
    assert net.curl("work", f"http://{WEB}:8080/") and net.curl("personal", f"http://{WEB}:8080/")
    fw = ns_of(net, "sys-firewall")
    host0, fw0 = host_count(net), conntrack_count(fw)
    r = net.run("work", f"python3 -c '{QUBE_FLOOD}' {FLOOD}", user="root", timeout=120)
    assert f"attempts {FLOOD}" in r.stdout, r.stdout + r.stderr  # positive control: the flood ran
    host1, fw1, own = host_count(net), conntrack_count(fw), conntrack_count(ns_of(net, "work"))
    print(f"flood of {FLOOD}: host +{host1 - host0}, sys-firewall +{fw1 - fw0}, work's own {own}")
    # positive control: SYNs did get out, up to the qube's share
    assert host1 - host0 >= CAP // 2, (host0, host1)
    # ...and no further, in every table they crossed
    assert host1 - host0 <= CAP + SLACK, (host0, host1)
    assert fw1 - fw0 <= CAP + SLACK, (fw0, fw1)
    assert own <= CAP + SLACK, own
    # a neighbour behind the same netvm is not affected
    assert net.curl("personal", f"http://{WEB}:8080/")


def test_subverted_namespace_flood_is_held_by_the_netvm(flood_net):
    """Frames that never met the qube's own limits (packet socket, as host root) are
    still held to the qube's share in its netvm, also across a rule change that
    replaces the netvm's table (the way the first attempt at a limit failed: a replaced
    table forgot what it had counted)."""
    net = flood_net
    ns = ns_of(net, "personal")
    ip, mac = net.prop("personal", "ip"), net.prop("personal", "mac")
    fw = ns_of(net, "sys-firewall")
    host0, fw0 = host_count(net), conntrack_count(fw)

    def frames(base):
        r = subprocess.run(["nsenter", f"--net={ns}", _sys.executable, "-c", SYN_FRAMES, mac, ip, str(FLOOD), str(base)],
                           capture_output=True, text=True, timeout=60)
        assert f"frames {FLOOD}" in r.stdout, r.stdout + r.stderr  # positive control: sent

    frames(20000)
    host1, fw1 = host_count(net), conntrack_count(fw)
    assert host1 - host0 >= CAP // 2, (host0, host1)  # positive control: frames got through
    assert host1 - host0 <= CAP + SLACK and fw1 - fw0 <= CAP + SLACK, (host0, host1, fw0, fw1)
    # a rule change rebuilds sys-firewall's table: the count must survive it
    net.d.call("admin.vm.firewall.Set", "personal", "action=drop dst4=198.51.100.99\naction=accept\n")
    frames(30000)
    host2, fw2 = host_count(net), conntrack_count(fw)
    print(f"frames: host +{host1 - host0} then +{host2 - host0}; sys-firewall +{fw1 - fw0} then +{fw2 - fw0}")
    assert host2 - host0 <= CAP + SLACK and fw2 - fw0 <= CAP + SLACK, (host0, host2, fw0, fw2)
    # a neighbour behind the same netvm still connects
    assert net.prop("third", "netvm") == "sys-firewall"
    assert net.curl("third", f"http://{WEB}:8080/")
