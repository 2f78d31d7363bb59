"""Attacks on the shared kernel's surfaces, run inside a qube as its root. Each syscall
must fail with the errno our seccomp filter (or the kernel's namespace checks) gives."""
import os
import time

import pathlib as _pl
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, attack  # noqa: E402,F401

EPERM, ENOSYS, EAFNOSUPPORT = 1, 38, 97


def run_calls(q, calls):
    code = "for name, nr, args in %r:\n    r, e = sc(nr, *args)\n    print(name, r, e)\n" % (calls,)
    r = attack(q, code)
    assert r.returncode == 0, r.stderr
    return {line.split()[0]: (int(line.split()[1]), int(line.split()[2])) for line in r.stdout.splitlines()}


def test_denied_syscalls(ns_env):
    q = ns_env.qube("k1", private=False)
    q.start()
    calls = [
        ("init_module", 175, (0, 0, 0)), ("finit_module", 313, (0, 0, 0)), ("delete_module", 176, (0, 0)),
        ("kexec_load", 246, (0, 0, 0, 0)), ("kexec_file_load", 320, (0, 0, 0, 0, 0)),
        ("bpf", 321, (0, 0, 0)), ("perf_event_open", 298, (0, 0, -1, -1, 0)),
        ("add_key", 248, (0, 0, 0, 0, 0)), ("request_key", 249, (0, 0, 0, 0)), ("keyctl", 250, (0, 0, 0, 0, 0)),
        ("userfaultfd", 323, (0,)), ("open_by_handle_at", 304, (0, 0, 0)), ("name_to_handle_at", 303, (0, 0, 0, 0, 0)),
        ("clock_settime", 227, (0, 0)), ("settimeofday", 164, (0, 0)), ("adjtimex", 159, (0,)),
        ("clock_adjtime", 305, (0, 0)), ("swapon", 167, (0, 0)), ("swapoff", 168, (0,)),
        ("reboot", 169, (0xfee1dead, 672274793, 0x1234567, 0)), ("acct", 163, (0,)), ("syslog", 103, (3, 0, 0)),
        ("iopl", 172, (3,)), ("ioperm", 173, (0, 1, 1)), ("quotactl", 179, (0, 0, 0, 0)),
    ]
    res = run_calls(q, calls)
    for name, *_ in calls:
        assert res[name] == (-1, EPERM), (name, res[name])
    res = run_calls(q, [("io_uring_setup", 425, (8, 0)), ("clone3", 435, (0, 0))])
    assert res["io_uring_setup"] == (-1, ENOSYS)
    assert res["clone3"] == (-1, ENOSYS)
    # the qube still works after all that
    assert q.sh("echo alive").stdout.strip() == "alive"


def test_host_time_unchanged(ns_env):
    q = ns_env.qube("k2", private=False)
    q.start()
    before = time.time()
    r = q.sh("date -s '2001-01-01 00:00:00' 2>&1; hwclock --set --date 2001-01-01 2>&1; echo end")
    assert "end" in r.stdout
    assert 0 <= time.time() - before < 3600  # set, it would be decades off
    assert q.sh("date +%Y").stdout.strip() != "2001"


def test_hostname_is_the_qubes_own(ns_env):
    host = os.uname().nodename
    q = ns_env.qube("k3", private=False)
    q.start()
    q.sh("hostname evilname", check=True)
    assert q.sh("hostname").stdout.strip() == "evilname"
    assert os.uname().nodename == host
    r = attack(q, "print(sc(171, 0, 0))")  # setdomainname: own UTS ns, allowed, harmless
    assert os.uname().nodename == host


def test_socket_families(ns_env):
    q = ns_env.qube("k4", private=False)
    q.start()
    r = attack(q, """
import socket
for fam in (38, 40, 4, 9, 3, 5, 15, 31, 21, 0x100000001, 0x100000026):  # ALG VSOCK IPX X25 AX25 APPLETALK KEY BLUETOOTH RDS, high bits
    print(fam, *sc(41, fam, 1, 0))
for fam, ty in ((1, 1), (2, 1), (10, 2), (16, 3)):
    r, e = sc(41, fam, ty, 0)
    print("ok" if r >= 0 else "fail", fam, e)
""")
    lines = r.stdout.splitlines()
    # every attempt ran: 11 hostile families, then 4 controls that must work
    assert len(lines) == 15, r.stdout + r.stderr
    for line in lines[:11]:
        parts = line.split()
        assert parts[1] == "-1" and parts[2] == str(EAFNOSUPPORT), line
    for line in lines[11:]:
        assert line.split()[0] == "ok", line


