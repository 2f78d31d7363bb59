"""bulkheadd runs libnftables in a helper process it forks once at its start
(src/net/nft_helper.c: a process that never forks keeps its pages warm). The qubes' rules
are the same either way; these tests check that the helper is the one that runs them,
that bulkheadd carries on without it when it fails, and that it never outlives bulkheadd."""
import os
import signal
import subprocess
import threading
import time

import pytest

from admin_fixtures import AdminError, engine_daemon, state_of  # noqa: F401
from waiting import wait_for


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
    r = subprocess.run(["nsenter", f"--net={netns_of(d, qube)}", "nft", "list", "tables"], capture_output=True,
                       text=True, timeout=30)
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


def in_netns(ns):
    """PIDs of the processes in the network namespace pinned at ns."""
    want = os.stat(ns).st_ino
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}/ns/net").st_ino == want:
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


def start_in_thread(d, qube):
    """admin.vm.Start of qube in a thread (an ns app qube starts in line: the call
    returns once it runs); the thread's outcome in the returned dict."""
    out = {}

    def run():
        try:
            out["reply"] = d.call("admin.vm.Start", qube)
        except AdminError as e:
            out["error"] = e

    t = threading.Thread(target=run, daemon=True)
    t.start()
    out["thread"] = t
    return out


def netns_of(d, qube):
    qid = int(d.call("admin.vm.property.Get+qid", qube).split()[-1])
    return d.runtime / "net" / f"q{qid}"


def test_nothing_of_a_qube_runs_before_its_rules_are_in(engine_daemon):
    """A start hands the qube's nftables table to the helper and prepares the qube
    meanwhile; its first process runs only once the table is in (spec.before_run).
    With the helper held, the start waits before anything enters the qube's network
    namespace; let go, it finishes with the table in."""
    d = engine_daemon
    helper = helper_of(d)
    assert helper
    # bulkheadd's first start probes nftables' connection counting in line
    # (topology.c): a start after it takes the path a qube's start takes
    d.call("admin.vm.Start", "b")
    ns = netns_of(d, "a")
    os.kill(helper, signal.SIGSTOP)  # this test's daemon's helper
    try:
        st = start_in_thread(d, "a")
        assert wait_for(ns.exists, timeout=30), "the start never made the qube's namespace"
        time.sleep(1.5)  # a start takes ~50 ms here: long done, but for the table
        assert st["thread"].is_alive(), st
        assert in_netns(str(ns)) == [], "a process is in the qube's namespace before its table"
        # (no Admin API call here: an ns app qube's start holds bulkheadd's loop)
        # the engine prepared the qube meanwhile (its vchan mount is made after the
        # network's prestart): the table's transaction is not waited for in line
        vchan = str(d.runtime / "qubes" / "a" / "vchan")
        assert any(line.split()[4] == vchan for line in open("/proc/self/mountinfo")), \
            "the engine waited for the table before preparing the qube"
    finally:
        os.kill(helper, signal.SIGCONT)
    st["thread"].join(60)
    assert "error" not in st, st
    assert state_of(d, "a") == "Running"
    assert "table inet bulkhead" in tables(d, "a") and "bulkhead_cap" in tables(d, "a")


def test_a_start_whose_rules_fail_runs_nothing_and_leaves_nothing(engine_daemon):
    """The helper dies while it holds a start's whole table: it may or may not have
    committed it, so the transaction is reported failed and the start fails before
    anything of the qube ran, and is cleaned up. The next start runs nftables in
    bulkheadd and works."""
    d = engine_daemon
    helper = helper_of(d)
    assert helper
    d.call("admin.vm.Start", "a")  # past the first start's probe, as above
    ns = netns_of(d, "b")
    os.kill(helper, signal.SIGSTOP)
    try:
        st = start_in_thread(d, "b")
        assert wait_for(ns.exists, timeout=30)
        time.sleep(1.0)  # the request is in the helper's socket by now
        assert in_netns(str(ns)) == []
    finally:
        os.kill(helper, signal.SIGKILL)  # the helper this test's daemon started
    st["thread"].join(60)
    assert not st["thread"].is_alive()
    assert "error" in st, st
    assert "network rules" in str(st["error"]), st["error"]
    assert state_of(d, "b") == "Halted"
    assert not ns.exists(), "the failed start left its namespace"
    assert gone(helper)
    d.call("admin.vm.Start", "b")
    assert state_of(d, "b") == "Running"
    assert "bulkhead_cap" in tables(d, "b")


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
