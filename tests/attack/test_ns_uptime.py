"""What a qube can learn about the host's uptime, read as the qube's root.

Hidden (the qube's time namespace; spawn.c sets its monotonic and boot clocks to start
near zero): CLOCK_MONOTONIC, CLOCK_BOOTTIME, /proc/uptime's first field, /proc/stat's
btime and the start times in /proc/<pid>/stat (the kernel shifts the last two by the
namespace's offset). Positive control: the host has been up far longer than the qube.

Hidden by the qube's computed /proc files (bulkhead-procfs, docs/ns-engine.md): host-wide
CPU accounting. The kernel's /proc/uptime second field is the host's total idle time and
/proc/stat's cpu lines its busy and idle ticks since boot (their sum over CPUs is the
host's uptime); /proc/softirqs and /proc/interrupts, and /proc/stat's intr, ctxt,
processes and softirq lines, count since boot too. In a qube they count from its start."""
import os
import pathlib as _pl
import subprocess
import sys
import sys as _sys
import time

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, attack  # noqa: E402,F401

HZ = os.sysconf("SC_CLK_TCK")
NCPU = os.cpu_count()


def host_uptime():
    return float(_pl.Path("/proc/uptime").read_text().split()[0])


@pytest.fixture
def old_host():
    if host_uptime() < 600:
        pytest.skip("the host has been up for less than 10 minutes: its uptime and a qube's are too close to tell apart")


CLOCKS = """
import time
print("mono", time.clock_gettime(time.CLOCK_MONOTONIC))
print("boot", time.clock_gettime(time.CLOCK_BOOTTIME))
print("uptime", open("/proc/uptime").read().split()[0])
print("btime", [l.split()[1] for l in open("/proc/stat") if l.startswith("btime")][0])
print("start1", int(open("/proc/1/stat").read().rsplit(")", 1)[1].split()[19]) / %d)
print("now", time.time())
""" % HZ

TOTALS = """
print("idle", float(open("/proc/uptime").read().split()[1]) / %d)
cpu = [l.split() for l in open("/proc/stat") if l.startswith("cpu ")][0]
print("stat", sum(int(x) for x in cpu[1:8]) / %d / %d)
""" % (NCPU, HZ, NCPU)


def values(q, code):
    r = attack(q, code)
    assert r.returncode == 0, r.stderr
    return {k: float(v) for k, v in (line.split() for line in r.stdout.splitlines())}


def test_qube_clocks_do_not_reveal_host_uptime(ns_env, old_host):
    q = ns_env.qube("upt", private=False)
    t0 = time.time()
    q.start()
    time.sleep(1)
    v = values(q, CLOCKS)
    age = time.time() - t0 + 5  # the qube is this old at most (with slack)
    host = host_uptime()
    assert host > age + 300  # positive control: the host's figure is far from the qube's
    for k in ("mono", "boot", "uptime", "start1"):
        assert 0 <= v[k] <= age, (k, v[k], "host uptime", host)
    # btime is the qube's boot (its start), not the host's
    assert abs((v["now"] - v["uptime"]) - v["btime"]) < 5, v
    assert v["now"] - v["btime"] <= age, v


def test_qube_cpu_totals_do_not_reveal_host_uptime(ns_env, old_host):
    q = ns_env.qube("uptc", private=False)
    t0 = time.time()
    q.start()
    v = values(q, TOTALS)
    age = time.time() - t0 + 5
    host = {k: float(x) for k, x in (l.split() for l in
                                    subprocess.run([sys.executable, "-c", TOTALS], capture_output=True,
                                                   text=True, check=True).stdout.splitlines())}
    assert host["idle"] > age + 300 and host["stat"] > age + 300, host  # control: the host's show it
    assert v["idle"] <= age and v["stat"] <= age, (v, "qube age", age, "host uptime", host_uptime())


def counters(text):
    """{(label, column): count} of /proc/softirqs or /proc/interrupts (the counts before
    the first word on each line), or of /proc/stat's counter lines."""
    out = {}
    for line in text.splitlines()[1:] if not text.startswith("cpu") else text.splitlines():
        parts = line.split()
        if not parts or (text.startswith("cpu") and parts[0] not in ("intr", "ctxt", "processes", "softirq")):
            continue
        for i, x in enumerate(parts[1:]):
            if not x.isdigit():
                break
            out[(parts[0], i)] = int(x)
    return out


@pytest.mark.parametrize("path", ["/proc/softirqs", "/proc/interrupts", "/proc/stat"])
def test_qube_counters_count_from_its_start(ns_env, old_host, path):
    """The host-wide counts (interrupts, softirqs, context switches, forks) carry other
    qubes' activity, so a qube sees each as 0, in the kernel's layout: read the host's
    file before the start and after the qube's read (the control: the host's counts are
    large and grew meanwhile)."""
    q = ns_env.qube("uptk", private=False)
    before = counters(_pl.Path(path).read_text())
    q.start()
    r = q.exec("cat", path)
    after = counters(_pl.Path(path).read_text())
    assert r.returncode == 0, r.stderr
    seen = counters(r.stdout)
    assert len(seen) >= 2 and seen.keys() <= after.keys(), (sorted(seen)[:5], sorted(after)[:5])
    # control: the host's counts hold far more than what grew during the qube's start
    assert sum(before.values()) > 2 * sum(after[k] - before.get(k, 0) for k in after), path
    over = {k: (v, after[k] - before.get(k, 0)) for k, v in seen.items() if v > after[k] - before.get(k, 0)}
    assert not over, (path, list(over.items())[:5])
    assert sum(after.values()) > sum(before.values()), path  # the host counted meanwhile
    nonzero = {k: v for k, v in seen.items() if v}
    assert not nonzero, (path, list(nonzero.items())[:5])
