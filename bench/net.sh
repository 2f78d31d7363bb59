#!/usr/bin/env bash
# The qubes' network, on real qubes of a private bulkheadd whose sys-net is plugged
# (--uplink netns:...) into a small internet of namespaces made here
# (tests/integration/net_fixtures.py). Figures beside a peer measured in the same run:
#  (a) TCP throughput app qube -> sys-firewall -> sys-net -> uplink -> server, beside a
#      direct veth pair between two namespaces (same sender and receiver programs);
#      aim: at least 0.70 of the direct pair;
#  (b) TCP connection setup (connect + one echo) through the chain, beside the pair;
#  (c) `qvm-firewall add` to effect: from the tool's start to the first refused connect
#      of a probe that connects every 5 ms, beside `nft -f` of a one-rule change in a
#      plain namespace (the floor for a change that goes through nftables);
#  (d) per-link cost: starting N networked qubes beside N offline qubes (same template),
#      per qube; and the kernel's slab growth per networked qube.
# Usage: bench/net.sh [BUILD_DIR]   env: BENCH_NET_MB=256 BENCH_NET_CONNS=200 BENCH_NET_QUBES=10
#   BENCH_NET_ONLY=abcd (the parts to run)
# Short by default (about a minute); BENCH_NET_QUBES=100 BENCH_NET_ONLY=d for the issue's
# 100 qubes (about two minutes; the qubes' memory budget is lifted for that run: ns
# qubes use far less than their nominal memory).
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-${BULKHEAD_BUILD:-build}}")
exec /usr/bin/python3 - <<'PY'
import os, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, "tests/integration")
from net_fixtures import Internet, Net, WEB, sh
from admin_fixtures import BUILD
QVM_RUN = str(BUILD / "src/qrexec/qvm-run")

MB = int(os.environ.get("BENCH_NET_MB", "256"))
CONNS = int(os.environ.get("BENCH_NET_CONNS", "200"))
NQ = int(os.environ.get("BENCH_NET_QUBES", "10"))
ONLY = os.environ.get("BENCH_NET_ONLY", "abcd")

SINK = r'''
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(8)
while True:
    c, _ = s.accept()
    while c.recv(1 << 20): pass
    c.sendall(b"ok"); c.close()
'''
SEND = r'''
import socket, sys, time
ip, mb = sys.argv[1], int(sys.argv[2])
b = bytes(1 << 18); n = mb << 20
t = time.perf_counter(); s = socket.create_connection((ip, 5001)); sent = 0
while sent < n: s.sendall(b); sent += len(b)
s.shutdown(socket.SHUT_WR); s.recv(4)
print(time.perf_counter() - t)
'''
CONNECT = r'''
import socket, sys, time, statistics
ip, n = sys.argv[1], int(sys.argv[2]); ts = []
for _ in range(n):
    t = time.perf_counter(); s = socket.create_connection((ip, 7)); s.sendall(b"x"); s.recv(1); s.close()
    ts.append(time.perf_counter() - t)
print(statistics.median(ts))
'''
PROBE = r'''
import socket, sys, time
ip = sys.argv[1]; print("ready", flush=True)
while True:
    try:
        socket.create_connection((ip, 7), 0.5).close()
    except OSError:
        print(time.time(), flush=True); break
    time.sleep(0.005)
'''

def fmt(x): return f"{x:.3g}"

