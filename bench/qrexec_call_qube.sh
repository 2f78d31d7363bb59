#!/usr/bin/env bash
# qrexec call round trip into a real running ns qube (bulkheadd, template `host`, app qube
# `a`): `qrexec-client -d a user:true`, median of N, beside a plain Unix socket
# request/answer whose server runs inside the same qube and spawns `sh -c true` there (in
# the qube's namespaces, cgroup and CPU share, like the service the call runs), reached
# through a socket in the qube's vchan directory. Rounds are interleaved (a call, then a
# plain round) so that background load on a shared machine hits both alike.
# Usage: bench/qrexec_call_qube.sh [BUILD_DIR] [N]     (needs root, like the ns engine)
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-build}")
N=${2:-200}
exec /usr/bin/python3 - "$N" <<'PY'
import base64, os, shutil, socket, statistics, subprocess, sys, tempfile, time
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
    # The peer's server, started inside the qube through qrexec once (not timed): a
    # socket in the qube's vchan dir (/run/qubes/vchan inside, <runtime>/qubes/a/vchan
    # on the host); for each connection it spawns `sh -c true` and answers its status.
    server = (
        "import os, socket, subprocess\n"
        "p = '/run/qubes/vchan/bench-plain.sock'\n"
        "s = socket.socket(socket.AF_UNIX); s.bind(p + '.tmp'); os.rename(p + '.tmp', p); s.listen(16)\n"
        "while True:\n"
        "    c, _ = s.accept(); c.recv(64)\n"
        "    rc = subprocess.run(['/bin/sh', '-c', 'true']).returncode\n"
        "    c.sendall(bytes([rc])); c.close()\n")
    enc = base64.b64encode(server.encode()).decode()
    srv = subprocess.Popen([str(BIN / "qrexec-client"), "-d", "a",
                            f"root:exec python3 -c \"import base64; exec(base64.b64decode('{enc}'))\""],
                           env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    path = os.path.join(str(d.runtime), "qubes", "a", "vchan", "bench-plain.sock")
    deadline = time.time() + 30
    while not os.path.exists(path):
        if time.time() > deadline or srv.poll() is not None:
            raise RuntimeError("the peer's server did not start inside the qube")
        time.sleep(0.05)
    def plain():
        s = socket.socket(socket.AF_UNIX); s.connect(path); s.sendall(b"user:true")
        if s.recv(1) != b"\0":
            raise RuntimeError("the peer's sh -c true failed inside the qube")
        s.close()
    for _ in range(10):
        plain()
    t_q, t_p = [], []
    for _ in range(n):
        t0 = time.perf_counter(); subprocess.run(client, check=True, env=env); t_q.append(time.perf_counter() - t0)
        t0 = time.perf_counter(); plain(); t_p.append(time.perf_counter() - t0)
    srv.kill()
    srv.wait()
    mq, mp = statistics.median(t_q) * 1000, statistics.median(t_p) * 1000
    print(f"qrexec call into a running ns qube, median of {n}: {mq:.3f} ms (aim: under 2 ms)")
    print(f"plain Unix socket request + sh -c true, in the qube: {mp:.3f} ms")
    print(f"ratio: {mq / mp:.2f}x")
    print(f"ROW\tqrexec call into a running qube (qrexec-client -d a user:true)\t{mq:.2f} ms\t"
          f"socket request + spawn in the qube {mp:.2f} ms\t{mq / mp:.2f}x\t<= 2x")
finally:
    kill_all(d)
    d.stop()
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
PY
