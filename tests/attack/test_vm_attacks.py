"""Attacks from inside a VM qube (its root, in its own kernel) on the host side: the
host's files, the host's /usr. Each has a positive
control showing the attempt ran."""
import os
import pathlib
import sys

_sys_path = str(pathlib.Path(__file__).resolve().parents[1] / "integration")
sys.path.insert(0, _sys_path)
from admin_fixtures import state_of  # noqa: E402
from vm_fixtures import vm_env, qvm_run, start  # noqa: E402,F401


def alive(pid):
    try:
        return pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def root(d, cmd, **kw):
    return qvm_run(d, "-p", "--user", "root", "v", cmd, **kw)


def test_host_files_are_not_in_the_guest(vm_env):
    d = vm_env.d
    if state_of(d, "v") != "Running":
        start(d, "v")
    marker = pathlib.Path("/tmp") / f"bh-vm-attack-{os.getpid()}"
    marker.write_text("host secret\n")
    try:
        r = root(d, f"cat {marker} /root/.bash_history 2>&1; cat /proc/1/cmdline; echo; "
                    "grep -c . /etc/shadow; hostname")
        out = r.stdout.decode()
        assert r.returncode == 0, r.stderr
        assert "host secret" not in out
        assert "No such file" in out  # control: the reads ran and found nothing
        assert "/init" in out  # PID 1 is our guest init in the guest's own kernel
        shadow_lines = int(out.splitlines()[-2])
        assert shadow_lines == 4  # the template's minimal /etc/shadow, not the host's
        assert out.splitlines()[-1] == "v"
    finally:
        marker.unlink()


def test_host_usr_is_read_only_in_the_guest(vm_env):
    d = vm_env.d
    name = f"bh-vm-attack-{os.getpid()}"
    r = root(d, f"touch /usr/{name} /usr/lib/bulkhead/{name} 2>&1; mount -o remount,rw /usr 2>&1; "
                f"touch /usr/{name} 2>&1; touch /tmp/{name} && echo control-ok")
    out = r.stdout.decode()
    assert "control-ok" in out  # the guest's root could write where it may
    assert not os.path.exists(f"/usr/{name}") and not os.path.exists(f"/usr/lib/bulkhead/{name}")
