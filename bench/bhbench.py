"""Shared helpers for the real-qube benches (bench/qube_start.sh, bench/dispvm.sh,
bench/qrexec_filecopy_qubes.sh): a private bulkheadd with a `host` template, timing of
commands, the bubblewrap peer, and the engine's cgroup paths. Figures only: nothing here
passes or fails on speed."""
import os
import pathlib
import signal
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests/integration"))
from admin_fixtures import BUILD, AdminError, Daemon, kill_all, state_of  # noqa: E402,F401

QVM_RUN = str(BUILD / "src/qrexec/qvm-run")

# The peer: bubblewrap with a comparable sandbox (every namespace, host /usr read-only,
# fresh /proc and /dev), running the same no-op.
BWRAP = ["bwrap", "--unshare-all", "--die-with-parent", "--ro-bind", "/usr", "/usr",
         "--symlink", "usr/lib64", "/lib64", "--symlink", "usr/bin", "/bin",
         "--symlink", "usr/lib", "/lib", "--proc", "/proc", "--dev", "/dev",
         "--tmpfs", "/tmp", "--hostname", "q", "true"]


def median_ms(xs):
    return statistics.median(xs) * 1000


def timed(cmd, env=None, check=True):
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, capture_output=True)
    dt = time.perf_counter() - t0
    if check and r.returncode != 0:
        raise RuntimeError(f"{cmd}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
    return dt


def bwrap_times(n):
    subprocess.run(BWRAP, check=True)  # warm the page cache like the qube's first round
    return [timed(BWRAP) for _ in range(n)]


def preloaded_ready(b):
    """The name of a Running preloaded disposable of bench `b`'s daemon, or None."""
    for line in b.call("admin.vm.List").splitlines():
        name, *kv = line.split(" ")
        p = dict(x.split("=", 1) for x in kv)
        if p.get("class") == "DispVM" and p.get("state") == "Running":
            try:
                b.call("admin.vm.feature.Get+preload-dispvm", name)
                return name
            except AdminError:
                pass
    return None


def wait_preloaded(b, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        n = preloaded_ready(b)
        if n:
            return n
        time.sleep(0.01)
    raise RuntimeError("no preloaded disposable became ready")


def ratio(a, b):
    return f"{a / b:.2f}x" if b else "n/a"


class Bench:
    """A private daemon (temp root and runtime dir, no default qubes, no autostart) with
    template `host`; everything it started is killed and the daemon stopped on close."""

    def __init__(self):
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="bh-bench-", dir="/var/tmp"))
        os.chmod(self.tmp, 0o755)
        self.d = Daemon(self.tmp, defaults=False, extra_args=["--no-autostart"])
        # Its own session: a TERM/INT sent to our process group (timeout, Ctrl-C) must not
        # stop the daemon before close() has killed its qubes through it (a stopped
        # daemon leaves running qubes running, by design).
        self.d.preexec = os.setsid
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, _exit_on_signal)
        self.d.start()
        self.call = self.d.call
        self.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
        self.call("admin.property.Set+default_template", payload="host")
        self.env = dict(self.d.env, BULKHEAD_RUNTIME=str(self.d.runtime))

    def create_app(self, name, label="red"):
        self.call("admin.vm.Create.AppVM+host", payload=f"name={name} label={label}")

    def qvm_run(self, *args, check=True):
        return timed([QVM_RUN, *args], env=self.env, check=check)

    def wait_state(self, name, want, timeout=60):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if state_of(self.d, name) == want:
                return
            time.sleep(0.01)
        raise RuntimeError(f"{name} not {want} after {timeout}s")

    def cpu_ns(self):
        """CPU time used so far by the daemon and by every qube it runs (its processes,
        the qubes' cgroups): what is still busy after a call returned."""
        total = 0
        try:
            f = open(f"/proc/{self.d.proc.pid}/stat").read().rsplit(")", 1)[1].split()
            total += (int(f[11]) + int(f[12]) + int(f[13]) + int(f[14])) * 10_000_000  # utime..cstime, ticks
        except (OSError, IndexError, ValueError):
            pass
        tag = self.cgroup_tag()
        for p, scale in ((f"/sys/fs/cgroup/{tag}/cpu.stat", 1000), (f"/sys/fs/cgroup/cpuacct/{tag}/cpuacct.usage", 1)):
            try:
                text = open(p).read()
            except OSError:
                continue
            if scale == 1000:
                text = next((l.split()[1] for l in text.splitlines() if l.startswith("usage_usec")), "0")
            total += int(text) * scale
            break
        return total

    def wait_idle(self, quiet_ms=50, timeout=5.0):
        """Waits until the daemon and its qubes have used no CPU for quiet_ms (at most
        timeout s), so that a peer round measured next is not slowed by our leftovers
        (a disposable still being removed, the next preloaded one still starting).
        Returns how long it waited."""
        t0 = time.perf_counter()
        self.call("admin.vm.List")  # served after the daemon's deferred work
        last, since = self.cpu_ns(), time.perf_counter()
        while time.perf_counter() - t0 < timeout:
            time.sleep(quiet_ms / 5000)
            now = self.cpu_ns()
            if now != last:
                last, since = now, time.perf_counter()
            elif time.perf_counter() - since >= quiet_ms / 1000:
                break
        return time.perf_counter() - t0

    def cgroup_tag(self):
        """The engine's per-daemon cgroup parent (src/driver/ns/cgroup.c: FNV-1a of the
        runtime dir's real path, 48 bits)."""
        h = 1469598103934665603
        for c in os.path.realpath(self.d.runtime).encode():
            h = ((h ^ c) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        return f"bulkhead-{h & 0xFFFFFFFFFFFF:012x}"

    def procs_of(self, name):
        tag = self.cgroup_tag()
        for p in (f"/sys/fs/cgroup/{tag}/{name}/cgroup.procs", f"/sys/fs/cgroup/memory/{tag}/{name}/cgroup.procs"):
            if os.path.exists(p):
                return open(p).read().split()
        return []

    def memory_of(self, name):
        """(cgroup memory usage, RSS of its processes) of a running qube, in bytes."""
        tag = self.cgroup_tag()
        v2 = pathlib.Path(f"/sys/fs/cgroup/{tag}/{name}")
        if (v2 / "memory.current").exists():
            usage = int((v2 / "memory.current").read_text())
            procs = (v2 / "cgroup.procs").read_text().split()
        else:
            cg = pathlib.Path(f"/sys/fs/cgroup/memory/{tag}/{name}")
            usage = int((cg / "memory.usage_in_bytes").read_text())
            procs = (cg / "cgroup.procs").read_text().split()
        return usage, sum(rss_kib(p) for p in procs) * 1024, len(procs)

    def close(self):
        try:
            if self.d.proc is not None:
                kill_all(self.d)
        finally:
            self.d.stop()
            self.d.cleanup()
            subprocess.run(["rm", "-rf", str(self.tmp)])


def _exit_on_signal(signum, frame):
    raise SystemExit(128 + signum)  # so that the benches' finally: close() runs


def rss_kib(pid):
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_kib(pid):
    """Proportional set size: shared pages divided among their users."""
    try:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0
