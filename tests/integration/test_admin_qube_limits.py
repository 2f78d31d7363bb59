"""Settings made through the Admin API reach the running qube's limits: memory and
maxmem (its memory cgroup), vcpus (its CPU quota), the volatile volume's size (its
throwaway root). Checked where the kernel keeps them (found from /proc/<init>/cgroup,
v1 or v2) and by behaviour inside the qube."""
import subprocess

from admin_fixtures import engine_daemon  # noqa: F401
from ns_fixtures import cgroup_file, proc_cgroups
from qrexec_fixtures import bin_path

MiB = 1 << 20


def run(d, vm, cmd, timeout=120, user=None):
    opts = ["-u", user] if user else []
    return subprocess.run([bin_path("qvm-run"), *opts, "-p", vm, cmd], env=d.env, capture_output=True, text=True,
                          timeout=timeout)


def init_pid(d, vm):
    return int((d.runtime / "qubes" / vm / "init.pid").read_text().split()[0])


def test_memory_vcpus_volatile_reach_the_qube(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.property.Set+memory", "a", "150")
    d.call("admin.vm.property.Set+maxmem", "a", "200")
    d.call("admin.vm.property.Set+vcpus", "a", "1")
    d.call("admin.vm.volume.Resize+volatile", "a", str(48 * MiB))
    d.call("admin.vm.Start", "a")
    dirs = proc_cgroups(init_pid(d, "a"))
    # where the kernel holds them
    assert int(cgroup_file(dirs, ("memory", "memory.limit_in_bytes"), "memory.max").read_text()) == 200 * MiB
    assert int(cgroup_file(dirs, ("memory", "memory.soft_limit_in_bytes"), "memory.low").read_text()) == 150 * MiB
    assert cgroup_file(dirs, ("cpu", "cpu.cfs_quota_us"), "cpu.max").read_text().split()[0] == "100000"
    # by behaviour: 120 MiB fits, 300 MiB does not (maxmem 200)
    hog = "python3 -c 'b = bytearray(%d << 20)\nfor i in range(0, len(b), 4096): b[i] = 1\nprint(\"held\")'"
    r = run(d, "a", hog % 120)
    assert r.returncode == 0 and r.stdout.strip() == "held", r
    r = run(d, "a", hog % 300)
    assert r.returncode != 0 and "held" not in r.stdout, r
    # the throwaway root is the volatile volume's 48 MiB
    r = run(d, "a", "df -B1 --output=size / | tail -1; dd if=/dev/zero of=/opt/fill bs=1M count=80 2>&1; "
                    "echo rc=$?; rm -f /opt/fill", user="root")
    assert 40 * MiB <= int(r.stdout.split()[0]) <= 48 * MiB, r.stdout
    assert "No space left" in r.stdout, r.stdout
    # changed while halted: the next start takes the new values
    d.call("admin.vm.Kill", "a")
    d.call("admin.vm.property.Set+maxmem", "a", "400")
    d.call("admin.vm.property.Set+vcpus", "a", "2")
    d.call("admin.vm.Start", "a")
    dirs = proc_cgroups(init_pid(d, "a"))
    assert int(cgroup_file(dirs, ("memory", "memory.limit_in_bytes"), "memory.max").read_text()) == 400 * MiB
    assert cgroup_file(dirs, ("cpu", "cpu.cfs_quota_us"), "cpu.max").read_text().split()[0] == "200000"
    r = run(d, "a", hog % 300)
    assert r.returncode == 0 and r.stdout.strip() == "held", r
    d.call("admin.vm.Kill", "a")
