"""Attacks on mounting inside an ns qube (/dev/fuse and the qube's FUSE mount broker,
src/driver/ns/fusebroker.c), from the qube's root. Each with a positive control:
- a stuck FUSE server in a qube (fuse2fs stopped with SIGSTOP, a reader blocked on it)
  hangs nothing outside the qube: `qvm-ls`, another block attach and detach (whose
  helper makes a node in the qube's /dev), host root looking into the mount (refused
  by the kernel at once: not the qube's user namespace), then Kill, after which the
  private volume's loop device is gone; the control is the qube's own reader, which
  does block;
- the broker mounts FUSE only: not over the qube's "/" or on its /dev or /proc, not for a
  non-root user, not with a descriptor that is not /dev/fuse, not from a malformed
  request; it unmounts only its own mounts (not /proc, not the qube's /usr);
  the control is the same request on /mnt, which mounts and unmounts;
- the broker's memory and descriptors are not the qube's to read (it stays
  undumpable with a host-owned memory image); the control reads a qube process's."""
import os
import shutil
import subprocess
import sys
import time

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "integration"))
from admin_fixtures import engine_daemon, wait_state  # noqa: E402,F401
from qrexec_fixtures import bin_path  # noqa: E402

pytestmark = pytest.mark.skipif(not shutil.which("fuse2fs") or not os.path.exists("/dev/fuse"),
                                reason="needs fuse2fs (Debian package fuse2fs) and /dev/fuse on the host")


def make_loop(tmp_path, name, ext4=True):
    img = tmp_path / name
    if ext4:
        src = tmp_path / (name + ".d")
        src.mkdir()
        (src / "hello.txt").write_bytes(b"hello\n")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(src), str(img), "16M"], check=True, capture_output=True)
    else:
        with open(img, "wb") as f:
            f.truncate(1 << 20)
    return subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True,
                          check=True).stdout.strip()


@pytest.fixture
def loops(tmp_path):
    made = []
    yield lambda name, ext4=True: made.append(make_loop(tmp_path, name, ext4)) or os.path.basename(made[-1])
    for dev in made:
        subprocess.run(["losetup", "-d", dev], check=False)


def qrun(d, qube, cmd, user="root", timeout=60):
    return subprocess.run([bin_path("qvm-run"), "-p", "-u", user, qube, cmd], env=d.env,
                          capture_output=True, timeout=timeout)


def init_pid(d, qube):
    return int((d.runtime / "qubes" / qube / "init.pid").read_text().split()[0])


def test_a_stuck_fuse_server_hangs_nothing_outside_its_qube(engine_daemon, loops):
    d = engine_daemon
    first, second = loops("one.img"), loops("two.img", ext4=False)
    d.call("admin.vm.Start", "a")
    assert d.tool("qvm-block", "attach", "a", f"dom0:{first}").returncode == 0
    r = qrun(d, "a", "mkdir -p /mnt/removable && mount /dev/xvdi /mnt/removable && cat /mnt/removable/hello.txt && "
                     "kill -STOP $(pgrep -x fuse2fs) && "
                     "(setsid sh -c 'ls /mnt/removable/never-seen-before' </dev/null >/dev/null 2>&1 &) ; echo started")
    assert r.stdout == b"hello\nstarted\n", r
    # control: the server is stuck, a reader in the qube blocks on it
    r = qrun(d, "a", "timeout 3 stat /mnt/removable/another-new-name; echo rc=$?")
    assert r.stdout.endswith(b"rc=124\n"), r
    # outside the qube nothing waits for it
    t0 = time.time()
    r = d.tool("qvm-ls", "--raw-data", "-O", "name,state")
    assert r.returncode == 0 and "a|Running" in r.stdout, r
    assert d.tool("qvm-block", "attach", "a", f"dom0:{second}").returncode == 0     # a node in its /dev
    assert d.tool("qvm-block", "detach", "a", f"dom0:{second}").returncode == 0
    r = subprocess.run(["timeout", "60", "ls", f"/proc/{init_pid(d, 'a')}/root/mnt/removable"],
                       capture_output=True, text=True)
    assert r.returncode not in (0, 124) and "Permission denied" in r.stderr, r    # refused, not waiting
    # a wait on the stopped server would last until the qube is killed: the bound only
    # says nothing waited, however slow the machine (each step takes < 1 s here)
    assert time.time() - t0 < 100
    img_loop = subprocess.run(["losetup", "-j", str(d.root / "pools/default/qubes/a/private.img")],
                              capture_output=True, text=True).stdout
    assert img_loop, "the private volume should be on a loop device while the qube runs"
    d.call("admin.vm.Kill", "a")
    assert wait_state(d, "a", "Halted", timeout=60)
    deadline = time.time() + 60
    while time.time() < deadline and subprocess.run(
            ["losetup", "-j", str(d.root / "pools/default/qubes/a/private.img")], capture_output=True,
            text=True).stdout:
        time.sleep(0.2)
    assert subprocess.run(["losetup", "-j", str(d.root / "pools/default/qubes/a/private.img")],
                          capture_output=True, text=True).stdout == ""


