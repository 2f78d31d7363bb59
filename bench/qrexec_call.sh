#!/usr/bin/env bash
# qrexec call round trip: `qrexec-client -d work user:true` against a running agent and
# daemon (real processes, real protocol), median of N, beside two peers measured in the
# same run, rounds interleaved: a plain Unix socket request/answer where the server
# spawns `true` (the same work without qrexec; here the agent runs on the host too, so
# the peer's server does as well), and spawning the client binary alone.
# Usage: bench/qrexec_call.sh [BUILD_DIR] [N]
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-build}")
N=${2:-200}
exec /usr/bin/python3 - "$N" <<'PY'
import os, socket, statistics, subprocess, sys, threading, time
sys.path.insert(0, "tests/integration")
from qrexec_fixtures import World, BIN
n = int(sys.argv[1])
w = World()
try:
    w.qube("work", 5)
    client = [str(BIN / "qrexec-client"), "--runtime", str(w.runtime), "-d", "work", "user:true"]
    for _ in range(10):
        subprocess.run(client, check=True)
    path = str(w.tmp / "plain.sock")
    srv = socket.socket(socket.AF_UNIX); srv.bind(path); srv.listen(16)
    def serve():
        while True:
            try:
                c, _ = srv.accept()
            except OSError:
                return
            c.recv(64)
            rc = subprocess.run(["/bin/sh", "-c", "true"]).returncode
            c.sendall(bytes([rc])); c.close()
    threading.Thread(target=serve, daemon=True).start()
    # Interleaved: a qrexec call, a plain socket round, a bare client start; so that
    # background load on a shared machine hits all three alike.
    t_q, t_p, t_s = [], [], []
    for _ in range(n):
        t0 = time.perf_counter(); subprocess.run(client, check=True); t_q.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        s = socket.socket(socket.AF_UNIX); s.connect(path); s.sendall(b"user:true"); s.recv(1); s.close()
        t_p.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); subprocess.run([str(BIN / "qrexec-client"), "--help"], stderr=subprocess.DEVNULL)
        t_s.append(time.perf_counter() - t0)
    srv.close()
    mq, mp, ms = (statistics.median(x) * 1000 for x in (t_q, t_p, t_s))
    print(f"qrexec call (qrexec-client -d work user:true), median of {n}: {mq:.3f} ms")
    print(f"plain Unix socket request + spawn of sh -c true, median:      {mp:.3f} ms")
    print(f"qrexec-client process start alone, median:                    {ms:.3f} ms")
    print(f"ratio qrexec / plain socket: {mq / mp:.2f}x  (aim: call under 2 ms)")
finally:
    w.close()
PY
