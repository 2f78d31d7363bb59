"""Attacks on processes outside the qube, run inside a qube as its root."""
import os
import signal
import subprocess
import time

from ns_attack_common import ns_env, attack  # noqa: F401


def test_cannot_see_or_signal_host_or_other_qubes(ns_env):
    victim = subprocess.Popen(["sleep", "300"])
    try:
        a, b = ns_env.qube("p-a", private=False), ns_env.qube("p-b", private=False)
        a.start()
        b.start()
        b.sh("sleep 300 >/dev/null 2>&1 &")
        r = a.sh("ps -eo pid,comm; kill -9 -1; kill -9 %d 2>&1; echo end" % victim.pid)
        assert "end" in r.stdout
        assert "sleep" not in r.stdout.split("end")[0].replace("sleep 300", "")  # b's sleep invisible
        assert victim.poll() is None, "host process killed from a qube"
        assert b.sh("pgrep -c sleep").stdout.strip() == "1"
        assert b.state() == "Running"
        # every PID visible in the qube is the qube's own
        pids = a.sh("ls /proc | grep -E '^[0-9]+$'").stdout.split()
        assert len(pids) < 10
    finally:
        victim.kill()
        victim.wait()


def test_ptrace_host_process(ns_env):
    victim = subprocess.Popen(["sleep", "300"])
    try:
        q = ns_env.qube("p2", private=False)
        q.start()
        r = attack(q, """
PTRACE_ATTACH, PTRACE_SEIZE = 16, 0x4206
for pid in (%d, %d, %d):
    print(pid, *sc(101, PTRACE_ATTACH, pid, 0, 0))
buf = ctypes.create_string_buffer(8)
class iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
io = iovec(ctypes.addressof(buf), 8)
r = libc.process_vm_readv(%d, ctypes.byref(io), 1, ctypes.byref(io), 1, 0)
print("vm", r, ctypes.get_errno())
print("pidfd", *sc(434, %d, 0))             # pidfd_open of a host PID
""" % (victim.pid, os.getpid(), 1 if False else victim.pid, victim.pid, os.getpid()))
        for line in r.stdout.splitlines():
            parts = line.split()
            assert parts[1] == "-1", line  # ESRCH: the PID does not exist in the qube
        assert victim.poll() is None
        # /proc of a host process through PID reuse inside: nothing there
        assert "Tracer" not in open(f"/proc/{victim.pid}/status").read().split("TracerPid:\t0")[0][-1:]
    finally:
        victim.kill()
        victim.wait()


def test_exec_helper_cannot_be_hijacked(ns_env):
    # While `bulkhead-ns exec` joins the qube, the qube's root watches for it and tries
    # to ptrace it, read its memory or steal its fds.
    q = ns_env.qube("p3", private=False)
    q.start()
    q.sh("""cat > /tmp/watch.py <<'EOF'
import os, ctypes, time
libc = ctypes.CDLL(None, use_errno=True)
me = os.getpid()
seen = set()
end = time.time() + 6
while time.time() < end:
    for p in os.listdir('/proc'):
        if p.isdigit() and int(p) not in (me, 1) and p not in seen:
            seen.add(p)
            try:
                comm = open('/proc/%s/comm' % p).read().strip()
            except OSError:
                continue
            if libc.ptrace(16, int(p), 0, 0) == 0 and comm == 'bulkhead-ns':
                open('/tmp/hijacked', 'a').write(p + '\\n')
            try:
                os.listdir('/proc/%s/fd' % p)
                open('/proc/%s/mem' % p, 'rb').read(1)
            except OSError:
                pass
python3 /tmp/watch.py >/dev/null 2>&1 &""", check=True)
    for _ in range(20):
        q.exec("true")
    time.sleep(0.5)
    assert q.sh("cat /tmp/hijacked 2>/dev/null | wc -l").stdout.strip() == "0"
    # what must never be traced is a helper before its exec: every run still succeeded
    assert q.exec("echo", "ok").stdout.strip() == "ok"


def test_fork_bomb_is_contained(ns_env):
    q = ns_env.qube("p4", private=False, extra=["--max-pids", "100"])
    other = ns_env.qube("p5", private=False)
    q.start()
    other.start()
    q.sh("(bomb() { bomb | bomb & }; bomb) >/dev/null 2>&1 &")
    time.sleep(2)
    cur = int((q.cgroup("pids") / "pids.current").read_text())
    assert cur <= 100
    # the host and the other qube keep working
    assert subprocess.run(["true"]).returncode == 0
    assert other.sh("echo fine").stdout.strip() == "fine"
    q.kill()
    assert q.state() == "Halted"


def test_memory_hog_kills_only_inside(ns_env):
    q = ns_env.qube("p6", private=False, extra=["--maxmem", "64"])
    other = ns_env.qube("p7", private=False)
    q.start()
    other.start()
    r = q.py("b = []\nwhile True: b.append(bytearray(16 << 20))", timeout=120)
    assert r.returncode in (137, 1), (r.returncode, r.stderr)  # OOM-killed (or MemoryError)
    assert q.state() == "Running", "the qube's init should survive one process's OOM"
    assert q.sh("echo alive").stdout.strip() == "alive"
    assert other.sh("echo fine").stdout.strip() == "fine"
    assert int((q.cgroup("memory") / "memory.max_usage_in_bytes").read_text()) <= 64 << 20


def test_kill_init_from_inside(ns_env):
    q = ns_env.qube("p8", private=False)
    q.start()
    q.sh("kill -9 1; kill -STOP 1; echo end")
    time.sleep(0.2)
    # init ignores fatal signals from inside (PID 1): the qube stays up
    assert q.state() == "Running"
    assert q.sh("echo alive").stdout.strip() == "alive"