def test_tiocsti_denied(ns_env):
    q = ns_env.qube("k5", private=False)
    q.start()
    r = attack(q, """
import fcntl, termios, pty
m, s = pty.openpty()
for cmd in (termios.TIOCSTI, termios.TIOCSTI | (1 << 32), 0x541C):  # TIOCSTI, high bits, TIOCLINUX
    r = libc.syscall(ctypes.c_long(16), ctypes.c_long(s), ctypes.c_long(cmd), ctypes.c_char_p(b"x"))
    print(r, ctypes.get_errno())
os.set_blocking(m, False)
try:
    print("read", os.read(m, 10))
except BlockingIOError:
    print("nothing injected")
""")
    out = r.stdout.splitlines()
    assert out[0] == "-1 1" and out[1] == "-1 1" and out[2] == "-1 1", r.stdout + r.stderr
    assert "nothing injected" in r.stdout


def test_nested_user_namespace_bounded(ns_env):
    # Nested user namespaces are allowed (browser sandboxes), counted against a limit
    # the qube cannot raise: see test_ns_limits.py for the bound itself.
    q = ns_env.qube("k6", private=False)
    q.start(extra_env={"BULKHEAD_NS_MAX_USER_NAMESPACES": "0"})
    r = attack(q, """
print("unshare", *sc(272, 0x10000000))          # CLONE_NEWUSER: over the limit of 0
print("clone", *sc(56, 0x10000000 | 17, 0, 0, 0, 0))
print("unshare_net", *sc(272, 0x40000000))     # own netns for its own sandboxes: allowed
""")
    res = {l.split()[0]: l.split()[1:] for l in r.stdout.splitlines()}
    assert res["unshare"] == ["-1", "28"]  # ENOSPC: the kernel's count, not seccomp
    assert res["clone"] == ["-1", "28"]
    assert res["unshare_net"][0] == "0"


def test_32bit_syscalls_kill(ns_env, tmp_path):
    # int 0x80 enters the i386 syscall table, where x86_64 argument checks would not
    # apply: the filter kills such a process (SIGSYS) instead.
    import platform
    import shutil
    import subprocess
    import pytest
    if platform.machine() != "x86_64":
        pytest.skip(f"int 0x80 is an x86 instruction; this host is {platform.machine()}")
    if not shutil.which("gcc"):
        pytest.skip("no C compiler to build the int 0x80 probe")
    src = tmp_path / "x.c"
    # With an argument: only the control (no int 0x80). Without: i386 getpid (20).
    src.write_text('int main(int argc, char **argv){ (void)argv; if (argc > 1) return 0;\n'
                   ' long r; __asm__ volatile("int $0x80" : "=a"(r) : "a"(20)); return r > 0 ? 0 : 3; }\n')
    c = subprocess.run(["gcc", "-static", "-o", str(tmp_path / "x"), str(src)], capture_output=True, text=True)
    if c.returncode != 0:
        pytest.skip(f"cannot build a static probe (libc6-dev?): {c.stderr.strip()[:200]}")
    # Premise, on the host first: the kernel runs 32-bit syscalls at all (IA32 emulation;
    # a kernel without it, or booted with ia32_emulation=0, faults instead).
    host = subprocess.run([str(tmp_path / "x")])
    if host.returncode != 0:
        pytest.skip(f"the host kernel does not run int 0x80 syscalls (exit {host.returncode}): no IA32 emulation")
    q = ns_env.qube("k7", private=False)
    q.start()
    r = q.exec("/bin/sh", "-c", "cat > /tmp/x; chmod +x /tmp/x; /tmp/x ctl; echo ctl=$?; /tmp/x; echo rc=$?",
               input=(tmp_path / "x").read_bytes())
    assert b"ctl=0" in r.stdout, r.stdout  # control: the same static binary runs in the qube
    assert b"rc=159" in r.stdout, r.stdout  # 128 + SIGSYS


def test_network_is_empty(ns_env):
    import socket
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    port = srv.getsockname()[1]
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(b"\0bulkhead-attack-test")
    abstract.listen(1)
    try:
        q = ns_env.qube("k8", private=False)
        q.start()
        r = attack(q, """
import socket
print(sorted(os.listdir("/sys/class/net")) if os.path.exists("/sys/class/net") else "nosys")
for addr in (("127.0.0.1", %d),):
    s = socket.socket()
    s.settimeout(1)
    try:
        s.connect(addr); print("CONNECTED")
    except OSError as e:
        print("refused", e.errno)
u = socket.socket(socket.AF_UNIX)
try:
    u.connect(b"\\0bulkhead-attack-test"); print("CONNECTED-ABSTRACT")
except OSError as e:
    print("refused", e.errno)
# control: the qube's own abstract socket, same name, connects
own = socket.socket(socket.AF_UNIX)
own.bind(b"\\0bulkhead-attack-test-own")
own.listen(1)
c = socket.socket(socket.AF_UNIX)
c.connect(b"\\0bulkhead-attack-test-own"); print("control-connected")
""" % port)
        lines = r.stdout.splitlines()
        assert len(lines) == 4 and lines[-1] == "control-connected", r.stdout + r.stderr
        assert "CONNECTED" not in r.stdout, r.stdout
        assert lines[1].startswith("refused") and lines[2].startswith("refused"), r.stdout
    finally:
        srv.close()
        abstract.close()
