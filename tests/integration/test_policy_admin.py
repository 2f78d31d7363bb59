"""The policy engine's view of the system filled from a real bulkheadd over the Admin
API (qrexec-policy-test without --system-info): classes, tags, uuids, default_dispvm,
template_for_dispvms, a disposable's template and power states."""
import subprocess

from admin_fixtures import daemon  # noqa: F401  (fixture)
from policy_fixtures import policy_env  # noqa: F401  (fixture)


def ptest(policy_env, daemon, source, target, service):
    r = subprocess.run([policy_env.tool("qrexec-policy-test"), "--policy-dir", str(policy_env.dir),
                        source, target, service], capture_output=True, text=True, timeout=60,
                       env=daemon.env)
    fields = dict(line.partition(": ")[::2] for line in r.stdout.splitlines())
    assert r.returncode in (0, 1, 2), r.stdout + r.stderr
    return fields


def test_system_info_from_admin_api(policy_env, daemon):
    daemon.call("admin.vm.tag.Set+project-x", "work")
    disp = daemon.call("admin.vm.CreateDisposable", "default-dvm")
    work_uuid = daemon.call("admin.vm.List", "work").split("uuid=")[1].strip()
    policy_env.write("30-user.policy",
                     "tag.Svc      *  @anyvm  @tag:project-x  allow\n"
                     "type.Svc     *  @anyvm  @type:DispVM   allow\n"
                     f"uuid.Svc     *  @anyvm  uuid:{work_uuid}  allow\n"
                     "disp.Svc     *  @dispvm:default-dvm  @anyvm  allow\n"
                     "admin.Svc    *  @anyvm  @adminvm  allow\n"
                     "open.Svc     *  @anyvm  @dispvm   allow\n"
                     "auto.Svc     *  @anyvm  @anyvm    allow autostart=no\n"
                     "ask.Svc      *  work    @anyvm    ask\n")
    try:
        assert ptest(policy_env, daemon, "personal", "work", "tag.Svc")["decision"] == "allow"
        assert ptest(policy_env, daemon, "work", "personal", "tag.Svc")["decision"] == "deny"
        assert ptest(policy_env, daemon, "work", disp, "type.Svc")["decision"] == "allow"
        assert ptest(policy_env, daemon, "work", "vault", "type.Svc")["decision"] == "deny"
        r = ptest(policy_env, daemon, "personal", f"uuid:{work_uuid}", "uuid.Svc")
        assert (r["decision"], r["target"]) == ("allow", "work")
        # a disposable is matched as a source by the template it came from
        assert ptest(policy_env, daemon, disp, "work", "disp.Svc")["decision"] == "allow"
        assert ptest(policy_env, daemon, "personal", "work", "disp.Svc")["decision"] == "deny"
        r = ptest(policy_env, daemon, "work", "dom0", "admin.Svc")
        assert (r["decision"], r["target"]) == ("allow", "dom0")
        # @dispvm: the caller's default_dispvm, from the global default
        r = ptest(policy_env, daemon, "work", "@dispvm", "open.Svc")
        assert (r["decision"], r["target"]) == ("allow", "@dispvm:default-dvm")
        # every qube of a fresh daemon is halted: autostart=no refuses
        r = ptest(policy_env, daemon, "work", "personal", "auto.Svc")
        assert r["decision"] == "deny" and "not running" in r["reason"]
        r = ptest(policy_env, daemon, "work", "", "ask.Svc")
        choices = r["choices"].split()
        assert "@dispvm:default-dvm" in choices and "personal" in choices and disp in choices
        assert "work" not in choices and "dom0" not in choices
    finally:
        daemon.call("admin.vm.Remove", disp)
