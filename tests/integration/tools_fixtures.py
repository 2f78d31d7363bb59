"""Fixtures for the qvm-* tools' integration tests: a real bulkheadd on a private root
(one per test module), and a helper that runs a tool against it.

The daemon is started with --root/--runtime-dir in a temporary directory and ended by
its PID at module teardown; nothing outside the temporary directory is touched."""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

import mount_cleanup
import qid_slots
from admin_fixtures import raw_call

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))
TOOLS = BUILD / "src/tools"


class Result:
    def __init__(self, proc):
        self.rc = proc.returncode
        self.out = proc.stdout
        self.err = proc.stderr

    def __repr__(self):
        return f"Result(rc={self.rc}, out={self.out!r}, err={self.err!r})"


class ToolsDaemon:
    """A bulkheadd of our own and the tools pointed at it through $BULKHEAD_SOCKET."""

    def __init__(self, tmp, defaults=True):
        self.tmp = pathlib.Path(tmp)
        self.qid_base = qid_slots.next_base()  # apart from other runs' daemons (qid_slots.py)
        # Qubes assemble their root under the runtime dir as their own UID, so it must be
        # traversable (the state root stays private).
        self.runtime = pathlib.Path(tempfile.mkdtemp(prefix="bh-tools-run-"))
        os.chmod(self.runtime, 0o755)
        self.sock = str(self.runtime / "qubesd.sock")
        self.defaults = defaults
        self.pid = None
        self.proc = None

    def start(self):
        args = [str(BUILD / "src/admin/bulkheadd"), "--root", str(self.tmp / "root"),
                "--runtime-dir", str(self.runtime), "--no-autostart", "--qid-base", str(self.qid_base)]
        if not self.defaults:
            args.append("--no-default-qubes")
        log = open(self.tmp / "bulkheadd.log", "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        log.close()
        self.pid = self.proc.pid
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("bulkheadd exited: " + (self.tmp / "bulkheadd.log").read_text())
            try:
                self.raw(b"admin.vmclass.List+ dom0 name dom0\0")
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("bulkheadd did not come up")

    def kill_qubes(self):
        """Kills every qube this daemon runs (tests leave nothing behind)."""
        for line in self.call("admin.vm.List").splitlines():
            name, *kv = line.split(" ")
            props = dict(x.split("=", 1) for x in kv if "=" in x)
            if props.get("class") != "AdminVM" and props.get("state", "Halted") != "Halted":
                self.raw(f"admin.vm.Kill+ dom0 name {name}".encode() + b"\0")

    def stop(self):
        if self.pid is None:
            return
        if self.proc.poll() is not None:
            self.pid = None     # already gone (and reaped): never signal a reused PID
            return
        try:
            self.kill_qubes()
        except (OSError, AssertionError):
            pass
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()
        self.pid = None

    @property
    def env(self):
        env = dict(os.environ)
        env["BULKHEAD_SOCKET"] = self.sock
        env.pop("BULKHEAD_LOG", None)
        return env

    def raw(self, data):
        return raw_call(self.sock, data, timeout=20)

    def call(self, method, dest="dom0", payload=b"", arg=""):
        """An Admin API call; returns the body or raises AssertionError with the error."""
        if isinstance(payload, str):
            payload = payload.encode()
        out = self.raw(f"{method}+{arg} dom0 name {dest}".encode() + b"\0" + payload)
        if out.startswith(b"0\0"):
            return out[2:].decode()
        raise AssertionError(f"{method} failed: {out!r}")

    def state(self, vm):
        return self.call("admin.vm.CurrentState", vm).split("power_state=")[1].split()[0]

    def running(self):
        """Names of the qubes that run now (dom0 included), sorted."""
        names = [l.split(" ")[0] for l in self.call("admin.vm.List").splitlines()]
        return sorted(n for n in names if self.state(n) == "Running")

    def has_method(self, method, dest="dom0", arg=""):
        out = self.raw(f"{method}+{arg} dom0 name {dest}".encode() + b"\0")
        return b"no such method" not in out

    def run(self, tool, *args, input=None, env=None):
        exe = TOOLS / tool if (TOOLS / tool).exists() else BUILD / "src/qrexec" / tool
        proc = subprocess.run([str(exe), *args], env=env or self.env, capture_output=True,
                              text=True, input=input, timeout=120)
        return Result(proc)


@pytest.fixture(scope="module")
def qd():
    tmp = tempfile.mkdtemp(prefix="bh-tools-")
    d = ToolsDaemon(tmp)
    try:
        d.start()
    except BaseException:
        # A daemon that did not come up still leaves nothing behind.
        d.stop()
        shutil.rmtree(d.runtime, ignore_errors=True)
        mount_cleanup.unmount_below(tmp)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    yield d
    d.stop()
    shutil.rmtree(d.runtime, ignore_errors=True)
    mount_cleanup.unmount_below(tmp)
    shutil.rmtree(tmp, ignore_errors=True)


def require_qubes_start():
    """The premise of every test that starts a qube: the ns engine runs as root. Probed
    up front, so that a start that fails where it should work is a failure, not a skip."""
    if os.geteuid() != 0:
        pytest.skip("qubes start only as root (the ns engine)")
    if not (BUILD / "src/driver/bulkhead-ns").exists():
        pytest.skip("the ns engine is not built")


def qube_file(qd, vm, path, write=None):
    """Reads (or writes) a file in a running qube through qvm-run."""
    cmd = f"printf %s '{write}' > {path}" if write is not None else f"cat {path}"
    r = qd.run("qvm-run", "-p", vm, cmd)
    assert r.rc == 0, r
    return r.out


def usage_error(res, tool, message):
    """Asserts argparse's usage-error shape: usage line, "TOOL: error: MSG", exit 2."""
    assert res.rc == 2, res
    assert res.err.startswith(f"usage: {tool} "), res
    assert res.err.rstrip("\n").endswith(f"{tool}: error: {message}"), res
