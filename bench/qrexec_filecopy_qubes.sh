#!/usr/bin/env bash
# File copy between two real running ns qubes: `qvm-copy-to-vm b ~/big` run as `user` in
# qube `a` (qfile-agent -> qrexec-client-vm -> agent -> qrexec-daemon -> policy -> agent of
# b -> qfile-unpacker into ~/QubesIncoming/a/), beside a plain socketpair copy of the same
# file's bytes from a's private volume into b's private volume (host-side, through
# /proc/PID/root), in the same run. Rounds alternate; MiB/s and the ratio of throughputs.
# Usage: bench/qrexec_filecopy_qubes.sh [BUILD_DIR]   env: BENCH_COPY_MIB=1024 BENCH_ROUNDS=3
# Needs root (the ns engine). Every qube is killed and the daemon stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-${BULKHEAD_BUILD:-build}}")
exec /usr/bin/python3 - <<'PY'
import os, socket, statistics, sys, threading, time
sys.path.insert(0, "bench")
from bhbench import Bench

mib = int(os.environ.get("BENCH_COPY_MIB", "1024"))
rounds = int(os.environ.get("BENCH_ROUNDS", "3"))
b = Bench()


def a_process_of(name):
    tag = b.cgroup_tag()
    for p in (f"/sys/fs/cgroup/{tag}/{name}/cgroup.procs", f"/sys/fs/cgroup/pids/{tag}/{name}/cgroup.procs"):
        if os.path.exists(p):
            return open(p).read().split()[0]
    raise RuntimeError(f"no process of {name}")


def plain_copy(src, dst):
    """Reader in this process, writer in a child running as the owner of dst's directory
    (the qube's user as the host sees it: root is not mapped on the idmapped private)."""
    st = os.stat(os.path.dirname(dst))
    x, y = socket.socketpair()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        try:
            x.close()
            dfd = os.open(os.path.dirname(dst), os.O_DIRECTORY | os.O_RDONLY)  # before dropping root
            os.setgid(st.st_gid); os.setuid(st.st_uid)
            fd = os.open(os.path.basename(dst), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644, dir_fd=dfd)
            with open(fd, "wb") as f:
                while True:
                    d = y.recv(1 << 17)
                    if not d:
                        break
                    f.write(d)
            os._exit(0)
        except BaseException as e:  # noqa: BLE001
            print(f"plain copy writer: {e}", file=sys.stderr)
            os._exit(1)
    y.close()
    with open(src, "rb") as f:
        while True:
            d = f.read(1 << 17)
            if not d:
                break
            x.sendall(d)
    x.shutdown(socket.SHUT_WR)
    _, status = os.waitpid(pid, 0)
    dt = time.perf_counter() - t0
    x.close()
    assert status == 0, "plain copy writer failed"
    return dt


try:
    (b.d.root / "policy.d").mkdir(exist_ok=True)
    (b.d.root / "policy.d/10-bench.policy").write_text("qubes.Filecopy  *  a  b  allow\n")
    b.create_app("a"); b.create_app("b", "blue")
    b.qvm_run("b", "true")
    b.qvm_run("-p", "a", f"head -c {mib}M /dev/urandom > ~/big")
    src = f"/proc/{a_process_of('a')}/root/home/user/big"
    assert os.path.getsize(src) == mib << 20
    bhome = f"/proc/{a_process_of('b')}/root/home/user"
    t_q, t_p = [], []
    for _ in range(rounds):
        os.sync()  # the previous round's dirty pages are not this round's cost
        t_q.append(b.qvm_run("-p", "a", "/usr/lib/bulkhead/qvm-copy-to-vm b ~/big"))
        got = f"{bhome}/QubesIncoming/a/big"
        assert os.path.getsize(got) == mib << 20, "copy incomplete"
        os.unlink(got)
        os.sync()
        t_p.append(plain_copy(src, f"{bhome}/plain-copy"))
        assert os.path.getsize(f"{bhome}/plain-copy") == mib << 20
        os.unlink(f"{bhome}/plain-copy")
    tq, tp = statistics.median(t_q), statistics.median(t_p)
    print(f"qvm-copy-to-vm of {mib} MiB between real qubes a -> b, median of {rounds}: {tq:.2f} s, {mib / tq:.0f} MiB/s")
    print(f"plain socketpair copy of the same bytes (a's private -> b's private): {tp:.2f} s, {mib / tp:.0f} MiB/s")
    print(f"ratio qrexec / socketpair throughput: {tp / tq:.2f}  (aim: >= 0.6)")
    print(f"ROW\tqvm-copy {mib} MiB between real qubes\t{mib / tq:.0f} MiB/s\tsocketpair {mib / tp:.0f} MiB/s\t"
          f"{tp / tq:.2f}\t>= 0.6")
finally:
    b.close()
PY
