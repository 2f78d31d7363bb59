"""Kernel memory a qube's root can pin outside its memory cgroup: namespaces and
inotify instances. The kernel counts them per user namespace; the engine sets the
limits in an outer user namespace the qube has no capability in (idmap.c), so the
qube's root cannot raise them, and that outer namespace belongs to the qube's own host
UID, so host-wide per-user counts are the qube's, never host root's."""
import ctypes
import os
import pathlib as _pl
import subprocess
import time
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
import ns_fixtures  # noqa: E402
from ns_fixtures import ns_env, attack  # noqa: E402,F401

ENOSPC = 28

HOLD_NETNS = """
fds, made, err = [], 0, 0
for i in range(400):
    r, e = sc(272, 0x40000000)   # unshare(CLONE_NEWNET), keeping each one alive
    if r != 0:
        err = e
        break
    fds.append(os.open("/proc/self/ns/net", os.O_RDONLY))
    made += 1
print(made, err)
"""


def test_namespace_count_bounded_and_not_raisable(ns_env):
    q = ns_env.qube("nsl", private=False)
    q.start(extra_env={"BULKHEAD_NS_MAX_NAMESPACES": "16"})
    # The kernel frees network namespaces asynchronously (cleanup_net), and until it has,
    # they still count: right after an earlier qube or attempt, fewer than 16 may be left
    # for a while. Poll for the full 16 as the positive control that the attempt ran.
    deadline = time.monotonic() + 60
    while True:
        r = attack(q, HOLD_NETNS)
        assert r.returncode == 0, r.stderr
        made, err = map(int, r.stdout.split())
        if made == 16 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert made == 16 and err == ENOSPC, r.stdout  # positive control: 16 were made
    # The qube's root raises its own namespace's limit: the outer one still holds.
    r = q.sh("echo 100000 > /proc/sys/user/max_net_namespaces; cat /proc/sys/user/max_net_namespaces")
    assert r.stdout.strip() == "100000", (r.stdout, r.stderr)
    r = attack(q, HOLD_NETNS)
    made, err = map(int, r.stdout.split())
    # (the first attempt's namespaces may still be counted: at most 16, never more)
    assert made <= 16 and err == ENOSPC, r.stdout


def test_browser_style_sandbox_works_within_bound(ns_env):
    q = ns_env.qube("sbx", private=False)
    q.start(extra_env={"BULKHEAD_NS_MAX_USER_NAMESPACES": "3"})
    # What Chromium's and Firefox's sandboxes do: user + PID + network namespaces as an
    # unprivileged user, mapping themselves to root inside.
    r = q.sh("unshare -U -r -n -p -f sh -c 'id -u; ip link 2>/dev/null | grep -c LOOPBACK || echo 1'", user="user")
    assert r.returncode == 0 and r.stdout.split()[0] == "0", (r.stdout, r.stderr)
    # The kernel frees a user namespace in deferred work: the sandbox above may still be
    # counted for a moment, so retry until all three are free again; never more than 3.
    deadline = time.monotonic() + 60
    while True:
        r = attack(q, """
import time
rd, wr = os.pipe()
kids, ok = [], 0
for i in range(6):
    p = os.fork()
    if p == 0:
        r, e = sc(272, 0x10000000)   # unshare(CLONE_NEWUSER), then stay alive
        os.write(wr, b"%d\\n" % (e if r else 0))
        time.sleep(600)  # alive (its namespace counted) until the parent kills it
        os._exit(0)
    kids.append(p)
    res = os.read(rd, 16).split()[0]
    print(res.decode())
for p in kids:
    os.kill(p, 9)
    os.waitpid(p, 0)
""")
        res = [int(x) for x in r.stdout.split()]
        assert len(res) == 6 and res.count(0) <= 3, (r.stdout, r.stderr)
        if res == [0, 0, 0, ENOSPC, ENOSPC, ENOSPC] or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert res == [0, 0, 0, ENOSPC, ENOSPC, ENOSPC], (r.stdout, r.stderr)


def test_qube_cannot_use_up_host_roots_inotify(ns_env):
    q = ns_env.qube("ino", private=False)
    q.start()
    code = ("import ctypes, time\nlibc = ctypes.CDLL(None, use_errno=True)\nfds = []\n"
            "while len(fds) < 5000:\n    f = libc.inotify_init1(0)\n    if f < 0: break\n    fds.append(f)\n"
            "print(len(fds), ctypes.get_errno(), flush=True)\ntime.sleep(600)\n")  # held until killed
    proc = subprocess.Popen([str(ns_fixtures.BUILD / "src/driver/bulkhead-ns"), "exec", q.name, "--",
                             "/usr/bin/python3", "-c", code], stdout=subprocess.PIPE, text=True,
                            env=dict(os.environ, BULKHEAD_RUNTIME=str(ns_env.runtime)))
    try:
        line = proc.stdout.readline().split()
        made, err = int(line[0]), int(line[1])
        assert made >= 100 and err != 0, line  # positive control: it used up its own limit
        libc = ctypes.CDLL(None, use_errno=True)
        fd = libc.inotify_init1(0)
        assert fd >= 0, "a qube used up host root's inotify instances (errno %d)" % ctypes.get_errno()
        os.close(fd)
    finally:
        proc.kill()
        proc.wait()
