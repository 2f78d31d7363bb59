"""A qube's qrexec call identity speaks to bulkheadd for that qube only.

Every host process a qube's call starts (the call process, the dom0 services it runs,
qubesd-query/-import/-console) is the qube's call identity (UID 2^19 + 2^16 + qid).
Such a process taken over by the qube (a bug in a dom0 program that handles the qube's
bytes) must not be dom0 towards the Admin API: a request naming dom0 or another qube as
its source is refused, so is anything only dom0 may do, and what it asks in its own
qube's name is what the qrexec policy lets that qube have. Positive controls: the same
probe gets answers where policy allows, and root (dom0's tools) is served as before."""
import os
import pathlib
import re
import socket
import subprocess
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from admin_fixtures import engine_daemon, qvm_run  # noqa: E402,F401
from qrexec_fixtures import become_call_identity, dom0_service_dir  # noqa: E402,F401

# Each request: a name, then the raw header (SOURCE filled in), then the payload. The
# probe prints "NAME: <reply code> <exception type>" per request and an end marker.
REQUESTS = [
    ("dom0-list", "admin.vm.List+ dom0 name dom0", ""),
    ("dom0-kill-b", "admin.vm.Kill+ dom0 name b", ""),
    ("dom0-create", "admin.vm.Create.AppVM+host dom0 name dom0", "name=evil label=red"),
    ("dom0-sysinfo", "internal.GetSystemInfo+ dom0 name dom0", ""),
    ("b-list", "admin.vm.List+ b name dom0", ""),
    ("b-state-b", "admin.vm.CurrentState+ b name b", ""),
    ("own-kill-b", "admin.vm.Kill+ A name b", ""),
    ("own-create", "admin.vm.Create.AppVM+host A name dom0", "name=evil label=red"),
    ("own-import-b", "internal.vm.volume.ImportBegin+private A name b", ""),
    ("own-start-b", "internal.qrexec.StartTarget+ A name b", "qubes.VMShell b"),
    ("own-disp", "internal.qrexec.CreateDisposable+ A name host", "qubes.VMShell @dispvm:host"),
    ("own-kill-disp", "internal.qrexec.KillDisposable+ A name b", ""),
    ("own-events-dom0", "admin.Events+ A name dom0", ""),
    ("own-policy-dir", "internal.GetPolicyDir+ A name dom0", ""),
    # positive controls: what policy gives qube a, and what every call process needs
    ("own-state-b", "admin.vm.CurrentState+ A name b", ""),
    ("own-sysinfo", "internal.GetSystemInfo+ A name dom0", ""),
    ("own-list", "admin.vm.List+ A name dom0", ""),
]

PROBE = r"""
import socket, sys
sock, me = sys.argv[1], sys.argv[2]
for name, head, payload in REQUESTS:
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    s.sendall(head.replace(" A ", " " + me + " ").encode() + b"\0" + payload.encode())
    s.shutdown(socket.SHUT_WR)
    s.settimeout(20)
    out = b""
    try:
        while len(out) < 65536:
            b = s.recv(65536)
            if not b:
                break
            out += b
            if name == "own-events-dom0":
                break
    except socket.timeout:
        pass
    s.close()
    parts = out.split(b"\0")
    code = parts[0].decode() if parts else ""
    info = parts[1].decode() if code == "2" and len(parts) > 1 else out[2:200].decode(errors="replace").replace("\n", "|")
    if name == "own-list":
        info = ",".join(sorted(l.split()[0] for l in out[2:].decode().splitlines() if l))
    print(f"{name}: {code} {info}", flush=True)
print("probe-end")
"""


def probe_source(sock):
    return f"REQUESTS = {REQUESTS!r}\n" + PROBE.replace("sock, me = sys.argv[1], sys.argv[2]",
                                                        f"sock, me = {sock!r}, sys.argv[1] if len(sys.argv) > 1 else 'a'")


POLICY = ("admin.vm.CurrentState  *  a  b  allow  target=dom0\n"
          "admin.vm.List  *  a  @adminvm  allow  target=dom0\n"
          "admin.vm.List  *  a  b  allow  target=dom0\n"
          "admin.Events  *  a  @adminvm  allow  target=dom0\n"
          "test.SourceProbe  *  a  @adminvm  allow\n")


