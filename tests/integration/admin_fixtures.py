"""A private bulkheadd for tests: its own root and runtime dir, raw Admin API calls."""
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import shutil
import tempfile
import time
import pathlib

import pytest

import mount_cleanup
import qid_slots

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))


class AdminError(Exception):
    def __init__(self, exc_type, msg):
        super().__init__(f"{exc_type}: {msg}")
        self.exc_type = exc_type
        self.msg = msg


def raw_call(sock_path, data, shutdown=True, timeout=60):
    """Sends raw bytes, half-closes, returns everything the daemon answers. The timeout
    is per read: a Start or Kill may take long on a slow machine (a TCG guest)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    try:
        s.sendall(data)
        if shutdown:
            s.shutdown(socket.SHUT_WR)
        out = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return out
            out += chunk
    finally:
        s.close()


def bind_over_in_private_mounts(target, replacement):
    """A preexec function (Daemon.preexec) that puts the child in a mount namespace of
    its own, private so that nothing propagates back to the host, where replacement is
    bound over target: the daemon sees a file of the test's in place of a host file,
    and the host never does. Exits 90/91/92 when a step fails."""
    def pre():
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
            os._exit(90)
        if libc.mount(None, b"/", None, 0x4000 | 0x40000, None) != 0:  # MS_REC|MS_PRIVATE
            os._exit(91)
        if libc.mount(str(replacement).encode(), str(target).encode(), None, 0x1000, None) != 0:  # MS_BIND
            os._exit(92)
    return pre



# Where KVM works new qubes would be VMs by default (default_virt_mode pvh): the
# suite's and the benches' daemons keep theirs in namespaces unless a test says pvh
# (test_vm_default_mode.py gives its daemons an environment without this).
os.environ["BULKHEAD_DEFAULT_VIRT_MODE"] = "ns"

# Every Daemon started, so that tests/conftest.py can stop one a failed test left running;
# every Daemon made, so that it can remove the runtime dirs nobody cleaned up.
LIVE = []
MADE = []


def runtime_leftovers(runtime):
    """What a bulkheadd that stopped cleanly left in its runtime dir that it should have
    removed: its socket, and the directories it makes (the network's, the qubes', each
    qube's) where they are empty. A qube left running keeps its namespace pin in net/ and
    its files in qubes/NAME/ for the next bulkheadd to adopt: those are not leftovers."""
    runtime = pathlib.Path(runtime)
    made = [runtime / "qubesd.sock", runtime / "net", runtime / "qubes"]
    if (runtime / "qubes").is_dir():
        made += sorted((runtime / "qubes").iterdir())
    left = [p for p in made if p.exists() and not (p.is_dir() and any(p.iterdir()))]
    return [str(p.relative_to(runtime)) for p in left]


class Daemon:
    def __init__(self, tmp, defaults=True, extra_args=(), qid_base=None):
        self.tmp = pathlib.Path(tmp)
        # a slot of qids of its own, kept across restarts (qid_slots.py)
        self.qid_base = qid_base or qid_slots.next_base()
        self.root = mount_cleanup.register(self.tmp / "root", owner=self)
        # Qubes assemble their root under the runtime dir as their own UID, so it must
        # not sit below pytest's private (0700) directory.
        self.runtime = pathlib.Path(tempfile.mkdtemp(prefix="bh-run-"))
        os.chmod(self.runtime, 0o755)
        self.sock = str(self.runtime / "qubesd.sock")
        self.defaults = defaults
        self.extra_args = list(extra_args)
        self.proc = None
        self.log = self.tmp / "bulkheadd.log"
        self.preexec = None  # run in the child before exec (e.g. to lower rlimits)
        self.environ = None  # bulkheadd's environment (None: the test's)
        self.leftovers = []  # what a clean stop left behind (runtime_leftovers)
        MADE.append(self)

    @property
    def env(self):
        e = dict(os.environ)
        e["BULKHEAD_SOCKET"] = self.sock
        return e

    def start(self):
        args = [str(BUILD / "src/admin/bulkheadd"), "--root", str(self.root), "--runtime-dir", str(self.runtime)]
        if self.qid_base is not None:  # (None: bulkheadd's default, or $BULKHEAD_QID_BASE)
            args += ["--qid-base", str(self.qid_base)]
        if not self.defaults:
            args.append("--no-default-qubes")
        args += self.extra_args
        self.tmp.mkdir(parents=True, exist_ok=True)
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen(args, stdout=logf, stderr=logf, stdin=subprocess.DEVNULL,
                                     preexec_fn=self.preexec, env=self.environ)
        if self not in LIVE:
            LIVE.append(self)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bulkheadd exited: {self.log.read_text()}")
            try:
                raw_call(self.sock, b"admin.vmclass.List+ dom0 name dom0\0")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("bulkheadd did not come up")

    def stop(self, sig=signal.SIGTERM):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if sig == signal.SIGTERM and self.proc.returncode == 0:
                self.leftovers += [x for x in runtime_leftovers(self.runtime) if x not in self.leftovers]
        self.proc = None
        if self in LIVE:
            LIVE.remove(self)

    def cleanup(self, check=True):
        """Removes the runtime dir (after every qube is gone). Then, with check, fails if
        a clean stop of the daemon left anything behind that it made (runtime_leftovers):
        bulkheadd removes what it made when it stops."""
        shutil.rmtree(self.runtime, ignore_errors=True)
        mount_cleanup.unmount_below(self.root)
        left, self.leftovers = self.leftovers, []
        if check:
            assert not left, f"bulkheadd left in its runtime dir {self.runtime}: {left}"

    def raw(self, data, **kw):
        return raw_call(self.sock, data, **kw)

    def call(self, method, dest="dom0", payload=b"", arg=""):
        if isinstance(payload, str):
            payload = payload.encode()
        if "+" not in method:
            method = method + "+" + arg
        out = self.raw(f"{method} dom0 name {dest}".encode() + b"\0" + payload)
        return parse_reply(out)

    def tool(self, name, *args, check=False, input=None):
        """Runs a qvm-* tool against this daemon."""
        exe = BUILD / "src/tools" / name
        return subprocess.run([str(exe), *args], env=self.env, capture_output=True, text=True,
                              check=check, input=input, timeout=120)


def qvm_run(d, *args, input=None, timeout=120):
    """qvm-run against daemon d (its socket, and its runtime dir where the qubes' qrexec
    sockets are); output as bytes."""
    e = dict(d.env, BULKHEAD_RUNTIME=str(d.runtime))
    return subprocess.run([str(BUILD / "src/qrexec/qvm-run"), *args], env=e, capture_output=True, input=input,
                          timeout=timeout)


def parse_reply(out):
    if out.startswith(b"0\0"):
        return out[2:].decode()
    if out.startswith(b"2\0"):
        parts = out[2:].split(b"\0")
        raise AdminError(parts[0].decode(), parts[2].decode().replace("%%", "%"))
    raise RuntimeError(f"malformed reply: {out!r}")


@pytest.fixture
def daemon(tmp_path):
    d = Daemon(tmp_path, extra_args=["--no-autostart"]).start()
    yield d
    kill_all(d)
    d.stop()
    d.cleanup()


@pytest.fixture
def bare_daemon(tmp_path):
    d = Daemon(tmp_path, defaults=False).start()
    yield d
    d.stop()
    d.cleanup()


def running_qubes(d):
    out = []
    for line in d.call("admin.vm.List").splitlines():
        name, *kv = line.split(" ")
        props = dict(x.split("=", 1) for x in kv)
        if props["class"] != "AdminVM" and props["state"] != "Halted":
            out.append(name)
    return out


def kill_all(d):
    """Kills every running qube of this daemon (tests clean up what they start), also
    after a test failed while its daemon was stopped (a new one adopts them first)."""
    if d.proc is None or d.proc.poll() is not None:
        d.start()
    for _ in range(2):  # a netvm refused while a client still ran goes on the second pass
        for name in running_qubes(d):
            try:
                d.call("admin.vm.Kill", name)
            except AdminError:
                pass


def state_of(d, name):
    return d.call("admin.vm.CurrentState", name).split("power_state=")[1]


def wait_state(d, name, want, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if state_of(d, name) == want:
            return True
        time.sleep(0.1)
    return False


STRACE = "/usr/bin/strace"


@contextlib.contextmanager
def syscalls_held(pid, calls, ms, paths=()):
    """strace attached to pid and every child it forks from now on, holding each of calls
    (comma-separated names) ms at its entry, only on paths when any are given; the block
    runs once strace is attached, and strace detaches at its end. Callers check STRACE."""
    args = [STRACE, "-f", "-qq", "-o", "/dev/null"]
    for p in paths:
        args += ["-P", str(p)]
    args += ["-e", f"trace={calls}", "-e", f"inject={calls}:delay_enter={ms * 1000}", "-p", str(pid)]
    tracer = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while "\nTracerPid:\t0\n" in pathlib.Path(f"/proc/{pid}/status").read_text() and tracer.poll() is None:
            assert time.time() < deadline, "strace did not attach"
            time.sleep(0.05)
        assert tracer.poll() is None, "strace did not attach"
        yield tracer
    finally:
        tracer.terminate()  # detaches
        tracer.wait()


def list_waits_while(d, name, states, list_dest, timeout=60):
    """While name's state is one of states: admin.vm.List of list_dest, timed, then name's
    state (untimed; "removed" once it is gone), every 50 ms. [(seconds, state after)]."""
    calls, t0 = [], time.monotonic()
    while time.monotonic() - t0 < timeout:
        t1 = time.monotonic()
        d.call("admin.vm.List", list_dest)
        w = time.monotonic() - t1
        try:
            st = state_of(d, name)  # after the timed call: it was still in that state then
        except AdminError:
            st = "removed"
        calls.append((w, st))
        if st not in states:
            break
        time.sleep(0.05)
    return calls


@pytest.fixture
def engine_daemon(tmp_path):
    """A daemon with template `host` and app qubes `a` and `b`; every qube is killed and
    the daemon stopped at the end."""
    d = Daemon(tmp_path, defaults=False).start()
    d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
    d.call("admin.property.Set+default_template", payload="host")
    d.call("admin.vm.Create.AppVM+host", payload="name=a label=red")
    d.call("admin.vm.Create.AppVM+host", payload="name=b label=blue")
    yield d
    if d.proc is None:
        d.start()
    kill_all(d)
    d.stop()
    d.cleanup()
