"""Fixtures for the `ns` engine's tests: real qubes started with bulkhead-ns.

Every test gets a private runtime dir, template root and private images under a fresh
temporary directory, and its own UID ranges; at the end every qube it started is
killed and the test checks that no cgroup, loop device or process of it is left.

Use from another directory with:
    sys.path.insert(0, str(ROOT / "tests/integration")); from ns_fixtures import *
"""
import os
import pathlib
import random
import shutil
import subprocess
import tempfile

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))
CGROUP_V1 = pathlib.Path("/sys/fs/cgroup")


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
    subprocess.run(["mkfs.ext4", "-q", "-F", str(path)], check=True)
    return path


class Qube:
    def __init__(self, env, name, uid_base, args):
        self.env, self.name, self.uid_base, self.args = env, name, uid_base, list(args)

    def start(self, check=True, extra_env=None):
        r = self.env.run("start", self.name, "--uid-base", str(self.uid_base), *self.args, extra_env=extra_env)
        if check:
            assert r.returncode == 0, r.stderr
        return r

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
        return CGROUP_V1 / ctrl / self.env.cgroup_tag() / self.name


class NsEnv:
    _next_range = random.randrange(40, 200)

    def __init__(self, base: pathlib.Path):
        self.base = base
        self.runtime = base / "rt"
        self.runtime.mkdir()
        self.qubes = []
        self.template = make_root(base / "tmpl")

    def run(self, *args, input=None, timeout=60, extra_env=None):
        env = dict(os.environ, BULKHEAD_RUNTIME=str(self.runtime))
        env.pop("BULKHEAD_LIBEXEC", None)
        if extra_env:
            env.update(extra_env)
        return subprocess.run([str(_bin()), *args], input=input, capture_output=True, text=isinstance(input, str) or input is None,
                              timeout=timeout, env=env)

    def uid_range(self):
        # Disjoint 65536-ID ranges well above normal host users; random start so that
        # parallel test runs rarely share one (sharing would not break isolation tests
        # of a single run, but we avoid it).
        NsEnv._next_range += 1
        return (NsEnv._next_range % 30000 + 100) * 65536

    def cgroup_tag(self):
        return self._tag_from_engine()

    def _tag_from_engine(self):
        # Same FNV-1a as bh_cgroup_tag over the runtime root's real path.
        h = 1469598103934665603
        for b in os.path.realpath(self.runtime).encode():
            h = ((h ^ b) * 1099511628211) & 0xFFFFFFFFFFFFFFFF
        return "bulkhead-%012x" % (h & 0xFFFFFFFFFFFF)

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
        args += list(extra)
        q = Qube(self, name, self.uid_range(), args)
        self.qubes.append(q)
        return q

    def cleanup(self):
        for q in self.qubes:
            self.run("kill", q.name)
        tag = self._tag_from_engine()
        leftovers = [str(p) for p in CGROUP_V1.glob(f"*/{tag}") if p.exists()]
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