def results(out):
    assert "probe-end" in out, out
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def check(res):
    refused = [n for n, _, _ in REQUESTS if not n.startswith(("own-state", "own-sysinfo", "own-list"))]
    for n in refused:
        assert res[n].startswith("2 "), (n, res[n], res)
        assert res[n] == "2 PermissionDenied", (n, res[n])
    # the positive controls: answered, and admin.vm.List filtered by policy (a's own
    # filter, applied by bulkheadd: b by its rule, dom0 by @adminvm; not a, not host)
    assert res["own-state-b"].startswith("0 ") and "power_state=Running" in res["own-state-b"], res
    assert res["own-sysinfo"].startswith("0 "), res
    assert res["own-list"] == "0 b,dom0", res


def start_qubes(d):
    (d.root / "policy.d").mkdir(exist_ok=True)
    (d.root / "policy.d" / "10-test.policy").write_text(POLICY)
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0


def test_a_dom0_service_run_for_a_qube_speaks_for_that_qube_only(dom0_service_dir, engine_daemon):
    d = engine_daemon
    start_qubes(d)
    svc = dom0_service_dir / "test.SourceProbe"
    svc.write_text(f"#!{sys.executable}\n" + probe_source(d.sock))
    svc.chmod(0o755)
    r = qvm_run(d, "-p", "--user", "root", "a", "/usr/lib/bulkhead/qrexec-client-vm @adminvm test.SourceProbe")
    out = r.stdout.decode()
    check(results(out + "\n" + r.stderr.decode()))
    # nothing of it happened: b runs, no qube "evil"
    assert "b class=AppVM state=Running" in d.call("admin.vm.List", "dom0")
    assert "evil" not in d.call("admin.vm.List", "dom0")
    # dom0's tools (root) are served as before: the same requests in dom0's name
    assert d.call("internal.GetSystemInfo", "dom0").startswith("a AppVM")
    assert "host" in d.call("admin.vm.List", "dom0")


def test_a_process_with_a_call_uid_speaks_for_that_qube_only(engine_daemon):
    d = engine_daemon
    start_qubes(d)
    qid = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    sockdir = os.open(os.path.dirname(d.sock), os.O_PATH | os.O_DIRECTORY)
    try:
        src = probe_source(f"/proc/self/fd/{sockdir}/{os.path.basename(d.sock)}")

        def as_call_identity(qid):
            return subprocess.run([sys.executable, "-c", src, "a"], preexec_fn=become_call_identity(qid),
                                  pass_fds=(sockdir,), capture_output=True, text=True, timeout=120)

        r = as_call_identity(qid)
        check(results(r.stdout + r.stderr))
        # another qube's call identity may not speak for a either (b's UID, source a)
        qid_b = int(d.call("admin.vm.property.Get+qid", "b").split()[-1])
        r = as_call_identity(qid_b)
        res = results(r.stdout + r.stderr)
        assert res["own-state-b"] == "2 PermissionDenied" and res["own-sysinfo"] == "2 PermissionDenied", res
    finally:
        os.close(sockdir)
    assert "b class=AppVM state=Running" in d.call("admin.vm.List", "dom0")


HOLD = r"""
import socket, sys, time
sock = sys.argv[1]
held, closed = [], 0
for i in range(100):
    s = socket.socket(socket.AF_UNIX)
    s.connect(sock)
    held.append(s)
# the ones bulkheadd refused are closed (recv gives EOF): looked at until all past the
# cap of 64 are, or a minute passed (was: one look after 0.5 s)
is_closed = set()
deadline = time.time() + 60
while len(is_closed) < len(held) - 64 and time.time() < deadline:
    for i, s in enumerate(held):
        s.setblocking(False)
        try:
            if i not in is_closed and s.recv(1) == b"":
                is_closed.add(i)
        except BlockingIOError:
            pass
    time.sleep(0.05)
time.sleep(0.2)  # and no more than those
for i, s in enumerate(held):
    try:
        if i not in is_closed and s.recv(1) == b"":
            is_closed.add(i)
    except BlockingIOError:
        pass
closed = len(is_closed)
print(f"held {len(held) - closed} closed {closed}", flush=True)
sys.stdin.read()  # hold them until the test is done
"""