PROBE = r'''
import errno, os, socket, struct, sys
def ask(op, fds, flags=0, subtype=b"probe", source=b"probe", raw=None):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(b"\0bulkhead-fuse-mount")
    req = raw if raw is not None else struct.pack("c3xI32s128s", op, flags, subtype, source)
    socket.send_fds(s, [req], fds)
    ans = s.recv(4)
    s.close()
    e = struct.unpack("i", ans)[0]
    return "ok" if e == 0 else errno.errorcode.get(e, str(e))
def fuse():
    return os.open("/dev/fuse", os.O_RDWR)
def path(p):
    return os.open(p, os.O_PATH | os.O_DIRECTORY)
os.makedirs("/mnt/probe", exist_ok=True)
os.makedirs("/dev/shm/probe", exist_ok=True)
what = sys.argv[1]
if what == "user":
    os.setgid(1000); os.setuid(1000)
    print("user", ask(b"M", [fuse(), path("/tmp")]))
    sys.exit()
print("root", ask(b"M", [fuse(), path("/")]))
print("dev", ask(b"M", [fuse(), path("/dev")]))
print("devshm", ask(b"M", [fuse(), path("/dev/shm/probe")]))
print("proc", ask(b"M", [fuse(), path("/proc")]))
print("notfuse", ask(b"M", [os.open("/dev/null", os.O_RDWR), path("/mnt/probe")]))
print("notdir", ask(b"M", [fuse(), os.open("/etc/hostname", os.O_PATH)]))
print("garbage", ask(b"M", [fuse(), path("/mnt/probe")], raw=b"M" + b"\xff" * 167))
print("badflags", ask(b"M", [fuse(), path("/mnt/probe")], flags=1 << 20))
print("badsource", ask(b"M", [fuse(), path("/mnt/probe")], source=b"a,b"))
print("umount-proc", ask(b"U", [path("/proc")]))
print("umount-usr", ask(b"U", [path("/usr")]))
print("mount", ask(b"M", [fuse(), path("/mnt/probe")], source=b"probe"))
print("listed", any(" /mnt/probe fuse.probe " in l for l in open("/proc/self/mounts")))
print("umount", ask(b"U", [path("/mnt/probe")]))
print("listed", any(" /mnt/probe fuse.probe " in l for l in open("/proc/self/mounts")))
'''


def test_the_broker_makes_fuse_mounts_only_where_harmless(engine_daemon, loops):
    d = engine_daemon
    dev = loops("one.img")
    d.call("admin.vm.Start", "a")
    assert d.tool("qvm-block", "attach", "a", f"dom0:{dev}").returncode == 0    # starts the broker
    r = qrun(d, "a", f"timeout 30 python3 -c '{PROBE}' root")
    assert r.returncode == 0, r.stderr
    assert r.stdout.decode().split("\n") == [
        "root EPERM", "dev EPERM", "devshm EPERM", "proc EPERM", "notfuse EBADF", "notdir ENOTDIR", "garbage EINVAL",
        "badflags EINVAL", "badsource EINVAL", "umount-proc EPERM", "umount-usr EPERM",
        "mount ok", "listed True", "umount ok", "listed False", ""], r.stdout    # the control: mount, unmount
    r = qrun(d, "a", f"python3 -c '{PROBE}' user")
    assert r.stdout == b"user EPERM\n", r
    # without the broker, the qube's root still mounts nothing itself (Landlock)
    r = qrun(d, "a", "mount -t tmpfs none /mnt/probe; echo rc=$?")
    assert r.stdout.endswith(b"rc=32\n") or r.stdout.endswith(b"rc=1\n"), r


