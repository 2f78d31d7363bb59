"""Host-wide counters a qube's /proc showed: /proc/vmstat (page, swap, NUMA and reclaim
counts since the host's boot, the host's free and dirty pages), /proc/schedstat (a
timestamp in jiffies since boot, per-CPU run and wait times) and /proc/pressure/*
(host-wide stall averages and their total in microseconds since boot) carry other
qubes' activity and the host's uptime. bulkhead-procfs serves them in the kernel's
layout with every value 0 (names, schedstat's version and CPU masks kept), so tools that
parse them still work. And bulkhead-procfs's memory is charged to the qube (cgroup v1 and v2).
Positive controls: the host's own files have the same names and non-zero values."""
import os
import pathlib as _pl
import re
import sys as _sys

import pytest

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import cgroup_v2_host, ns_env, proc_cgroups  # noqa: E402,F401
from test_ns_procfs import fuse_host  # noqa: E402,F401  (autouse: skips without /dev/fuse)


def host(path):
    with open(path) as f:
        return f.read()


def numbers(text):
    """Every plain or decimal number in text, CPU masks and versions aside."""
    return [float(x) for x in re.findall(r"(?<![\w,.])\d+(?:\.\d+)?(?![\w,])", text)]


def names(text):
    return [line.split()[0] for line in text.splitlines() if line.strip()]


def test_host_wide_counters_read_as_zeros(ns_env):
    q = ns_env.qube("pfz", private=False)
    q.start()
    files = ["/proc/vmstat"] + [p for p in ("/proc/schedstat", "/proc/pressure/cpu", "/proc/pressure/io",
                                            "/proc/pressure/memory") if os.path.exists(p)]
    r = q.py("import sys\nfor p in sys.argv[1:]:\n    print('=== ' + p)\n    print(open(p).read(), end='')\n"
             .replace("sys.argv[1:]", repr(files)))
    assert r.returncode == 0, r.stderr
    seen = {}
    for part in r.stdout.split("=== ")[1:]:
        path, _, text = part.partition("\n")
        seen[path] = text
    assert set(seen) == set(files), seen.keys()
    for p in files:
        h = host(p)
        # control: the host's file is the same file, with figures in it
        assert names(seen[p]) == names(h) or p == "/proc/vmstat" and set(names(seen[p])) == set(names(h)), p
        assert any(n > 0 for n in numbers(h)), (p, h[:200])
        body = seen[p]
        if p == "/proc/schedstat":  # the format version stays, every count is 0
            body = "\n".join(line for line in body.splitlines() if not line.startswith("version"))
            body = re.sub(r"^(domain\d+) \S+", r"\1", body, flags=re.M)
        assert numbers(body) and all(n == 0 for n in numbers(body)), (p, seen[p][:300])
    # the layout: vmstat is "name value", pressure "some avg10=0.00 ... total=0"
    assert re.match(r"^nr_free_pages 0$", seen["/proc/vmstat"], re.M), seen["/proc/vmstat"][:200]
    if "/proc/pressure/cpu" in seen:
        assert seen["/proc/pressure/cpu"].startswith("some avg10=0.00 avg60=0.00 avg300=0.00 total=0\n")
    # and a tool that parses vmstat still runs
    r = q.sh("vmstat -s | head -3; vmstat 1 2 | tail -1")
    assert r.returncode == 0, (r.stdout, r.stderr)


def test_the_servers_memory_is_charged_to_the_qube(ns_env):
    if cgroup_v2_host():
        return servers_memory_charged_v2(ns_env)
    if not os.path.isdir("/sys/fs/cgroup/memory"):
        pytest.skip("no memory controller")
    q = ns_env.qube("pfm", private=False)
    q.start()
    assert q.exec("cat", "/proc/vmstat").returncode == 0
    pid = int((q.runtime_dir / "procfs.pid").read_text())
    init = int((q.runtime_dir / "init.pid").read_text().split()[0])

    def cgroups(p):
        return dict(line.split(":", 2)[1:] for line in host(f"/proc/{p}/cgroup").splitlines())

    mine, qubes = cgroups(pid), cgroups(init)
    # control: the qube's init is in its own memory cgroup, not the root one
    assert qubes["memory"] != "/" and q.name in qubes["memory"], qubes
    assert mine["memory"] == qubes["memory"], (mine, qubes)
    # its freezer and pids stay the root's: pausing or killing the qube does not touch it
    assert mine.get("freezer", "/") == "/" and mine.get("pids", "/") == "/", mine


def servers_memory_charged_v2(ns_env):
    """v2 (one cgroup per process for every controller): the server is in the qube's
    cgroup's "@procfs" leaf, the qube's processes in "@qube"; the qube's cgroup gives its
    children no controller, so both are charged to its memory.max (and pids, CPU).
    Pausing freezes "@qube" only: the server keeps answering."""
    q = ns_env.qube("pfm", private=False)
    q.start()
    assert q.exec("cat", "/proc/vmstat").returncode == 0
    pid = int((q.runtime_dir / "procfs.pid").read_text())
    qube = q.cgroup("")
    raw = host(f"/proc/{q.init_pid()}/cgroup").strip().split("::", 1)[1]
    assert raw.endswith(f"/{q.name}/@qube"), raw  # control: init is in the qube's leaf
    assert proc_cgroups(pid)[""] == qube / "@procfs", (proc_cgroups(pid), qube)
    assert (qube / "memory.max").exists() and (qube / "cgroup.subtree_control").read_text().strip() == ""
    assert q.cmd("pause").returncode == 0
    try:
        assert "frozen 1" in (qube / "@qube" / "cgroup.events").read_text()
        assert "frozen 0" in (qube / "@procfs" / "cgroup.events").read_text()
    finally:
        q.cmd("unpause")


def test_cpuidle_times_are_not_visible(ns_env):
    idle = sorted(_pl.Path("/sys/devices/system/cpu").glob("cpu[0-9]*/cpuidle/state*/time"))
    if not idle:
        pytest.skip("this host has no cpuidle states (no cpuidle driver): nothing to mask")
    q = ns_env.qube("pfi", private=False)
    q.start()
    cpu = idle[0].parents[2].name
    r = q.sh(f"ls /sys/devices/system/cpu/{cpu}/cpuidle | wc -l; ls /sys/devices/system/cpu/{cpu} | wc -l")
    assert r.returncode == 0, r.stderr
    inside_idle, inside_cpu = (int(x) for x in r.stdout.split())
    assert inside_cpu > 0, r.stdout      # control: the CPU's dir is there (topology...)
    assert inside_idle == 0, r.stdout    # its cpuidle states are not
