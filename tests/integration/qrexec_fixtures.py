"""qrexec test world: real agents, daemons and clients as host processes.

Before the ns engine runs real qubes, each "qube" here is a qrexec-agent process with its
own vchan dir (<runtime>/qubes/<name>/vchan, the dir a real qube sees at /run/qubes/vchan),
its own trigger socket and HOME; its daemon is the real qrexec-daemon. Everything on the
wire is the real protocol. Processes are ended by PID; the temp dir is removed."""
import os
import pathlib
import shutil
import signal
import struct
import subprocess
import tempfile
import time

import pytest

import qid_slots

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))
BIN = BUILD / "src" / "qrexec"
AGENT = BUILD / "src" / "agent"

MSG = dict(STDIN=0x190, STDOUT=0x191, STDERR=0x192, EXIT=0x193, EXEC=0x200, JUST_EXEC=0x201,
           SERVICE_CONNECT=0x202, REFUSED=0x203, TERMINATED=0x211, TRIGGER3=0x212, TRIGGER4=0x213,
           HELLO=0x300)


def msg(t, body=b""):
    return struct.pack("<II", t, len(body)) + body


def hello(version=3):
    return msg(MSG["HELLO"], struct.pack("<I", version))


def trigger3(target, ident, service):
    return msg(MSG["TRIGGER3"], target.encode().ljust(64, b"\0") + ident.encode().ljust(32, b"\0")
               + service.encode() + b"\0")


def trigger4(source, target, ident, service):
    """Qubes R4.3's MSG_TRIGGER_SERVICE4: {source[64], target[64], ident[32], service\\0}."""
    return msg(MSG["TRIGGER4"], source.encode().ljust(64, b"\0") + target.encode().ljust(64, b"\0")
               + ident.encode().ljust(32, b"\0") + service.encode() + b"\0")


# qrexec_ids.h: a qube's daemon-side unprivileged processes (2^19 + qid), its call
# processes (2^19 + 2^16 + qid) and their "dom0 qrexec" group
UNPRIV_ID_BASE = 1 << 19
CALL_ID_BASE = UNPRIV_ID_BASE + (1 << 16)
CALL_GID = UNPRIV_ID_BASE + (1 << 17)


def become(uid, gid):
    """A preexec_fn: the child is uid and gid in every slot (real, effective, saved), with
    no supplementary groups, as bulkheadd's drop to a qube's identity leaves it."""
    def pre():
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    return pre


def become_call_identity(qid):
    """A preexec_fn: the child is the call identity of the qube with this qid."""
    return become(CALL_ID_BASE + qid, CALL_GID)


