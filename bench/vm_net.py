#!/usr/bin/python3
"""Bench for the network of vm-engine qubes (figures, not pass/fail), peers in one run:

  TCP throughput and connection setup from a VM qube (`pvh`, TCG where there is no
  /dev/kvm) through sys-firewall and sys-net to a server in a small internet of
  namespaces made here (tests/integration/net_fixtures.py), beside the same programs in
  an `ns` qube behind the same sys-firewall, rounds alternated so that background load
  hits both alike. The ns qube is the peer: same link, same rules, same NAT; the
  difference is the guest's path (virtio-net, QEMU's tap backend, the tap wired to the
  link) and the guest's own kernel and Python (under TCG, emulated). A third figure,
  the same transfer over the guest's own loopback, shows what the guest's CPU allows
  with no network card in the way.

Run as root after building: bench/vm_net.py [build-dir]
env: BENCH_VMNET_MB=64 (per transfer), BENCH_VMNET_ROUNDS=3, BENCH_VMNET_CONNS=50."""
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
if len(sys.argv) > 1:
    os.environ["BULKHEAD_BUILD"] = str(pathlib.Path(sys.argv[1]).resolve())
sys.path.insert(0, str(ROOT / "tests/integration"))
from net_fixtures import Internet, Net, WEB  # noqa: E402
from vm_fixtures import vm_premises, start, have_kvm  # noqa: E402

MB = int(os.environ.get("BENCH_VMNET_MB", 64))
ROUNDS = int(os.environ.get("BENCH_VMNET_ROUNDS", 3))
CONNS = int(os.environ.get("BENCH_VMNET_CONNS", 50))

SINK = r'''
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5001)); s.listen(8)
while True:
    c, _ = s.accept()
    while c.recv(1 << 20): pass
    c.sendall(b"ok"); c.close()
'''
# seconds for MB MiB, from connect to the receiver's acknowledgement of the last byte
SEND = r'''
import socket, sys, time
ip, mb = sys.argv[1], int(sys.argv[2])
b = bytes(1 << 18); n = mb << 20
t = time.perf_counter(); s = socket.create_connection((ip, 5001)); sent = 0
while sent < n: s.sendall(b); sent += len(b)
s.shutdown(socket.SHUT_WR); s.recv(4)
print(time.perf_counter() - t)
'''
# the same transfer over the guest's own loopback (a forked receiver): what the guest's
# CPU (emulated under TCG) allows at all, with no network card in the way
LOOP = r'''
import os, socket, sys, time
mb = int(sys.argv[1])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 5002)); s.listen(1)
if os.fork() == 0:
    c, _ = s.accept()
    while c.recv(1 << 20): pass
    c.sendall(b"ok"); os._exit(0)
b = bytes(1 << 18); n = mb << 20
t = time.perf_counter(); c = socket.create_connection(("127.0.0.1", 5002)); sent = 0
while sent < n: c.sendall(b); sent += len(b)
c.shutdown(socket.SHUT_WR); c.recv(4)
print(time.perf_counter() - t); os.wait()
'''
# median seconds of connect + a 1-byte echo (the internet's echo server on port 7)
CONNECT = r'''
import socket, sys, time, statistics
ip, n = sys.argv[1], int(sys.argv[2]); ts = []
for _ in range(n):
    t = time.perf_counter(); s = socket.create_connection((ip, 7)); s.sendall(b"x"); s.recv(1); s.close()
    ts.append(time.perf_counter() - t)
print(statistics.median(ts))
'''


def in_qube(net, qube, prog, *args):
    r = subprocess.run([str(pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build")) / "src/qrexec/qvm-run"),
                        "-p", qube, "python3 - " + " ".join(args)], input=prog, env=net.d.env,
                       capture_output=True, text=True, timeout=600)
    if r.returncode != 0:
        raise RuntimeError(f"{qube}: {r.stderr}")
    return float(r.stdout.split()[-1])


def main():
    why = vm_premises()
    if why:
        print(f"skipped: {why}")
        return
    internet = Internet()
    net = None
    sink = None
    tmp = pathlib.Path(tempfile.mkdtemp(prefix="bh-bench-vmnet-", dir="/var/tmp"))
    try:
        net = Net(tmp, internet)
        d = net.d
        d.call("admin.vm.Create.AppVM+host", payload="name=vmq label=red")
        d.call("admin.vm.property.Set+virt_mode", "vmq", "pvh")
        d.call("admin.vm.property.Set+memory", "vmq", "400")
        d.call("admin.vm.property.Set+qrexec_timeout", "vmq", "240")
        start(d, "vmq")
        d.call("admin.vm.Start", "work")
        sink = internet.spawn(internet.srv, [sys.executable, "-c", SINK, WEB])
        internet.wait_port(internet.srv, WEB, 5001)
        tput = {"vmq": [], "work": []}
        loop = []
        conn = {"vmq": [], "work": []}
        for _ in range(ROUNDS):
            for q in ("work", "vmq"):
                tput[q].append(MB / in_qube(net, q, SEND, WEB, str(MB)))
                conn[q].append(in_qube(net, q, CONNECT, WEB, str(CONNS)))
            loop.append(MB / in_qube(net, "vmq", LOOP, str(MB)))
        accel = "KVM" if have_kvm() else "TCG"
        vm_t, ns_t = statistics.median(tput["vmq"]), statistics.median(tput["work"])
        vm_l = statistics.median(loop)
        vm_c, ns_c = statistics.median(conn["vmq"]) * 1e6, statistics.median(conn["work"]) * 1e6
        print(f"{ROUNDS} rounds, {MB} MiB per transfer, {CONNS} connects; VM under {accel}; "
              f"load {open('/proc/loadavg').read().split()[0]}")
        print(f"TCP throughput  VM qube {vm_t:7.1f} MiB/s   ns qube {ns_t:7.1f} MiB/s   ratio {vm_t / ns_t:.2f}")
        print(f"                VM qube over its own loopback {vm_l:7.1f} MiB/s (the guest's CPU ceiling): "
              f"network/loopback {vm_t / vm_l:.2f}")
        print(f"connect+echo    VM qube {vm_c:7.0f} us      ns qube {ns_c:7.0f} us      ratio {vm_c / ns_c:.2f}x")
        print(f"ROW\tVM qube TCP throughput through sys-firewall ({accel})\t{vm_t:.1f} MiB/s\t"
              f"ns qube {ns_t:.1f} MiB/s\t{vm_t / ns_t:.2f}\t-")
    finally:
        if sink:
            sink.kill()
        if net:
            net.close()
        internet.close()
        shutil.rmtree(tmp, ignore_errors=True)  # the daemon's store and log


if __name__ == "__main__":
    main()
