"""Fixtures for the `ns` engine's tests: real qubes started with bulkhead-ns.

Every test gets a private runtime dir, template root and private images under a fresh
temporary directory, and its own UID ranges; at the end every qube it started is
killed and the test checks that no cgroup, loop device or process of it is left.

Use from another directory with:
    sys.path.insert(0, str(ROOT / "tests/integration")); from ns_fixtures import *
"""
import os
import pathlib
import shutil
import subprocess
import tempfile

import pytest

import qid_slots

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))


# ---- cgroups, v1 or v2, found the way the kernel reports them ----
# Nothing here assumes a layout: a qube's cgroup is read from /proc/<init>/cgroup and the
# hierarchies from /proc/self/mountinfo, so the same tests run on a v1 host (one
# hierarchy per controller) and on a v2 host (one unified hierarchy, Debian's default).

def cgroup_mounts():
    """{controller: mount point} for v1 hierarchies, plus {"": mount point} for the v2
    unified hierarchy if one is mounted."""
    out = {}
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        left, right = line.split(" - ", 1)
        mnt = pathlib.Path(left.split()[4])
        fstype, _src, opts = right.split()[:3]
        if fstype == "cgroup2":
            out.setdefault("", mnt)
        elif fstype == "cgroup":
            for o in opts.split(","):
                if o not in ("rw", "ro") and "=" not in o:
                    out.setdefault(o, mnt)
    return out


def cgroup_v2_host():
    """True where the engine uses cgroup v2: /sys/fs/cgroup itself is the unified
    hierarchy (the engine's own test, statfs of /sys/fs/cgroup)."""
    return cgroup_mounts().get("") == pathlib.Path("/sys/fs/cgroup")


def proc_cgroups(pid, leaf=False):
    """{controller: cgroup directory} of a process in the hierarchies the engine uses
    (v2: {"": dir}), leaving out those where it sits at the root (hierarchies the
    engine does not use). For a qube's process on v2, the qube's cgroup, or with leaf
    the "@qube" leaf where its processes are."""
    mounts, out, v2 = cgroup_mounts(), {}, cgroup_v2_host()
    for line in pathlib.Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _hid, ctrls, path = line.split(":", 2)
        if path == "/" or bool(ctrls) == v2:
            continue
        for c in (ctrls.split(",") if ctrls else [""]):
            if c in mounts:
                out[c] = mounts[c] / path.lstrip("/")
    # v2: a qube's processes are in its cgroup's "@qube" leaf (cgroup_v2.c); its limits
    # and totals are its cgroup's
    if v2 and not leaf and "" in out and out[""].name == V2_QUBE_LEAF:
        out[""] = out[""].parent
    return out


V2_QUBE_LEAF = "@qube"  # cgroup_v2.c: where a qube's processes are, under its cgroup


def cgroup_hierarchy_roots():
    """Every distinct mount point of a cgroup hierarchy the engine may use."""
    m = cgroup_mounts()
    if cgroup_v2_host():
        return [m[""]]
    return sorted({v for k, v in m.items() if k})


def _listdirs(path):
    try:
        with os.scandir(path) as it:
            return [pathlib.Path(e.path) for e in it if e.is_dir(follow_symlinks=False)]
    except FileNotFoundError:
        return []


def cgroup_file(dirs, v1, v2):
    """dirs: a qube's {controller: dir}. v1 = (controller, file), v2 = file."""
    if cgroup_v2_host():
        return dirs[""] / v2
    return dirs[v1[0]] / v1[1]


def _bin():
    return BUILD / "src/driver/bulkhead-ns"


def make_root(path: pathlib.Path, host_usr=True):
    """A minimal root: a fresh /etc (root and `user` accounts), merged-usr symlinks, and
    the mount points the engine needs. /usr comes from the host (host_usr) at start."""
    for d in ("etc", "usr", "proc", "sys", "dev", "run", "tmp", "rw", "home", "root", "opt"):
        (path / d).mkdir(parents=True, exist_ok=True)
    for link, target in (("bin", "usr/bin"), ("lib", "usr/lib"), ("lib64", "usr/lib64"), ("sbin", "usr/sbin")):
        if not (path / link).is_symlink():
            (path / link).symlink_to(target)
    (path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000:user:/home/user:/bin/sh\n")
    (path / "etc/group").write_text("root:x:0:\ntty:x:5:\nuser:x:1000:\n")
    (path / "etc/hostname").write_text("template\n")
    os.chmod(path / "root", 0o700)
    return path


def make_image(path: pathlib.Path, mib=32):
    with open(path, "wb") as f:
        f.truncate(mib << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(path)], check=True)
    return path


