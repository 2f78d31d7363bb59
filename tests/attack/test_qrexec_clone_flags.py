"""clone() under qrexec-daemon's filters makes no namespace.

A call process whose target is a qube forks its relay and nothing else: its allowlist
lets clone() have fork's flags only (a user namespace would give it every capability
inside and the kernel code behind them), and clone3, whose flags the filter cannot see,
fails with ENOSYS so that glibc falls back to clone(). The monitor's denylist, which
every call process and dom0 service inherits, denied unshare and setns but not clone()
with CLONE_NEW* flags: now it does. Positive controls: fork and a plain clone work
under both filters, and a dom0 service run for a qube's call still forks."""
import ctypes
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import BUILD, engine_daemon  # noqa: E402,F401
from qrexec_fixtures import become, bin_path, dom0_service_dir  # noqa: E402,F401

PROBE = BUILD / "src/qrexec/test-qrexec-filter-probe"
SIGSYS = 31


def probe(filt, op):
    r = subprocess.run([str(PROBE), filt, op], capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def userns_allowed_here():
    """The premise: this host lets an unprivileged process make a user namespace."""
    import os
    if not shutil.which("unshare"):
        return False

    r = subprocess.run(["unshare", "-U", "true"], preexec_fn=become(65534, 65534), capture_output=True, timeout=30)
    return r.returncode == 0


def test_the_call_filter_lets_clone_fork_only():
    assert probe("call", "fork") == "exit 0"          # controls: the relay's fork works
    assert probe("call", "clone-plain") == "exit 0"
    # the allowlist kills; in sanitizer builds its default action logs instead (their
    # runtimes use more), so there the call goes through, logged
    sanitized = os.environ.get("BULKHEAD_SANITIZE") == "1"
    for op in ("clone-newuser", "clone-newns", "clone-newnet", "clone-files"):
        assert probe("call", op) == ("exit 0" if sanitized else f"signal {SIGSYS}"), op
    assert probe("call", "clone3") == "exit 2"        # ENOSYS: glibc falls back to clone


def test_the_root_side_filter_denies_namespaces_through_clone():
    assert probe("root", "fork") == "exit 0"          # controls
    assert probe("root", "clone-plain") == "exit 0"
    assert probe("root", "clone-files") == "exit 0"   # threads and the like stay
    for op in ("clone-newuser", "clone-newns", "clone-newnet"):
        assert probe("root", op) == "exit 1", op      # EPERM, as unshare and setns
    assert probe("root", "clone3") == "exit 2"


SERVICE = r"""#!PYTHON
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
def attempt(flags):
    pid = libc.syscall(56, flags | signal.SIGCHLD, 0, 0, 0, 0)  # clone on x86_64
    if pid == 0:
        os._exit(0)
    if pid > 0:
        os.waitpid(pid, 0)
        return "made"
    return os.strerror(ctypes.get_errno())
print("plain:", attempt(0))
print("newuser:", attempt(0x10000000))
print("fork:", "made" if os.fork() or os._exit(0) else "")
print("probe-end", flush=True)
"""


@pytest.mark.skipif(ctypes.sizeof(ctypes.c_void_p) != 8 or not pathlib.Path("/proc/sys/user").exists(),
                    reason="x86_64 clone numbering and user namespaces needed")
def test_a_dom0_service_run_for_a_qube_makes_no_user_namespace(dom0_service_dir, engine_daemon):
    import os
    if os.uname().machine != "x86_64":
        pytest.skip("the service uses x86_64's clone number")
    if not userns_allowed_here():
        pytest.skip("this host lets no unprivileged process make a user namespace: nothing to deny")
    d = engine_daemon
    svc = dom0_service_dir / "test.CloneProbe"
    svc.write_text(SERVICE.replace("PYTHON", sys.executable))
    svc.chmod(0o755)
    (d.root / "policy.d").mkdir(exist_ok=True)
    (d.root / "policy.d" / "10-test.policy").write_text("test.CloneProbe  *  a  @adminvm  allow\n")
    e = dict(d.env, BULKHEAD_RUNTIME=str(d.runtime))
    assert subprocess.run([bin_path("qvm-run"), "a", "true"], env=e, timeout=120).returncode == 0
    r = subprocess.run([bin_path("qvm-run"), "-p", "--user", "root", "a",
                        "/usr/lib/bulkhead/qrexec-client-vm @adminvm test.CloneProbe"],
                       env=e, capture_output=True, timeout=120)
    out = r.stdout.decode()
    assert "probe-end" in out, (out, r.stderr, d.log.read_text()[-1500:])
    res = dict(line.split(": ", 1) for line in out.splitlines() if ": " in line)
    assert res["plain"] == "made" and res["fork"] == "made", res   # controls
    assert res["newuser"] == "Operation not permitted", res
