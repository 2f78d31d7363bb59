#!/usr/bin/env bash
# File copy throughput: qvm-copy-to-vm of one large file from qube `work` to qube `personal`
# through the whole path (qfile-agent -> qrexec-client-vm -> agent -> daemon relay -> agent
# -> qfile-unpacker), beside a plain socketpair copy of the same bytes file-to-file in the
# same run. Prints MiB/s of both and the ratio (aim: at least 0.5).
# Usage: bench/qrexec_filecopy.sh [BUILD_DIR] [SIZE_MIB]
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-build}")
SIZE=${2:-1024}
exec /usr/bin/python3 - "$SIZE" <<'PY'
import os, socket, sys, threading, time
sys.path.insert(0, "tests/integration")
from qrexec_fixtures import World
size = int(sys.argv[1]) << 20
w = World()
try:
    w.allow_call("qubes.Filecopy", "work", "personal")
    work = w.qube("work", 5); personal = w.qube("personal", 6)
    src = work.home / "big"
    with open(src, "wb") as f:
        chunk = os.urandom(1 << 20)
        for _ in range(size >> 20):
            f.write(chunk)
    t0 = time.perf_counter()
    r = work.run(["qvm-copy-to-vm", "personal", str(src)], timeout=3600)
    tq = time.perf_counter() - t0
    assert r.returncode == 0, r.stderr
    assert os.path.getsize(personal.home / "QubesIncoming" / "work" / "big") == size
    os.unlink(personal.home / "QubesIncoming" / "work" / "big")

    a, b = socket.socketpair()
    dst = w.tmp / "plain-copy"
    def rx():
        with open(dst, "wb") as f:
            while True:
                d = b.recv(1 << 17)
                if not d:
                    break
                f.write(d)
    t0 = time.perf_counter()
    th = threading.Thread(target=rx); th.start()
    with open(src, "rb") as f:
        while True:
            d = f.read(1 << 17)
            if not d:
                break
            a.sendall(d)
    a.shutdown(socket.SHUT_WR); th.join(); a.close(); b.close()
    tp = time.perf_counter() - t0
    mib = size / (1 << 20)
    print(f"qvm-copy-to-vm {mib:.0f} MiB through qrexec: {tq:.2f} s, {mib / tq:.0f} MiB/s")
    print(f"plain socketpair copy of the same file:   {tp:.2f} s, {mib / tp:.0f} MiB/s")
    print(f"ratio qrexec / socketpair throughput: {tp / tq:.2f}  (aim: >= 0.5)")
finally:
    w.close()
PY
