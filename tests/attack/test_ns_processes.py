"""Attacks on processes outside the qube, run inside a qube as its root."""
import os
import signal
import subprocess
import time

import pathlib as _pl
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, attack  # noqa: E402,F401
from waiting import wait_for  # noqa: E402


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
# control: the same calls on a process of the qube's own succeed
import signal
kid = os.fork()
if kid == 0:
    signal.pause(); os._exit(0)
print("control-pidfd", *sc(434, kid, 0))
print("control-ptrace", *sc(101, PTRACE_ATTACH, kid, 0, 0))
os.kill(kid, 9)
""" % (victim.pid, os.getpid(), victim.pid, victim.pid, os.getpid()))
        lines = r.stdout.splitlines()
        names = [l.split()[0] for l in lines]
        assert names == [str(victim.pid), str(os.getpid()), str(victim.pid), "vm", "pidfd",
                         "control-pidfd", "control-ptrace"], r.stdout + r.stderr
        for line in lines[:5]:
            assert line.split()[1] == "-1" and line.split()[2] == "3", line  # ESRCH: no such PID in the qube
        assert int(lines[5].split()[1]) >= 0 and lines[6].split()[1] == "0", r.stdout
        assert victim.poll() is None
        # and the host process was never traced
        status = open(f"/proc/{victim.pid}/status").read()
        assert "\nTracerPid:\t0\n" in status
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
open('/tmp/watching', 'w').close()
end = time.time() + 600  # a bound only; the test ends it with /tmp/stop
while time.time() < end and not os.path.exists('/tmp/stop'):
    for p in os.listdir('/proc'):
        if p.isdigit() and int(p) not in (me, 1) and p not in seen:
            seen.add(p)
            try:
                comm = open('/proc/%s/comm' % p).read().strip()
            except OSError:
                continue
            open('/tmp/seen', 'a').write(comm + '\\n')
            # only the helper is attacked: an attached process stays stopped while the
            # watcher lives (the test's own commands must go on)
            if comm == 'bulkhead-ns' and libc.ptrace(16, int(p), 0, 0) == 0:
                try:  # attached to what it has become (it may have exec'd since)?
                    still = open('/proc/%s/comm' % p).read().strip() == 'bulkhead-ns'
                except OSError:
                    still = True
                if still:
                    open('/tmp/hijacked', 'a').write(p + '\\n')
            try:
                os.listdir('/proc/%s/fd' % p)
                open('/proc/%s/mem' % p, 'rb').read(1)
            except OSError:
                pass
open('/tmp/done', 'w').close()
EOF
python3 /tmp/watch.py >/dev/null 2>&1 &""", check=True)
    # the watcher runs before the helpers come (its Python may start slowly) and until
    # the test stops it (a fixed lifetime could end before the helpers came on a slow
    # machine: CI runs this file in a TCG VM too)
    assert wait_for(lambda: q.sh("test -e /tmp/watching && echo yes").stdout.strip() == "yes", step=0.2)
    # positive control: the watcher saw helpers as they were before their exec (comm
    # bulkhead-ns) and tried them; at least 20 runs, more until it has seen one
    seen_helper = lambda: "bulkhead-ns" in q.sh("cat /tmp/seen 2>/dev/null").stdout.split()  # noqa: E731
    for i in range(200):
        q.exec("true")
        if i >= 19 and seen_helper():
            break
    q.sh("touch /tmp/stop")
    assert wait_for(lambda: q.sh("test -e /tmp/done && echo yes").stdout.strip() == "yes", step=0.2)
    assert seen_helper(), "the watcher never saw an exec helper"
    assert q.sh("cat /tmp/hijacked 2>/dev/null | wc -l").stdout.strip() == "0"
    # what must never be traced is a helper before its exec: every run still succeeded
    assert q.exec("echo", "ok").stdout.strip() == "ok"


def test_fork_bomb_is_contained(ns_env):
    q = ns_env.qube("p4", private=False, extra=["--max-pids", "100"])
    other = ns_env.qube("p5", private=False)
    q.start()
    other.start()
    q.sh("(bomb() { bomb | bomb & }; bomb) >/dev/null 2>&1 &")
    pids = q.cgroup_file(("pids", "pids.current"), "pids.current")
    # the bomb ran (however slowly it grows here), and stopped at the cap
    cur = wait_for(lambda: int(pids.read_text()) > 50 and int(pids.read_text()))
    assert cur and cur <= 100, cur
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
    peak = q.cgroup_file(("memory", "memory.max_usage_in_bytes"), "memory.peak")
    if peak.exists():  # memory.peak: v2 on Linux >= 5.19
        assert 32 << 20 < int(peak.read_text()) <= 64 << 20  # the hog ran up to the limit, not past


def test_kill_init_from_inside(ns_env):
    q = ns_env.qube("p8", private=False)
    q.start()
    q.sh("kill -9 1; kill -STOP 1; echo end")
    time.sleep(0.2)
    # init ignores fatal signals from inside (PID 1): the qube stays up
    assert q.state() == "Running"
    assert q.sh("echo alive").stdout.strip() == "alive"


def test_no_controlling_terminal_of_the_host(ns_env):
    # Run the exec under a pty that is the *host's* terminal for it: the qube's process
    # must not be able to open it as /dev/tty.
    import pty
    q = ns_env.qube("p9", private=False)
    q.start()
    from ns_fixtures import _bin
    pid, fd = pty.fork()
    if pid == 0:
        os.environ["BULKHEAD_RUNTIME"] = str(ns_env.runtime)
        os.execv(str(_bin()), [str(_bin()), "exec", "p9", "--", "/bin/sh", "-c",
                               "(echo PWNED > /dev/tty) 2>/dev/null && echo OPENED-TTY; echo done"])
    out = b""
    while True:
        try:
            chunk = os.read(fd, 1024)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    os.waitpid(pid, 0)
    assert b"done" in out
    assert b"OPENED-TTY" not in out and b"PWNED" not in out
