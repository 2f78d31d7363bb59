"""A qube's call identity cannot speak to another qube's qrexec daemon itself.

A daemon runs whatever command line its client sends (USER:COMMAND too). Every host
process a qube's call starts is that qube's call identity (UID 2^19 + 2^16 + qid), and
one the qube has taken over (a bug in a dom0 program parsing its bytes) must not get
past the policy by connecting to a daemon: the daemons' sockets are root's alone, and
bulkheadd connects an authorised call itself (internal.qrexec.ConnectTarget), with the
one line it builds. Positive controls: the same probe reaches the daemon's socket name
(stat) and gets a connected daemon from bulkheadd for what policy allows; a call a
allows to b still works end to end from inside a, and root's qrexec-client runs in b."""
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from admin_fixtures import engine_daemon, qvm_run  # noqa: E402,F401
from qrexec_fixtures import become_call_identity, bin_path  # noqa: E402

POLICY = "qubes.GetDate  *  a  b  allow\n"

# Run as a's call identity: argv = qubes-dir fd, bulkheadd socket (through an fd).
PROBE = r"""
import errno, os, socket, struct, sys
qubes, admin = sys.argv[1], sys.argv[2]
def say(k, v):
    print(f"{k}: {v}", flush=True)
path = f"{qubes}/b/qrexec.sock"
try:
    os.stat(path)
    say("stat", "ok")
except OSError as e:
    say("stat", errno.errorcode[e.errno])
# 1. b's daemon directly: with a command line of our own choosing
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(path)
    s.sendall(struct.pack("<III", 0x300, 4, 3) + struct.pack("<IIII", 0x200, 8 + 20, 0, 0) + b"root:touch /tmp/pwn\0\0")
    say("direct", "connected")
except OSError as e:
    say("direct", errno.errorcode[e.errno])
s.close()
# 2. through bulkheadd: a service the policy does not give a toward b, then one it does
def connect_target(payload):
    s = socket.socket(socket.AF_UNIX)
    s.connect(admin)
    s.sendall(b"internal.qrexec.ConnectTarget+ a name b\0" + payload)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(20)
    data, fds, _, _ = socket.recv_fds(s, 4096, 1)
    while True:
        more = s.recv(4096)
        if not more:
            break
        data += more
    s.close()
    parts = data.split(b"\0")
    res = parts[0].decode() + (" " + parts[1].decode() if parts[0] == b"2" else "")
    hello = ""
    for fd in fds:
        d = socket.socket(fileno=fd)
        d.settimeout(20)
        h = d.recv(12)
        hello = " hello=%x" % struct.unpack("<III", h)[0] if len(h) == 12 else " no-hello"
        d.close()
    return res + hello
say("shell", connect_target(b"qubes.VMShell b"))
say("cmdline", connect_target(b"root:touch@/tmp/pwn b"))
say("getdate", connect_target(b"qubes.GetDate b"))
print("probe-end", flush=True)
"""


def results(out):
    assert "probe-end" in out, out
    return dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)


def test_a_call_identity_reaches_another_qubes_daemon_only_through_policy(engine_daemon):
    d = engine_daemon
    (d.root / "policy.d").mkdir(exist_ok=True)
    (d.root / "policy.d" / "10-test.policy").write_text(POLICY)
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    sock = d.runtime / "qubes" / "b" / "qrexec.sock"
    st = os.stat(sock)
    assert (st.st_uid, st.st_mode & 0o777) == (0, 0o600), oct(st.st_mode)
    qid = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    qubes = os.open(d.runtime / "qubes", os.O_PATH | os.O_DIRECTORY)
    admin = os.open(os.path.dirname(d.sock), os.O_PATH | os.O_DIRECTORY)
    try:
        r = subprocess.run([sys.executable, "-c", PROBE, f"/proc/self/fd/{qubes}",
                            f"/proc/self/fd/{admin}/{os.path.basename(d.sock)}"],
                           preexec_fn=become_call_identity(qid), pass_fds=(qubes, admin), capture_output=True, text=True, timeout=120)
    finally:
        os.close(qubes)
        os.close(admin)
    res = results(r.stdout + r.stderr)
    assert res["stat"] == "ok", res                 # the name is reachable: the mode refuses
    assert res["direct"] == "EACCES", res
    assert res["shell"] == "2 PermissionDenied", res
    assert res["cmdline"] == "2 PermissionDenied", res
    # positive control: what a's policy allows toward b, b's daemon connected and greeting
    assert res["getdate"] == "0 hello=300", res
    # nothing ran as root in b
    assert qvm_run(d, "-p", "--user", "root", "b", "test -e /tmp/pwn && echo pwned || echo clean").stdout == b"clean\n"
    # root (dom0's own tools) still connects directly; a's allowed call works end to end
    r = subprocess.run([bin_path("qrexec-client"), "--runtime", str(d.runtime), "-d", "b", "user:echo from-b"],
                       capture_output=True, timeout=60)
    assert r.returncode == 0 and r.stdout == b"from-b\n", r
    r = qvm_run(d, "-p", "--user", "root", "a", "/usr/lib/bulkhead/qrexec-client-vm b qubes.GetDate")
    assert r.returncode == 0 and r.stdout.strip(), r


def test_connect_target_is_for_call_processes_only(engine_daemon):
    """dom0's tools (root) connect to a daemon themselves: bulkheadd serves the request
    only to a qube's call identity, for which it knows whose call it is."""
    d = engine_daemon
    assert qvm_run(d, "b", "true").returncode == 0
    out = d.raw(b"internal.qrexec.ConnectTarget+ dom0 name b\0qubes.VMShell b")
    assert out.startswith(b"2\0PermissionDenied\0"), out
