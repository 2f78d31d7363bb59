"""Another qube's runtime dir is not listable by a qube's call identity.

A qube's runtime dir holds its daemon's socket, pid files and vchan dir; a call to the
qube needs some of those names (and a lock), none needs to list the dir. Each is 0711
once its qrexec-daemon runs: a process with qube a's call UID cannot list b's (nor its
own), but still reaches b's socket and lock, and a call from a to b still works (the
positive control); root lists it as before."""
import os
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from admin_fixtures import engine_daemon, qvm_run  # noqa: E402,F401
from qrexec_fixtures import become_call_identity  # noqa: E402

CHILD = r"""
import os, sys
qubes = sys.argv[1]
for name in sys.argv[2:]:
    d = f"{qubes}/{name}"
    try:
        os.listdir(d)
        print(f"list-{name}: ok")
    except PermissionError:
        print(f"list-{name}: denied")
    try:
        os.stat(f"{d}/qrexec.sock")
        fd = os.open(f"{d}/vchan", os.O_RDONLY | os.O_DIRECTORY)
        os.close(fd)
        print(f"reach-{name}: ok")
    except OSError as e:
        print(f"reach-{name}: {e.strerror}")
print("end")
"""


def test_another_qubes_runtime_dir_is_not_listable_by_a_call_identity(engine_daemon):
    d = engine_daemon
    (d.root / "policy.d").mkdir(exist_ok=True)
    (d.root / "policy.d" / "10-test.policy").write_text("qubes.VMShell  *  a  b  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    qid = int(d.call("admin.vm.property.Get+qid", "a").split()[-1])
    rt = os.open(str(d.runtime), os.O_PATH | os.O_DIRECTORY)
    try:
        r = subprocess.run([sys.executable, "-c", CHILD, f"/proc/self/fd/{rt}/qubes", "b", "a"], preexec_fn=become_call_identity(qid),
                           pass_fds=(rt,), capture_output=True, text=True, timeout=60)
    finally:
        os.close(rt)
    assert r.stdout.endswith("end\n"), (r.stdout, r.stderr)
    res = dict(line.split(": ", 1) for line in r.stdout.splitlines() if ": " in line)
    assert res["list-b"] == "denied" and res["list-a"] == "denied", res
    # what a call needs is still reached: the daemon's socket's name and the vchan dir
    assert res["reach-b"] == "ok" and res["reach-a"] == "ok", res
    # root lists it (the names are there to hide)
    assert "qrexec.sock" in os.listdir(d.runtime / "qubes" / "b")
    # and a call from a to b works: its call process binds in b's vchan dir
    r = qvm_run(d, "-p", "--user", "root", "a", "echo 'echo relayed' | /usr/lib/bulkhead/qrexec-client-vm b qubes.VMShell")
    assert r.returncode == 0 and r.stdout == b"relayed\n", (r.stdout, r.stderr)
