"""What a qube can learn about other qubes and the host, read as the qube's root.

Nothing about another qube may be visible (its name, its disk activity), and host facts
that no software in a qube needs are masked. Each test first shows on the host that the
fact exists (so the test would catch it leaking), and inside the qube that the files it
keeps (CPU topology, its own network devices, its own mounts) still work."""
import os
import pathlib as _pl
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, attack  # noqa: E402,F401

READ_ALL = """
import glob, os
def dump(path):
    try:
        if os.path.isdir(path):
            return "DIR " + " ".join(sorted(os.listdir(path)))
        with open(path, "rb") as f:
            return f.read(1 << 20).decode("latin-1")
    except OSError as e:
        return "ERR %d" % e.errno
for p in PATHS:
    for q in (glob.glob(p) or [p]):
        print("=== " + q)
        print(dump(q))
"""


def read_in(q, paths):
    r = attack(q, "PATHS = %r\n" % (paths,) + READ_ALL)
    assert r.returncode == 0, r.stderr
    out, cur = {}, None
    for line in r.stdout.splitlines():
        if line.startswith("=== "):
            cur = line[4:]
            out[cur] = ""
        elif cur:
            out[cur] += line + "\n"
    return out


def test_other_qubes_disks_are_invisible(ns_env):
    a = ns_env.qube("spy")
    b = ns_env.qube("victimqube")
    a.start()
    b.start()
    b.sh("dd if=/dev/zero of=/rw/x bs=64k count=16 conv=fsync 2>/dev/null", check=True)
    # Positive control: on the host, the victim's private image is a loop device whose
    # backing file names it, and its disk activity is counted.
    backing = " ".join(p.read_text() for p in _pl.Path("/sys/block").glob("loop*/loop/backing_file"))
    assert "victimqube-private.img" in backing
    assert "loop" in _pl.Path("/proc/diskstats").read_text()
    seen = read_in(a, ["/sys/block", "/sys/block/*/loop/backing_file", "/sys/block/*/stat",
                       "/sys/class/block", "/sys/devices/virtual/block", "/sys/dev/block",
                       "/proc/diskstats", "/proc/partitions", "/proc/swaps", "/proc/self/mountinfo",
                       "/proc/mounts", "/proc/1/mountinfo"])
    everything = "".join(seen.values())
    assert "victimqube" not in everything
    assert str(ns_env.base) not in everything  # host paths of the test's tree
    assert not [p for p in seen if "*" not in p and "loop" in p]  # no loop device listed at all
    for p in ("/proc/diskstats", "/proc/partitions"):
        assert "loop" not in seen[p], (p, seen[p])
    # The qube's own view still works: its mounts, its CPU topology, its loopback device.
    r = a.sh("grep -c ' /rw ' /proc/self/mountinfo; cat /sys/devices/system/cpu/online; "
             "cat /sys/class/net/lo/operstate; nproc")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines[0] == "1" and lines[1].startswith("0") and int(lines[-1]) >= 1


def test_host_facts_are_masked(ns_env):
    q = ns_env.qube("hf", private=False)
    q.start()
    host_cmdline = _pl.Path("/proc/cmdline").read_text().strip()
    assert host_cmdline  # positive control: the host has one to leak
    masked = ["/proc/cmdline", "/proc/iomem", "/proc/ioports", "/proc/config.gz", "/proc/modules",
              "/sys/kernel/vmcoreinfo", "/sys/kernel/boot_params", "/sys/kernel/boot_params/data",
              "/sys/firmware", "/proc/kallsyms", "/proc/keys", "/proc/timer_list"]
    seen = read_in(q, masked + ["/proc/cpuinfo", "/proc/meminfo", "/proc/self/status"])
    for p in masked:
        v = seen[p].strip()
        assert v == "" or v.startswith("ERR "), (p, v[:200])
    assert host_cmdline not in "".join(seen.values())
    # Positive control: proc itself reads fine, so the empty answers above are masks.
    assert "processor" in seen["/proc/cpuinfo"] and "MemTotal" in seen["/proc/meminfo"]
    assert seen["/proc/self/status"].startswith("Name:")


def test_masks_cannot_be_removed(ns_env):
    q = ns_env.qube("um", private=False)
    q.start()
    r = q.sh("umount /proc/cmdline; umount -l /proc/diskstats; umount -l /sys/class/net; umount -l /sys; "
             "cat /proc/cmdline | wc -c; ls /sys/block 2>&1 | wc -l; echo done")
    assert r.stdout.split()[-1] == "done", (r.stdout, r.stderr)
    assert r.stdout.split()[0] == "0"  # /proc/cmdline is still the empty mask
    assert "loop" not in q.sh("ls /sys/block 2>&1; cat /proc/diskstats").stdout
    # Positive control: the umount attempts ran and were refused.
    assert "umount" in r.stderr
