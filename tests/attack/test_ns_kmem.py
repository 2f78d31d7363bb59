"""Kernel memory a qube's root can pin through ordinary kernel objects, each one must be
charged to the qube's memory cgroup (so `maxmem` bounds it) and never to the host.

Each vector runs as the qube's root in a qube with maxmem 128 MiB, asks for 3x that
(384 MiB) and reports, line by line and flushed, how much it has pinned so far. Passing
means: the attacker stopped (an error, another bound such as its open files, or the
memory cgroup's OOM kill) before pinning much more than maxmem, AND what it pinned
(32 MiB at least: the positive control that the vector really allocates kernel memory)
shows in the qube's cgroup (its peak usage). A vector whose memory the kernel did not charge to the qube
would pin all 384 MiB and fail the test (host memory outside every limit).

Namespaces and inotify (counted, not charged) are in test_ns_limits.py; keyrings,
io_uring, bpf and perf are refused by seccomp (test_ns_kernel.py)."""
import pathlib as _pl
import sys as _sys

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, attack, cgroup_v2_host  # noqa: E402,F401

MAXMEM = 128
WANT = 3 * MAXMEM

HEAD = """
import os, socket, sys, resource, fcntl, errno
WANT = %d << 20
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
held = []
pinned = 0
def report():
    print("pinned", pinned >> 20, flush=True)
""" % WANT

VECTORS = {
    # unix stream socket queues, each made as large as root may (SO_SNDBUFFORCE in the
    # qube's own network namespace), filled and never read
    "unix_socket_queues": """
buf = b"x" * 65536
try:
    while pinned < WANT:
        a, b = socket.socketpair()
        try:
            a.setsockopt(socket.SOL_SOCKET, 32, 64 << 20)   # SO_SNDBUFFORCE
        except OSError:
            a.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 64 << 20)
        a.setblocking(False)
        while pinned < WANT:
            try:
                pinned += a.send(buf)
            except BlockingIOError:
                break
        held.append((a, b))
        report()
except OSError as e:
    print("stopped errno", e.errno, flush=True)
""",
    # pipes grown to the largest size root may set (F_SETPIPE_SZ), filled, never read
    "pipe_buffers": """
F_SETPIPE_SZ = 1031
buf = b"p" * 65536
try:
    while pinned < WANT:
        r, w = os.pipe()
        try:
            fcntl.fcntl(w, F_SETPIPE_SZ, 1 << 20)
        except OSError:
            pass
        os.set_blocking(w, False)
        while pinned < WANT:
            try:
                pinned += os.write(w, buf)
            except BlockingIOError:
                break
        held.append((r, w))
        report()
except OSError as e:
    print("stopped errno", e.errno, flush=True)
""",
    # System V message queues: the qube's own IPC namespace, whose limits its root may
    # raise (msgmnb); the messages are kernel memory
    "sysv_message_queues": """
import ctypes
libc = ctypes.CDLL(None, use_errno=True)
for k, v in (("msgmnb", 64 << 20), ("msgmni", 32000), ("msgmax", 65536)):
    try:
        open("/proc/sys/kernel/" + k, "w").write(str(v))
    except OSError as e:
        print("cannot raise", k, e.errno, flush=True)
msg = ctypes.create_string_buffer(8 + 65536)
msg[0] = 1
while pinned < WANT:
    q = libc.msgget(0, 0o1600)   # IPC_PRIVATE | IPC_CREAT | 0600
    if q < 0:
        print("stopped errno", ctypes.get_errno(), flush=True)
        break
    while pinned < WANT:
        if libc.msgsnd(q, msg, 65536, 0o4000) != 0:   # IPC_NOWAIT
            e = ctypes.get_errno()
            break
        pinned += 65536
    if e != errno.EAGAIN:
        print("stopped errno", e, flush=True)
        break
    report()
""",
    # TCP on the qube's own loopback: data sent to a listener that never reads
    "tcp_loopback_queues": """
import subprocess
subprocess.run(["ip", "link", "set", "lo", "up"], stderr=subprocess.DEVNULL)
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(4096)
buf = b"t" * 65536
import time
t_end, dry = time.monotonic() + 40, 0
try:
    while pinned < WANT and dry < 20 and time.monotonic() < t_end:
        before = pinned
        c = socket.socket()
        try:
            c.setsockopt(socket.SOL_SOCKET, 32, 16 << 20)
        except OSError as e:
            print("no force", e.errno, flush=True)
        c.connect(ls.getsockname())
        s, _ = ls.accept()
        try:
            s.setsockopt(socket.SOL_SOCKET, 33, 16 << 20)   # SO_RCVBUFFORCE
        except OSError:
            pass
        c.setblocking(False)
        stalls = 0
        while pinned < WANT and stalls < 3:
            try:
                pinned += c.send(buf)
                stalls = 0
            except BlockingIOError:
                stalls += 1
                time.sleep(0.01)
        held.append((c, s))
        dry = dry + 1 if pinned - before < 65536 else 0
        report()
    if dry:
        print("stopped: the last connections took no more data", flush=True)
except OSError as e:
    import traceback; traceback.print_exc()
    print("stopped errno", e.errno, flush=True)
""",
}