inet = Internet()
tmp = tempfile.mkdtemp(prefix="bh-bench-net-", dir="/var/tmp")
os.chmod(tmp, 0o755)
n = None
pair = []
try:
    n = Net(tmp, inet, env={"BULKHEAD_QUBES_MEMORY_MIB": str(max(20000, NQ * 2 * 500))})
    # the peer: a direct veth pair between two fresh namespaces
    tag = "%x" % (os.getpid() & 0xffff)
    pa, pb = "bhpa" + tag, "bhpb" + tag
    pair = [pa, pb]
    for ns in pair:
        sh("ip", "netns", "add", ns); sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "link", "add", "bhva" + tag, "netns", pa, "type", "veth", "peer", "name", "bhvb" + tag, "netns", pb)
    sh("ip", "-n", pa, "addr", "add", "192.0.2.1/24", "dev", "bhva" + tag); sh("ip", "-n", pa, "link", "set", "bhva" + tag, "up")
    sh("ip", "-n", pb, "addr", "add", "192.0.2.2/24", "dev", "bhvb" + tag); sh("ip", "-n", pb, "link", "set", "bhvb" + tag, "up")
    inet.spawn(inet.srv, [sys.executable, "-c", SINK, WEB])
    inet.spawn(pb, [sys.executable, "-c", SINK, "192.0.2.2"])
    inet.spawn(pb, [sys.executable, "-c", "import socket,threading\ns=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1);s.bind(('192.0.2.2',7));s.listen(64)\nwhile True:\n c,_=s.accept();c.recv(1);c.sendall(b'x');c.close()"])
    inet.wait_port(inet.srv, WEB, 5001); inet.wait_port(pb, "192.0.2.2", 5001); inet.wait_port(pb, "192.0.2.2", 7)
    assert n.curl("work", f"http://{WEB}:8080/")

    if "a" in ONLY:
        # (a) throughput, interleaved rounds
        tq, tp = [], []
        for _ in range(3):
            r = n.run("work", f"python3 -c '{SEND}' {WEB} {MB}")
            tq.append(MB / float(r.stdout.split()[-1]))
            r = inet.exec(pa, sys.executable, "-c", SEND, "192.0.2.2", str(MB), check=True)
            tp.append(MB / float(r.stdout.split()[-1]))
        q, p = statistics.median(tq), statistics.median(tp)
        print(f"(a) TCP throughput, {MB} MiB, median of 3: qube->sys-firewall->sys-net->uplink {q:8.0f} MiB/s")
        print(f"    peer: direct veth pair between two namespaces        {p:8.0f} MiB/s")
        print(f"    ratio chain / direct: {q / p:.2f}  (aim: at least 0.70)")

    if "b" in ONLY:
        # (b) connection setup
        cq = float(n.run("work", f"python3 -c '{CONNECT}' {WEB} {CONNS}").stdout.split()[-1])
        cp = float(inet.exec(pa, sys.executable, "-c", CONNECT, "192.0.2.2", str(CONNS), check=True).stdout.split()[-1])
        print(f"(b) TCP connect + 1-byte echo, median of {CONNS}: chain {cq*1e6:7.0f} us   direct pair {cp*1e6:7.0f} us   ratio {cq/cp:.2f}")

    if "c" in ONLY:
        # (c) qvm-firewall add -> effect
        eff = []
        for _ in range(5):
            p_ = subprocess.Popen([QVM_RUN, "-p", "work",
                                   f"python3 -c '{PROBE}' {WEB}"], env=n.d.env, stdout=subprocess.PIPE, text=True)
            assert p_.stdout.readline().strip() == "ready"
            time.sleep(0.2)
            t0 = time.time()
            n.tool("qvm-firewall", "work", "add", "--before", "0", "action=drop", f"dst4={WEB}", "proto=tcp", "dstports=7")
            line = p_.stdout.readline()
            p_.wait(10)
            eff.append(float(line) - t0)
            n.d.call("admin.vm.firewall.Set", "work", "action=accept\n")
        nft = []
        for i in range(5):
            t0 = time.perf_counter()
            subprocess.run(
                ["ip", "netns", "exec", pa, "nft", "-f", "-"], input=f"table inet b\ndelete table inet b\ntable inet b {{\n chain f {{\n  type filter hook forward priority 0;\n  ip daddr 192.0.2.{i+3} drop\n }}\n}}\n",
                text=True, check=True)
            nft.append(time.perf_counter() - t0)
        e, f = statistics.median(eff), statistics.median(nft)
        print(f"(c) qvm-firewall add -> first refused connect, median of 5: {e*1000:7.1f} ms (max {max(eff)*1000:.1f})")
        print(f"    peer: nft -f of a one-rule table in a namespace:        {f*1000:7.1f} ms   ratio {e/f:.1f}x")

    if "d" in ONLY:
        # (d) per-link cost
        for i in range(NQ):
            n.d.call("admin.vm.Create.AppVM+host", payload=f"name=bn{i} label=red")
            n.d.call("admin.vm.Create.AppVM+host", payload=f"name=bo{i} label=red")
            n.d.call(f"admin.vm.property.Set+netvm", f"bo{i}", "")
        def slab():
            return int([l for l in open("/proc/meminfo") if l.startswith("Slab:")][0].split()[1])
        # interleaved, so that neither kind starts on a busier machine than the other
        tn, to, sn, so = [], [], 0, 0
        for i in range(NQ):
            for name, times in ((f"bn{i}", tn), (f"bo{i}", to)):
                s0 = slab(); t0 = time.perf_counter()
                n.d.call("admin.vm.Start", name)
                times.append(time.perf_counter() - t0)
                if name.startswith("bn"): sn += slab() - s0
                else: so += slab() - s0
        k = max(1, NQ // 10)
        mn, mo = statistics.median(tn), statistics.median(to)
        print(f"(d) start, median per qube, {NQ} each (interleaved): networked {mn*1000:6.1f} ms   offline {mo*1000:6.1f} ms   "
              f"link cost {(mn - mo)*1000:.1f} ms")
        print(f"    networked, first {k} vs last {k} (sys-firewall's table grows with its clients): "
              f"{statistics.median(tn[:k])*1000:.1f} ms -> {statistics.median(tn[-k:])*1000:.1f} ms")
        print(f"    kernel slab growth per qube: networked {sn/NQ:7.0f} KiB   offline {so/NQ:7.0f} KiB")
        ok = sum(n.curl(f"bn{i}", f"http://{WEB}:8080/") for i in range(min(NQ, 3)))
        print(f"    ({ok} of {min(NQ, 3)} networked ones sampled fetched the page)")
finally:
    if n:
        n.close()
    for ns in pair:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    inet.close()
    subprocess.run(["rm", "-rf", tmp])
PY
