"""A small internet for network tests, in namespaces the test creates and removes:

    qubes ── sys-firewall ── sys-net ══ uplink ══ [inet]  (plays the host: bulkheadd
                                                     │     --uplink netns:<inet>)
                                              198.51.100.1
                                                     │
                                                  [srv]   198.51.100.80  web :8080, echo :7
                                                          198.51.100.81  web :8080 ("other")
                                                          198.51.100.53  DNS (web.test, other.test)

`inet` also listens on 198.51.100.1:9000 (a host service that no qube may reach).
Every address lives in these namespaces (TEST-NET-2); nothing leaves them.

Use: sys.path.insert(0, <tests/integration>); from net_fixtures import net  # noqa
"""
import contextlib
import os
import pathlib
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from admin_fixtures import Daemon, BUILD  # noqa: E402

WEB, OTHER, DNS, HOST = "198.51.100.80", "198.51.100.81", "198.51.100.53", "198.51.100.1"
LAN = "192.168.77.1"  # a private address in the test's internet (echo on :443), routed by [inet]

DNS_SERVER = r'''
import socket, struct, sys
names = {b"web.test": "198.51.100.80", b"other.test": "198.51.100.81", b"dual.test": "198.51.100.81",
         b"lan.test": "192.168.77.1"}  # lan.test: a private address (the updates proxy refuses it)
names6 = {b"dual.test": "2001:db8:80::81", b"six.test": "2001:db8:80::80"}  # AAAA (IPv6 tests)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("198.51.100.53", 53))
while True:
    q, a = s.recvfrom(512)
    try:  # flip.test: whatever address the test last wrote to the file (argv[1])
        names[b"flip.test"] = open(sys.argv[1]).read().strip()
    except OSError:
        pass
    if len(q) < 17: continue
    i, labels = 12, []
    while i < len(q) and q[i]:
        labels.append(q[i + 1:i + 1 + q[i]]); i += 1 + q[i]
    name = b".".join(labels).lower(); qtype = q[i + 1:i + 3]
    question = q[12:i + 5]
    ip = names.get(name)
    if ip and qtype == b"\x00\x01":
        ans = b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x05\x00\x04" + socket.inet_aton(ip)
        s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + ans, a)
    elif name in names6 and qtype == b"\x00\x1c":
        ans = b"\xc0\x0c\x00\x1c\x00\x01\x00\x00\x00\x05\x00\x10" + socket.inet_pton(socket.AF_INET6, names6[name])
        s.sendto(q[:2] + b"\x81\x80\x00\x01\x00\x01\x00\x00\x00\x00" + question + ans, a)
    else:
        rcode = b"\x81\x80" if ip or name in names6 else b"\x81\x83"
        s.sendto(q[:2] + rcode + b"\x00\x01\x00\x00\x00\x00\x00\x00" + question, a)
'''

# a line-echo server: answers each line at once (for connections kept open); on port 7,
# and on 443 (where the updates proxy may CONNECT; the bytes need not be TLS)
ECHO_SERVER = r'''
import socket, sys, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2] if len(sys.argv) > 2 else "198.51.100.80", int(sys.argv[1]))); s.listen(64)
def serve(c):
    with c:
        while True:
            d = c.recv(4096)
            if not d: return
            c.sendall(d)
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
'''

HOST_SERVICE = r'''
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 9000)); s.listen(8)
while True:
    c, _ = s.accept(); c.sendall(b"host-secret\n"); c.close()
'''

# In a template: CONNECT {dst} through the updates proxy's forwarder (127.0.0.1:8082),
# print the status line and, if connected, what the far end echoes of one line.
CONNECT_ECHO = ("python3 -c \"import socket; s=socket.create_connection(('127.0.0.1', 8082), 5); s.settimeout(10); "
                "s.sendall(b'CONNECT {dst} HTTP/1.1\\r\\nHost: {dst}\\r\\n\\r\\n'); h=b''\n"
                "while b'\\r\\n\\r\\n' not in h:\n  d=s.recv(1)\n  if not d: break\n  h+=d\n"
                "print(h.split(b'\\r\\n')[0].decode())\n"
                "if b' 200 ' in h:\n  s.sendall(b'ping-through-proxy\\n'); print(s.recv(100).decode())\"")
