"""bulkheadd runs libnftables in a helper process it forks once at its start
(src/net/nft_helper.c: a process that never forks keeps its pages warm). The qubes' rules
are the same either way; these tests check that the helper is the one that runs them,
that bulkheadd carries on without it when it fails, and that it never outlives bulkheadd."""
import os
import signal
import subprocess
import time

from admin_fixtures import engine_daemon, state_of  # noqa: F401


def helper_of(d):
    """The PID of the daemon's helper: its child named bulkheadd-nft."""
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        if comm == "bulkheadd-nft" and ppid == d.proc.pid:
            return int(pid)
    return None


def run_ns(pid):
    """Nanoseconds the process has run on a CPU (schedstat's first field)."""
    return int(open(f"/proc/{pid}/schedstat").read().split()[0])


def tables(d, qube):
    qid = int(d.call("admin.vm.property.Get+qid", qube).split()[-1])
    ns = d.runtime / "net" / f"q{qid}"
    r = subprocess.run(["nsenter", f"--net={ns}", "nft", "list", "tables"], capture_output=True, text=True,
                       timeout=30)
    return r.stdout


def dead(pid, timeout=10):
    """Exited: a zombie not reaped yet, or gone."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.02)
    return False


def gone(pid, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z":
                time.sleep(0.05)
                continue
        except OSError:
            return True
        time.sleep(0.05)
    return False


def test_the_helper_runs_the_rules_and_bulkheadd_carries_on_without_it(engine_daemon):
    d = engine_daemon
    helper = helper_of(d)
    assert helper, "bulkheadd has no bulkheadd-nft child"
    # it lives in a namespace of its own whose inert table keeps the kernel's hook
    # switches on (nft_helper.c), not in bulkheadd's
    assert os.readlink(f"/proc/{helper}/ns/net") != os.readlink(f"/proc/{d.proc.pid}/ns/net")
    r = subprocess.run(["nsenter", f"--net=/proc/{helper}/ns/net", "nft", "list", "tables"], capture_output=True,
                       text=True, timeout=30)
    assert "table inet bulkhead_hooks" in r.stdout, r.stdout + r.stderr
    before = run_ns(helper)
    d.call("admin.vm.Start", "a")
    assert "bulkhead_cap" in tables(d, "a")  # the qube's connection limits are loaded
    assert run_ns(helper) > before  # by the helper: it ran (it only wakes for a request)
    os.kill(helper, signal.SIGKILL)  # the helper this test's daemon started
    # dead (its socket closed) before the next request: one that dies while it holds a
    # whole request is reported failed instead (it may have committed it)
    assert dead(helper)
    d.call("admin.vm.Start", "b")  # its run falls back to bulkheadd itself
    assert state_of(d, "b") == "Running"
    assert "bulkhead_cap" in tables(d, "b")
    assert "running nftables in bulkheadd from now on" in d.log.read_text()
    assert gone(helper)  # reaped by bulkheadd


def test_the_helper_never_outlives_bulkheadd(engine_daemon):
    d = engine_daemon
    helper = helper_of(d)
    assert helper
    d.stop()  # a clean stop: bulkheadd closes its end of the socket and reaps the helper
    assert gone(helper, timeout=0.1)
    d.start()
    helper = helper_of(d)
    assert helper
    d.proc.send_signal(signal.SIGKILL)  # the daemon this test started, killed as in a crash
    d.proc.wait()
    assert gone(helper)
    d.proc = None  # the fixture starts it again to kill what is left