def memcg(q):
    """(limit hits and OOM kills, peak bytes) of the qube's memory cgroup (for the log)."""
    if cgroup_v2_host():
        d = q.cgroups[""]
        ev = dict(line.split() for line in (d / "memory.events").read_text().splitlines())
        peak = d / "memory.peak"
        return int(ev.get("max", 0)) + int(ev.get("oom_kill", 0)), int(peak.read_text()) if peak.exists() else 0
    d = q.cgroups["memory"]
    # v1 counts socket buffers apart, in memory.kmem.tcp.*
    hits = sum(int((d / f).read_text()) for f in ("memory.failcnt", "memory.memsw.failcnt", "memory.kmem.tcp.failcnt")
               if (d / f).exists())
    oom = dict(line.split() for line in (d / "memory.oom_control").read_text().splitlines())
    peak = max(int((d / f).read_text()) for f in ("memory.max_usage_in_bytes", "memory.kmem.tcp.max_usage_in_bytes")
               if (d / f).exists())
    return hits + int(oom.get("oom_kill", 0)), peak


@pytest.mark.parametrize("vector", sorted(VECTORS))
def test_kernel_memory_is_charged_to_the_qube(ns_env, vector):
    q = ns_env.qube("km" + vector.split("_")[0][:6], private=False,
                    extra=["--memory", str(MAXMEM // 2), "--maxmem", str(MAXMEM)])
    q.start()
    r = attack(q, HEAD + VECTORS[vector] + "report()\nprint('held all' if pinned >= WANT else 'done', flush=True)\n", timeout=120)
    lines = r.stdout.split("\n")
    pinned = max([int(x.split()[1]) for x in lines if x.startswith("pinned ")] or [0])
    hits, peak = memcg(q)
    print(vector, "rc", r.returncode, "pinned MiB", pinned, "cgroup limit hits", hits, "peak MiB", peak >> 20,
          [x for x in lines if x.startswith("stopped") or x.startswith("cannot")])
    # The attacker never held (much) more than the qube's limit ...
    assert "held all" not in r.stdout, f"{vector}: pinned {pinned} MiB in a qube with maxmem {MAXMEM}"
    assert pinned <= MAXMEM + 32, f"{vector}: pinned {pinned} MiB in a qube with maxmem {MAXMEM}"
    # ... and what it pinned was charged to the qube (positive control: the vector ran
    # and pinned real kernel memory; another bound, e.g. its open files or the per-user
    # pipe pages, may stop it before maxmem).
    assert pinned >= 32, (vector, pinned, r.stdout[-500:], r.stderr[-500:])
    assert peak >= (min(pinned, MAXMEM) * 3 // 4) << 20, (vector, pinned, hits, peak >> 20)
    # the qube is still usable afterwards (its other processes were not the ones killed)
    assert q.sh("echo alive").stdout.strip() == "alive"