WAIT_FORWARDER = ("for i in $(seq 100); do curl -s -m 2 -o /dev/null http://127.0.0.1:8082/; "
                  "[ $? -ne 7 ] && break; sleep 0.1; done; ")


def sh(*args, check=True, **kw):
    return subprocess.run(list(args), check=check, capture_output=True, text=True, timeout=60, **kw)


class Internet:
    def __init__(self):
        tag = "%x%03x" % (os.getpid() & 0xfff, random.randrange(4096))
        self.inet, self.srv = "bhi" + tag, "bhs" + tag
        self.procs = []
        self.etc = self.etc_srv = self.webroot = self.flip = None
        try:
            self._build(tag)
        except BaseException:
            self.close()  # a half-made internet leaves nothing behind either
            raise

    def _build(self, tag):
        sh("ip", "netns", "add", self.inet)
        sh("ip", "netns", "add", self.srv)
        a, b = "bha" + tag, "bhb" + tag
        sh("ip", "link", "add", a, "netns", self.inet, "type", "veth", "peer", "name", b, "netns", self.srv)
        for ns in (self.inet, self.srv):
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.inet, "addr", "add", HOST + "/24", "dev", a)
        sh("ip", "-n", self.inet, "link", "set", a, "up")
        for ip in (WEB, OTHER, DNS):
            sh("ip", "-n", self.srv, "addr", "add", ip + "/24", "dev", b)
        sh("ip", "-n", self.srv, "link", "set", b, "up")
        sh("ip", "-n", self.srv, "route", "add", "default", "via", HOST)
        sh("ip", "-n", self.srv, "addr", "add", LAN + "/32", "dev", b)
        sh("ip", "-n", self.inet, "route", "add", LAN + "/32", "via", WEB)
        self.etc = pathlib.Path("/etc/netns") / self.inet
        self.etc.mkdir(parents=True, exist_ok=True)
        (self.etc / "resolv.conf").write_text("nameserver %s\n" % DNS)
        # The servers' namespace resolves its own names from files: http.server looks up
        # its bound address (getfqdn) before it listens, and with the host's resolv.conf
        # that lookup waits out a resolver it cannot reach (10+ s: the fixture timed out).
        self.etc_srv = pathlib.Path("/etc/netns") / self.srv
        self.etc_srv.mkdir(parents=True, exist_ok=True)
        (self.etc_srv / "resolv.conf").write_text("nameserver %s\n" % DNS)
        (self.etc_srv / "hosts").write_text("127.0.0.1 localhost\n%s web.test\n%s other.test\n%s dns.test\n"
                                            "%s host.test\n" % (WEB, OTHER, DNS, HOST))
        self.webroot = pathlib.Path(f"/tmp/{self.srv}-www")
        self.webroot.mkdir(exist_ok=True)
        (self.webroot / "index.html").write_text("hello from the test internet\n")
        for ip in (WEB, OTHER):
            self.spawn(self.srv, [sys.executable, "-m", "http.server", "--bind", ip, "--directory", str(self.webroot), "8080"])
        self.flip = pathlib.Path(f"/tmp/{self.srv}-flip")
        self.flip.write_text(WEB)
        self.spawn(self.srv, [sys.executable, "-c", DNS_SERVER, str(self.flip)])
        self.spawn(self.srv, [sys.executable, "-c", ECHO_SERVER, "7"])
        self.spawn(self.srv, [sys.executable, "-c", ECHO_SERVER, "443"])
        self.spawn(self.srv, [sys.executable, "-c", ECHO_SERVER, "443", LAN])
        self.spawn(self.inet, [sys.executable, "-c", HOST_SERVICE])
        self.wait_port(self.srv, WEB, 8080)
        self.wait_port(self.srv, OTHER, 8080)
        self.wait_port(self.srv, WEB, 7)
        self.wait_port(self.srv, WEB, 443)
        self.wait_port(self.srv, LAN, 443)
        self.wait_port(self.inet, HOST, 9000)

    def spawn(self, ns, argv):
        p = subprocess.Popen(["ip", "netns", "exec", ns, *argv], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        self.procs.append(p)
        return p

    def exec(self, ns, *argv, check=False):
        return sh("ip", "netns", "exec", ns, *argv, check=check)

    def wait_port(self, ns, ip, port):
        for _ in range(100):
            if self.exec(ns, sys.executable, "-c",
                         f"import socket; socket.create_connection(('{ip}', {port}), 1)").returncode == 0:
                return
            time.sleep(0.05)
        raise RuntimeError(f"{ip}:{port} did not come up")

    def close(self):
        for p in self.procs:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
        sh("ip", "netns", "del", self.srv, check=False)
        sh("ip", "netns", "del", self.inet, check=False)
        for d in (self.etc, self.etc_srv, self.webroot):
            if d:
                shutil.rmtree(d, ignore_errors=True)
        if self.flip:
            self.flip.unlink(missing_ok=True)


class Net:
    """A bulkheadd whose sys-net is plugged into a test internet."""

    def __init__(self, tmp, internet, env=None):
        self.internet = internet
        # dsthost names resolved again every 2 s (default 60) for the re-resolution test;
        # env: more settings for bulkheadd (BULKHEAD_NET_*)
        extra = {"BULKHEAD_NET_RESOLVE_SECONDS": "2", **(env or {})}
        saved = {k: os.environ.get(k) for k in extra}
        os.environ.update(extra)
        try:
            self.d = Daemon(tmp, extra_args=["--uplink", f"netns:{internet.inet}"]).start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.sock = self.d.sock

    def run(self, qube, cmd, user=None, timeout=60):
        args = [str(BUILD / "src/qrexec/qvm-run"), "-p"]
        if user:
            args += ["-u", user]
        args += [qube, cmd]
        return subprocess.run(args, env=self.d.env, capture_output=True, text=True, timeout=timeout)

    def tool(self, *a, **kw):
        return self.d.tool(*a, **kw)

    def prop(self, qube, name):
        return self.d.call("admin.vm.property.Get+" + name, qube).split(" ", 2)[2]

    def curl(self, qube, url, t=3):
        r = self.run(qube, f"curl -sS -m {t} {url}")
        return r.returncode == 0 and "hello from the test internet" in r.stdout

    def close(self):
        from admin_fixtures import kill_all
        try:
            kill_all(self.d)
        finally:
            self.d.stop()
            self.d.cleanup()


@pytest.fixture(scope="module")
def internet():
    i = Internet()
    yield i
    i.close()


@pytest.fixture(scope="module")
def net(internet, tmp_path_factory):
    n = Net(tmp_path_factory.mktemp("net"), internet)
    yield n
    n.close()


@contextlib.contextmanager
def sink(internet, script, log):
    """A receiver in the test's internet for as long as the with-block runs (script: it
    writes each word it receives to log, its argv[1], which it creates once it listens)."""
    p = internet.spawn(internet.srv, [sys.executable, "-c", script, str(log)])
    try:
        for _ in range(1200):  # the sink creates its log once it listens
            if log.exists():
                break
            time.sleep(0.05)
        yield
    finally:
        p.kill()


def words_received(log, *want, settle):
    """The words in a sink's log once every wanted word is in (10 s at most), read again
    settle seconds later: frames sent before the last wanted one have arrived too."""
    for _ in range(600):
        if set(want) <= set(log.read_text().split()):
            break
        time.sleep(0.1)
    time.sleep(settle)
    return log.read_text().split()


def conntrack_count(netns_path):
    """Entries in the conntrack table of a network namespace (a path: a qube's pin or
    /run/netns/NAME)."""
    r = sh("nsenter", f"--net={netns_path}", "cat", "/proc/sys/net/netfilter/nf_conntrack_count")
    return int(r.stdout)


def host_netns_leftovers(tag):
    """Links and nftables tables in the host's namespace whose names carry tag."""
    links = sh("ip", "-o", "link").stdout
    tables = sh("nft", "list", "tables").stdout
    return [l for l in (links + tables).splitlines() if tag in l]