class Qube:
    def __init__(self, env, name, uid_base, args):
        self.env, self.name, self.uid_base, self.args = env, name, uid_base, list(args)

    def start(self, check=True, extra_env=None):
        r = self.env.run("start", self.name, "--uid-base", str(self.uid_base), *self.args, extra_env=extra_env)
        if check:
            assert r.returncode == 0, r.stderr
        if r.returncode == 0:
            self.record_cgroups()
        return r

    def record_cgroups(self):
        """Where the kernel says the running qube's init is: kept so that after a kill
        the test can check that exactly these directories are gone."""
        self.cgroups = proc_cgroups(self.init_pid())
        self.proc_cgroups = proc_cgroups(self.init_pid(), leaf=True)  # where its processes are
        assert self.cgroups, "the qube's init is in no cgroup hierarchy we can see"
        self.env.cgroup_parents.update(d.parent for d in self.cgroups.values())

    def exec(self, *cmd, user=None, input=None, timeout=60, check=False):
        opts = ["--user", user] if user else []
        r = self.env.run("exec", self.name, *opts, "--", *cmd, input=input, timeout=timeout)
        if check:
            assert r.returncode == 0, (r.stdout, r.stderr)
        return r

    def sh(self, script, **kw):
        return self.exec("/bin/sh", "-c", script, **kw)

    def py(self, code, **kw):
        return self.exec("/usr/bin/python3", "-c", code, **kw)

    def state(self):
        return self.env.run("state", self.name).stdout.split()[0]

    def stats(self):
        out = self.env.run("state", self.name).stdout.split()
        return {k: int(v) for k, v in (x.split("=") for x in out[1:])}

    def kill(self):
        r = self.env.run("kill", self.name)
        assert r.returncode == 0, r.stderr

    def cmd(self, verb, *args, timeout=60):
        return self.env.run(verb, self.name, *args, timeout=timeout)

    @property
    def runtime_dir(self):
        return self.env.runtime / "qubes" / self.name

    def init_pid(self):
        return int((self.runtime_dir / "init.pid").read_text().split()[0])

    def cgroup(self, ctrl):
        """The qube's cgroup directory for a controller (v1) or its v2 cgroup, as
        recorded at its last start (so it can be checked after the qube is gone)."""
        dirs = getattr(self, "cgroups", None)
        assert dirs, f"{self.name} was never started: no cgroup recorded"
        if cgroup_v2_host():
            return dirs[""]
        return dirs[ctrl]

    def cgroup_file(self, v1, v2):
        return cgroup_file(self.cgroups, v1, v2)

    def frozen(self):
        if cgroup_v2_host():
            return "frozen 1" in (self.cgroup("") / V2_QUBE_LEAF / "cgroup.events").read_text().splitlines()
        return (self.cgroup("freezer") / "freezer.state").read_text().strip() == "FROZEN"


class NsEnv:
    def __init__(self, base: pathlib.Path):
        self.base = base
        self.runtime = base / "rt"
        self.runtime.mkdir()
        self.qubes = []
        self.template = make_root(base / "tmpl")
        self.cgroup_parents = set()  # the engine's per-runtime parents, as observed
        self.cgroups_before = self._engine_cgroups()

    @staticmethod
    def _engine_cgroups():
        """bulkhead-*/<name> cgroup dirs in every hierarchy. Other daemons and test runs
        create and remove theirs meanwhile: a dir that goes while we list is skipped."""
        found = set()
        for root in cgroup_hierarchy_roots():
            for parent in _listdirs(root):
                if parent.name.startswith("bulkhead-"):
                    found.update(_listdirs(parent))
        return found

    def cgroups_named(self, name):
        """Engine cgroups (bulkhead-*/<name>, in any hierarchy) that appeared since this
        environment was made: what a failed start must not leave."""
        return sorted(str(p) for p in self._engine_cgroups() - self.cgroups_before if p.name == name)

    def run(self, *args, input=None, timeout=60, extra_env=None):
        env = dict(os.environ, BULKHEAD_RUNTIME=str(self.runtime))
        env.pop("BULKHEAD_LIBEXEC", None)
        if extra_env:
            env.update(extra_env)
        return subprocess.run([str(_bin()), *args], input=input, capture_output=True, text=isinstance(input, str) or input is None,
                              timeout=timeout, env=env)

    def cgroup_tag(self):
        """The engine's per-runtime parent cgroup name, as observed on a started qube."""
        assert self.cgroup_parents, "no qube was started: the tag is unknown"
        return next(iter(self.cgroup_parents)).name

    def qube(self, name, private=True, throwaway=True, root_rw=None, host_usr=True, private_mib=32, extra=()):
        args = []
        if root_rw:
            args += ["--root-rw", str(root_rw)]
        else:
            args += ["--root-lower", str(self.template)]
            if throwaway:
                args.append("--throwaway")
        if host_usr:
            args += ["--host-usr", "/usr"]
        if private:
            img = self.base / f"{name}-private.img"
            if not img.exists():
                make_image(img, private_mib)
            args += ["--private-img", str(img)]
        # a qid of this test process's own (claimed on the host: no daemon or other run
        # gives it to a qube meanwhile) and the UID range bulkheadd would give it
        qid = qid_slots.take()
        args += ["--qid", str(qid), *extra]
        q = Qube(self, name, qid_slots.uid_base(qid), args)
        q.qid = qid
        self.qubes.append(q)
        return q

    def cleanup(self):
        failed = []
        for q in self.qubes:
            r = self.run("kill", q.name)
            if r.returncode != 0:
                failed.append(f"kill {q.name}: {r.stderr.strip()}")
        leftovers = [str(p) for p in self.cgroup_parents if p.exists()]
        names = {q.name for q in self.qubes}
        leftovers += [str(p) for p in self._engine_cgroups() - self.cgroups_before if p.name in names]
        if leftovers and failed:
            leftovers += failed  # say why the engine could not remove them
        loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
        ours = [line for line in loops.splitlines() if str(self.base) in line]
        return leftovers, ours


@pytest.fixture
def ns_env():
    if os.geteuid() != 0:
        pytest.skip("the ns engine needs root")
    if not _bin().exists():
        pytest.skip("bulkhead-ns not built")
    base = pathlib.Path(tempfile.mkdtemp(prefix="bh-ns-"))
    env = NsEnv(base)
    try:
        yield env
    finally:
        leftovers, loops = env.cleanup()
        shutil.rmtree(base, ignore_errors=True)
        assert not leftovers, f"cgroups left behind: {leftovers}"
        assert not loops, f"loop devices left behind: {loops}"


# For attack tests: Python inside the qube (host /usr) runs attack code as the qube's root.
ATTACK_PRELUDE = """
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *a):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    return r, ctypes.get_errno()
"""


def attack(q, code, **kw):
    return q.py(ATTACK_PRELUDE + code, **kw)
