#!/usr/bin/env bash
# qrexec call round trip into a real running ns qube (bulkheadd, template `host`, app qube
# `a`): `qrexec-client -d a user:true`, median of N, beside a plain Unix socket
# request/answer whose server spawns `sh -c true` on the host, in the same run.
# Usage: bench/qrexec_call_qube.sh [BUILD_DIR] [N]     (needs root, like the ns engine)
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-build}")
N=${2:-200}
exec /usr/bin/python3 - "$N" <<'PY'
import os, shutil, socket, statistics, subprocess, sys, tempfile, threading, time
sys.path.insert(0, "tests/integration")
from admin_fixtures import Daemon, kill_all
from qrexec_fixtures import BIN
n = int(sys.argv[1])
tmp = tempfile.mkdtemp(prefix="bh-bench-")
d = Daemon(tmp, defaults=False).start()
try:
    d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
    d.call("admin.property.Set+default_template", payload="host")
    d.call("admin.vm.Create.AppVM+host", payload="name=a label=red")
    d.call("admin.vm.Start", "a")
    env = dict(os.environ, BULKHEAD_RUNTIME=str(d.runtime))
    client = [str(BIN / "qrexec-client"), "-d", "a", "user:true"]
    for _ in range(10):
        subprocess.run(client, check=True, env=env)
    t_q = []
    for _ in range(n):
        t0 = time.perf_counter(); subprocess.run(client, check=True, env=env); t_q.append(time.perf_counter() - t0)
    path = os.path.join(tmp, "plain.sock")
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
    t_p = []
    for _ in range(n):
        t0 = time.perf_counter()
        s = socket.socket(socket.AF_UNIX); s.connect(path); s.sendall(b"user:true"); s.recv(1); s.close()
        t_p.append(time.perf_counter() - t0)
    srv.close()
    mq, mp = statistics.median(t_q) * 1000, statistics.median(t_p) * 1000
    print(f"qrexec call into a running ns qube, median of {n}: {mq:.3f} ms (aim: under 2 ms)")
    print(f"plain Unix socket request + spawn of sh -c true:   {mp:.3f} ms")
    print(f"ratio: {mq / mp:.2f}x")
finally:
    kill_all(d)
    d.stop()
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
PY
