"""A qube that policy allows to call admin.vm.List learns only about the qubes policy
lets it list (as Qubes filters the list per listed qube), never the whole system."""
import pathlib as _pl
import sys as _sys
import time

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import engine_daemon, qvm_run  # noqa: F401

CVM = "/usr/lib/bulkhead/qrexec-client-vm"


def listed(out):
    assert out.startswith(b"0\0"), out
    return {line.split()[0] for line in out[2:].decode().splitlines() if line}


def test_admin_vm_list_from_a_qube_is_filtered_by_policy(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=secretqube label=black")
    d.call("admin.vm.tag.Set+managed", "b")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("admin.vm.List  *  a  @adminvm  allow  target=dom0\n"
                                        "admin.vm.List  *  a  @tag:managed  allow  target=dom0\n"
                                        "admin.vm.List  *  a  secretqube  ask  target=dom0\n")
    assert qvm_run(d, "a", "true").returncode == 0
    r = qvm_run(d, "-p", "--user", "root", "a", f"{CVM} dom0 admin.vm.List < /dev/null")
    assert r.returncode == 0, r.stderr
    names = listed(r.stdout)
    assert "secretqube" not in names and "host" not in names  # ask or no rule: not listed
    # Positive control: the call ran and listed what policy allows (b by its tag, dom0).
    assert names == {"b", "dom0"}, names
    # dom0's own list is unfiltered
    assert {"a", "b", "host", "secretqube", "dom0"} <= listed(("0\0" + d.call("admin.vm.List", "dom0")).encode())
    # a call on one named qube is the qrexec policy's to allow (b yes, secretqube no)
    r = qvm_run(d, "-p", "--user", "root", "a", f"{CVM} b admin.vm.List < /dev/null")
    assert r.returncode == 0 and listed(r.stdout) == {"b"}, (r.stdout, r.stderr)


def test_disposables_leave_no_runtime_dir(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.VMShell  *  a  @dispvm:dvmt  allow\n")
    assert qvm_run(d, "a", "true").returncode == 0
    made = []
    for _ in range(3):
        r = qvm_run(d, "-p", "--user", "root", "a", f"echo hostname | {CVM} @dispvm:dvmt qubes.VMShell")
        assert r.returncode == 0, (r.stdout, r.stderr)
        made.append(r.stdout.decode().strip())
    assert all(n.startswith("disp") for n in made), made  # positive control: 3 disposables ran
    for _ in range(600):
        if not any(n in d.call("admin.vm.List", "dom0") for n in made):
            break
        time.sleep(0.1)
    left = sorted(p.name for p in (d.runtime / "qubes").iterdir() if p.name.startswith("disp"))
    assert left == [], left