def test_a_call_identity_cannot_take_every_connection(engine_daemon):
    """One qube's call identity holds at most 64 connections to bulkheadd at once (as many
    as its calls in flight); dom0's tools and another qube's call identity are still
    served while it holds them."""
    d = engine_daemon
    start_qubes(d)
    qid = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    qid_b = int(d.call("admin.vm.property.Get+qid", "b").split()[-1])
    sockdir = os.open(os.path.dirname(d.sock), os.O_PATH | os.O_DIRECTORY)
    path = f"/proc/self/fd/{sockdir}/{os.path.basename(d.sock)}"

    p = subprocess.Popen([sys.executable, "-c", HOLD, path], preexec_fn=become_call_identity(qid),
                         pass_fds=(sockdir,), stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = p.stdout.readline()
        m = re.fullmatch(r"held (\d+) closed (\d+)\n", line)
        assert m, line
        assert int(m.group(1)) == 64 and int(m.group(2)) == 36, line   # the cap, and the attempt ran
        # dom0's tools are served, and so is b's call identity
        assert "b class=AppVM" in d.call("admin.vm.List", "dom0")
        r = subprocess.run([sys.executable, "-c", probe_source(path), "b"], pass_fds=(sockdir,),
                           preexec_fn=become_call_identity(qid_b),
                           capture_output=True, text=True, timeout=120)
        assert results(r.stdout + r.stderr)["own-sysinfo"].startswith("0 "), r.stdout
    finally:
        p.stdin.close()
        p.wait(timeout=30)
        os.close(sockdir)


ASK_STATE = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.connect(sys.argv[1])
s.sendall(b"admin.vm.CurrentState+ a name b\0")
s.shutdown(socket.SHUT_WR)
s.settimeout(20)
out = b""
while (b := s.recv(65536)):
    out += b
print(out.split(b"\0")[0].decode() + " " + (out.split(b"\0")[1].decode() if out[:1] == b"2" else "") if out else "no answer")
"""


def settled(paths):
    """Waits until every path was last changed more than 3 s ago: bulkheadd keeps a
    loaded policy only then (a change within the same timestamp tick would not show),
    so a request after this one is served from the kept load."""
    deadline = time.time() + 60
    while time.time() < deadline:
        newest = max(os.stat(p).st_ctime for p in paths)
        if time.time() > newest + 3.2:
            return
        time.sleep(0.2)
    raise AssertionError("policy files never settled")


def test_a_policy_change_takes_effect_on_the_next_request(engine_daemon):
    """bulkheadd reuses the loaded policy.d while nothing in it changed; any change is
    seen by the very next request of a qube's call identity: a rule edited in place from
    allow to deny (same size, mtime set back as `cp -p` does), a file added before it, and
    that file removed again. Each change is made after a request that was served from the
    kept load."""
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    f = pol / "10-test.policy"
    f.write_text(POLICY)
    qid = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    sockdir = os.open(os.path.dirname(d.sock), os.O_PATH | os.O_DIRECTORY)
    path = f"/proc/self/fd/{sockdir}/{os.path.basename(d.sock)}"

    def ask():
        # A probe ended by SIGKILL is asked again: test runs beside this one on the host
        # share the per-qid call UIDs, and a halt there ends this UID's processes
        # (docs/qrexec.md). Asking again cannot hide a stale policy: a load kept when
        # it should not have been is served again.
        for _ in range(5):
            r = subprocess.run([sys.executable, "-c", ASK_STATE, path], pass_fds=(sockdir,),
                               preexec_fn=become_call_identity(qid),
                               capture_output=True, text=True, timeout=60)
            if r.returncode != -9:
                break
        return r.stdout.strip() + r.stderr + (f" (exit {r.returncode})" if r.returncode else "")

    try:
        assert ask() == "0", "positive control: policy allows a CurrentState of b"
        settled([pol, f])
        assert ask() == "0"
        st = os.stat(f)
        allow = "admin.vm.CurrentState  *  a  b  allow  target=dom0\n"
        deny = "admin.vm.CurrentState  *  a  b  deny".ljust(len(allow) - 1) + "\n"
        with open(f, "r+") as fh:  # in place: same inode, same size
            fh.write(POLICY.replace(allow, deny))
        os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
        assert os.stat(f).st_size == st.st_size and os.stat(f).st_mtime_ns == st.st_mtime_ns
        assert ask() == "2 PermissionDenied", "an in-place edit to deny decides the next request"
        settled([pol, f])
        assert ask() == "2 PermissionDenied"
        early = pol / "05-early.policy"
        early.write_text(allow)
        assert ask() == "0", "a file added decides the next request"
        settled([pol, f, early])
        assert ask() == "0"
        early.unlink()
        assert ask() == "2 PermissionDenied", "a file removed decides the next request"
    finally:
        os.close(sockdir)
