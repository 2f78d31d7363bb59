"""Template roots are ext4 images mounted on the host at <pool>/qubes/<name>/root until
their qube is removed (docs/storage.md). A test's private Bulkhead root therefore holds
mounts when the test ends: every root a fixture makes is registered here, and
tests/conftest.py unmounts what is mounted below it (and below the test's tmp_path)
once the test's fixtures are torn down. Only mounts below those directories are
touched, never another test run's."""
import os
import subprocess

# (directory, owner): mounts below directory go when the current test ends, unless its
# owner (a Daemon of a module-scoped fixture) still runs: then at a later test's end,
# after the fixture stopped it (its own cleanup unmounts too).
ROOTS = []


def register(path, owner=None):
    ROOTS.append((str(path), owner))
    return path


def _running(owner):
    proc = getattr(owner, "proc", None)
    return proc is not None and proc.poll() is None


def mounts_below(path):
    base = os.path.realpath(str(path)).rstrip("/") + "/"
    found = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            mp = line.split()[4].replace("\\040", " ").replace("\\011", "\t").replace("\\012", "\n") \
                .replace("\\134", "\\")
            if mp.startswith(base):
                found.append(mp)
    return found


def unmount_below(path):
    """Lazily unmounts every mount below path, deepest first (the loop devices of
    template roots are autoclear: they go with their last mount)."""
    for mp in sorted(set(mounts_below(path)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], capture_output=True)


def unmount_registered(extra=()):
    keep = []
    for p, owner in ROOTS:
        if owner is not None and _running(owner):
            keep.append((p, owner))
        elif os.path.exists(p):
            unmount_below(p)
    ROOTS[:] = keep
    for p in extra:
        if os.path.exists(str(p)):
            unmount_below(p)