def test_the_broker_is_not_the_qubes_to_read(engine_daemon, loops):
    d = engine_daemon
    dev = loops("one.img")
    d.call("admin.vm.Start", "a")
    assert d.tool("qvm-block", "attach", "a", f"dom0:{dev}").returncode == 0
    r = qrun(d, "a", "for p in /proc/[0-9]*; do [ \"$(cat $p/comm)\" = bulkhead-fuse-b ] && b=${p#/proc/}; done; "
                     "echo broker=$b; cat /proc/$b/maps >/dev/null 2>&1 && echo maps-read; "
                     "ls /proc/$b/fd >/dev/null 2>&1 && echo fds-read; "
                     "head -c1 /proc/$b/environ >/dev/null 2>&1 && echo environ-read; "
                     "cat /proc/self/maps >/dev/null && echo own-maps-read")
    out = r.stdout.decode()
    assert "broker=" in out and "broker=\n" not in out, out      # it runs in the qube's PID namespace
    assert "maps-read" not in out.replace("own-maps-read", "") and "fds-read" not in out and \
        "environ-read" not in out, out
    assert out.endswith("own-maps-read\n"), out                   # control


SELF_DEADLOCK = r'''
import os, socket, struct, sys, threading, time
def ask(op, fds, subtype):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    s.connect(b"\0bulkhead-fuse-mount")
    socket.send_fds(s, [struct.pack("c3xI32s128s", op, 0, subtype, subtype)], fds)
    return struct.unpack("i", s.recv(4))[0]
os.makedirs("/mnt/dl", exist_ok=True)
fuse = os.open("/dev/fuse", os.O_RDWR)
assert ask(b"M", [fuse, os.open("/mnt/dl", os.O_PATH | os.O_DIRECTORY)], b"dl") == 0
buf = os.read(fuse, 1 << 20)                      # FUSE_INIT
length, opcode, unique = struct.unpack_from("<IIQ", buf)
assert opcode == 26, opcode
major, minor, readahead = struct.unpack_from("<III", buf, 40)
body = struct.pack("<IIIIHHIIHHI28x", 7, min(minor, 31), readahead, 0, 1, 1, 65536, 0, 0, 0, 0)
os.write(fuse, struct.pack("<IiQ", 16 + len(body), 0, unique) + body)
threading.Thread(target=lambda: os.stat("/mnt/dl/x"), daemon=True).start()
req = os.read(fuse, 1 << 20)                      # the thread's request: read, never answered
open("/run/dl-ready", "w").write("%d\n" % struct.unpack_from("<I", req, 4)[0])
time.sleep(100000)
'''


def test_a_fuse_server_that_deadlocks_itself_cannot_outlive_kill(engine_daemon, loops):
    """A FUSE server that reads a request made by another thread of its own process and
    never answers: after SIGKILL that thread waits for the answer uninterruptibly and the
    process (holding /dev/fuse itself) cannot exit, so the qube's init would never end.
    The engine aborts the qube's FUSE connections (fusectl) before it kills: Kill ends
    the qube, its private image is released, and it starts again."""
    d = engine_daemon
    first = loops("one.img")
    d.call("admin.vm.Start", "a")
    assert d.tool("qvm-block", "attach", "a", f"dom0:{first}").returncode == 0  # starts the broker
    r = subprocess.run([bin_path("qvm-run"), "-p", "-u", "root", "a",
                        "cat > /run/dl.py && (setsid python3 /run/dl.py </dev/null >/run/dl.log 2>&1 &); "
                        "for i in $(seq 600); do [ -s /run/dl-ready ] && break; sleep 0.1; done; "
                        "cat /run/dl-ready /run/dl.log"],
                       input=SELF_DEADLOCK.encode(), env=d.env, capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout.split(b"\n")[0].isdigit(), r  # control: a request is held
    pid = init_pid(d, "a")
    d.call("admin.vm.Kill", "a")
    assert wait_state(d, "a", "Halted", timeout=60)
    deadline = time.time() + 60  # without the abort, init would never end
    while time.time() < deadline and os.path.exists(f"/proc/{pid}"):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{pid}"), "the qube's init outlived Kill"
    d.call("admin.vm.Start", "a")  # not "already running"
    assert qrun(d, "a", "echo back").stdout == b"back\n"