@pytest.fixture
def dom0_service_dir(monkeypatch):
    """A dom0 service dir (BULKHEAD_DOM0_SERVICE_PATH) for a daemon started after it: it
    passes the variable on to the calls it runs."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="bh-dom0rpc-"))
    d.chmod(0o755)
    monkeypatch.setenv("BULKHEAD_DOM0_SERVICE_PATH", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def bin_path(name):
    """dom0 programs are in src/qrexec, in-qube ones in src/agent (the qubes' programs dir)."""
    for d in (BIN, BUILD / "src" / "agent"):
        if (d / name).exists():
            return str(d / name)
    raise FileNotFoundError(f"{name} is not built in {BUILD}")


class Qube:
    def __init__(self, world, name, qid):
        """qid: the test's number for the qube (1-255), mapped to a qid of the world's own
        (World.qid): self.qid is the one the qube really has."""
        self.world, self.name, self.qid = world, name, world.qid(qid)
        self.dir = world.runtime / "qubes" / name
        self.vchan = self.dir / "vchan"
        self.home = world.tmp / "home" / name
        self.agent_sock = self.dir / "agent.sock"
        self.vchan.mkdir(parents=True)
        # as a real qube's vchan tmpfs (mode 1777): the daemon's call processes, which
        # are not root, bind there
        self.vchan.chmod(0o1777)
        self.home.mkdir(parents=True)
        self.agent = self.daemon = None

    @property
    def env(self):
        """The environment of a process running inside this qube."""
        e = dict(os.environ)
        e.update(VCHAN_SOCKET_DIR=str(self.vchan), VCHAN_DOMAIN=str(self.qid),
                 QREXEC_AGENT_SOCKET=str(self.agent_sock), HOME=str(self.home),
                 QREXEC_SERVICE_PATH=str(self.world.rpc), PATH=f"{AGENT}:{BIN}:{os.environ.get('PATH', '')}",
                 TMPDIR=str(self.world.tmp))
        e.update(self.world.agent_env)
        return e

    def start_agent(self):
        self.agent = self.world.spawn(
            [bin_path("qrexec-agent"), "--vchan-dir", str(self.vchan), "--domid", str(self.qid),
             "--trigger-socket", str(self.agent_sock), "--service-path", str(self.world.rpc),
             "--no-user-switch"], env=self.env, log=f"agent-{self.name}")
        return self.agent

    def start_daemon(self, timeout=10, extra=()):
        r, w = os.pipe()
        self.daemon = self.world.spawn(
            [bin_path("qrexec-daemon"), "--name", self.name, "--domid", str(self.qid),
             "--runtime", str(self.world.runtime), "--ready-fd", str(w), "--startup-timeout", str(timeout),
             "--test-allow", str(self.world.allow), "--dom0-service-path", str(self.world.dom0_rpc), *extra],
            pass_fds=(w,), log=f"daemon-{self.name}")
        os.close(w)
        ready = os.read(r, 1)
        os.close(r)
        if ready != b"1":
            raise RuntimeError(f"daemon for {self.name} did not become ready: "
                               + self.world.log_text(f"daemon-{self.name}"))
        return self.daemon

    def run(self, args, **kw):
        """Runs a program inside this qube (its environment)."""
        kw.setdefault("capture_output", True)
        kw.setdefault("timeout", 30)
        return subprocess.run(args, env=self.env, **kw)


CALL_GID = (1 << 19) + (1 << 17)  # qrexec_ids.h: the "dom0 qrexec" group of call processes


def as_dom0_socket(path):
    """Gives a stand-in's socket the owner and mode bulkheadd's and the daemons' have
    (root and the dom0 qrexec group, 0660): the daemon's call processes are not root."""
    os.chown(path, 0, CALL_GID)
    os.chmod(path, 0o660)


class World:
    QIDS = 256

    def __init__(self):
        # qids of this world's own, claimed on the host (qid_slots.py): two test runs side
        # by side never give two qubes one host identity, nor does a bulkheadd beside them
        self.qid_first = qid_slots.claim(self.QIDS)
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="bh-qrexec-"))
        # searchable (not listable) by others, as /etc/qubes-rpc is: the daemon's call
        # processes, which are not root, run the dom0 services in dom0-rpc/
        self.tmp.chmod(0o711)
        self.runtime = self.tmp / "rt"
        self.rpc = self.tmp / "rpc"
        self.dom0_rpc = self.tmp / "dom0-rpc"
        self.logs = self.tmp / "logs"
        for d in (self.runtime, self.rpc, self.dom0_rpc, self.logs):
            d.mkdir(parents=True)
        self.allow = self.tmp / "allow"
        self.allow.write_text("")
        self.procs = []
        self.qubes = {}
        self.agent_env = {}  # extra environment for agents (and so their services)
        # the installed service (src/agent/qubes-rpc/qubes.Filecopy), pointing at the build
        real = (ROOT / "src/agent/qubes-rpc/qubes.Filecopy").read_text()
        self.service("qubes.Filecopy", real.replace("/usr/lib/bulkhead/", f"{AGENT}/"))
        self.service("qubes.OpenInVM", f"#!/bin/sh\nexec {AGENT}/qfile-opener\n")

    def qid(self, n):
        """The qid of the qube the test numbers n (1 to 255; 0 is dom0, and stays 0)."""
        assert 0 <= n < self.QIDS, n
        return self.qid_first - 1 + n if n else 0

    def service(self, name, script, dom0=False):
        p = (self.dom0_rpc if dom0 else self.rpc) / name
        p.write_text(script)
        p.chmod(0o755)
        return p

    def allow_call(self, service, source, target, resolved=None):
        with open(self.allow, "a") as f:
            f.write(f"{service} {source} {target} {resolved or ''}\n")

    def spawn(self, args, log, **kw):
        out = open(self.logs / f"{log}.log", "ab")
        p = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True, **kw)
        out.close()
        self.procs.append(p)
        return p

    def log_text(self, log):
        p = self.logs / f"{log}.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def qube(self, name, qid, agent=True, daemon=True):
        q = Qube(self, name, qid)
        self.qubes[name] = q
        if agent:
            q.start_agent()
        if daemon:
            q.start_daemon()
        return q

    def client(self, qube, cmdline, input=b"", args=(), timeout=30):
        return subprocess.run([bin_path("qrexec-client"), "--runtime", str(self.runtime), *args, "-d", qube,
                               cmdline], input=input, capture_output=True, timeout=timeout)

    def dom0_env(self):
        e = dict(os.environ)
        e["BULKHEAD_RUNTIME"] = str(self.runtime)
        e.pop("QREXEC_AGENT_SOCKET", None)
        return e

    def close(self):
        for p in self.procs:
            if p.poll() is None:
                try:  # the process group we created for it: its forked call handlers too
                    os.killpg(p.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.time() + 5
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
        # a sanitizer report in any daemon/agent log fails the test (ASan CI build)
        bad = [f.name for f in self.logs.glob("*.log")
               if any(k in f.read_text(errors="replace") for k in ("AddressSanitizer", "runtime error:",
                                                                      "LeakSanitizer"))]
        reports = {n: self.log_text(n[:-4])[-3000:] for n in bad}
        # pytest shows a test's captured output only when it failed: the daemons' and
        # agents' own words are the evidence of a failure that does not reproduce
        for f in sorted(self.logs.glob("*.log")):
            print(f"--- {f.name} (last 3000 bytes) ---\n{f.read_text(errors='replace')[-3000:]}")
        shutil.rmtree(self.tmp, ignore_errors=True)
        qid_slots.release(self.qid_first, self.QIDS)
        assert not bad, f"sanitizer reports: {reports}"


@pytest.fixture
def world():
    w = World()
    yield w
    w.close()
