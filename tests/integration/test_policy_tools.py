"""qrexec-policy-lint and qrexec-policy-test, run as a user would, against private
policy directories; the shipped default policy is checked call by call."""
import subprocess

import pytest

from policy_fixtures import policy_env  # noqa: F401  (fixture)


# --- qrexec-policy-lint ---------------------------------------------------------------

def test_lint_default_policy_is_clean(policy_env):
    policy_env.install_defaults()
    r = policy_env.lint()
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == ""
    assert "OK" in r.stderr


def test_lint_reports_file_and_line(policy_env):
    policy_env.write("10-good.policy", "qubes.Filecopy * work personal allow\n")
    bad = policy_env.write("20-bad.policy",
                           "# a comment\n"
                           "qubes.Filecopy * work personal allow target=@anyvm\n"
                           "qubes.Filecopy * work @default allow\n"
                           "qubes.Filecopy * work personal allow notify=yes notify=no\n"
                           "qubes.Filecopy * work personal frobnicate\n")
    r = policy_env.lint()
    assert r.returncode == 1
    lines = r.stdout.splitlines()
    assert len(lines) == 4, r.stdout
    for n, line in zip((2, 3, 4, 5), lines):
        assert line.startswith(f"{bad}:{n}: "), line
    assert "must specify target=" in lines[1]
    assert "given twice" in lines[2]
    assert "invalid action" in lines[3]


def test_lint_named_files(policy_env, tmp_path):
    good = tmp_path / "good.policy"
    good.write_text("qubes.GetDate * @anyvm @adminvm allow target=dom0\n")
    bad = tmp_path / "bad.policy"
    bad.write_text("qubes.GetDate * @anyvm @nosuchtoken allow\n")
    r = policy_env.lint(str(good))
    assert r.returncode == 0, r.stdout
    r = policy_env.lint(str(good), str(bad))
    assert r.returncode == 1
    assert r.stdout.strip() == f"{bad}:1: invalid target '@nosuchtoken': unknown @ token"


def test_lint_hostile_files(policy_env, tmp_path):
    policy_env.write("10-nul.policy", b"qubes.A * work personal allow\n\x00\n")
    policy_env.write("20-long.policy", "x" * 5000 + " * work personal allow\n")
    policy_env.write("30-loop.policy", "!include include/a\n")
    policy_env.write("include/a", "!include include/b\n")
    policy_env.write("include/b", "!include include/a\n")
    (tmp_path / "secret").write_text("* * @anyvm @anyvm allow\n")
    policy_env.write("40-escape.policy", "!include ../secret\n")
    r = policy_env.lint()
    assert r.returncode == 1
    out = r.stdout
    assert "10-nul.policy:2: NUL byte" in out
    assert "20-long.policy:1: line longer than" in out
    assert "include loop" in out
    assert "40-escape.policy:1: include outside the policy directory" in out


def test_lint_bad_file_name(policy_env):
    policy_env.write("10-Work.policy", "qubes.A * work personal allow\n")
    policy_env.write(".hidden.policy", "garbage\n")
    policy_env.write("notes.txt", "garbage\n")
    r = policy_env.lint()
    assert r.returncode == 1
    assert "invalid file name" in r.stdout
    assert "hidden" not in r.stdout and "notes" not in r.stdout


def test_lint_root_option(policy_env):
    policy_env.write("10-a.policy", "bogus\n")
    r = subprocess.run([policy_env.tool("qrexec-policy-lint"), "--root", str(policy_env.root)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert f"{policy_env.dir}/10-a.policy:1: wrong number of fields" in r.stdout


# --- qrexec-policy-test: the default policy, call by call -------------------------------

DEFAULT_CASES = [
    # source, target, service, decision, target shown, rule file
    ("work", "personal", "qubes.Filecopy", "ask", "-", "50-config-filecopy.policy"),
    ("work", "@default", "qubes.Filecopy", "ask", "-", "50-config-filecopy.policy"),
    ("work", "personal", "qubes.OpenInVM", "ask", "-", "90-default.policy"),
    ("work", "@dispvm", "qubes.OpenInVM", "allow", "@dispvm:default-dvm", "90-default.policy"),
    ("work", "personal", "qubes.ClipboardPaste", "ask", "-", "50-config-clipboard.policy"),
    ("work", "dom0", "qubes.GetDate", "allow", "dom0", "90-default.policy"),
    ("work", "@adminvm", "qubes.GetDate", "allow", "dom0", "90-default.policy"),
    ("work", "personal", "qubes.VMShell", "deny", "-", "90-default.policy"),
    ("work", "dom0", "admin.vm.List", "deny", "-", None),
    ("mgmt", "work", "admin.vm.Start", "deny", "-", None),
    ("work", "personal", "my.Service", "deny", "-", None),
    ("work", "dom0", "qubes.Filecopy", "deny", "-", None),
]


@pytest.mark.parametrize("source,target,service,decision,shown,rulefile", DEFAULT_CASES)
def test_default_policy(policy_env, source, target, service, decision, shown, rulefile):
    policy_env.install_defaults()
    r = policy_env.test(source, target, service)
    assert r.returncode == {"allow": 0, "deny": 1, "ask": 2}[decision], r.stdout + r.stderr
    assert r.fields["decision"] == decision
    assert r.fields["target"] == shown
    if rulefile:
        path, _, line = r.fields["rule"].rpartition(":")
        assert path.endswith("/" + rulefile) and int(line) > 0
        # the line named really is the rule that decided
        text = (policy_env.dir / rulefile).read_text().splitlines()[int(line) - 1]
        assert text.split()[0] == service
    else:
        assert r.fields["rule"] == "-"
        assert "no matching rule" in r.fields["reason"]


def test_default_ask_offers_admitted_targets(policy_env):
    policy_env.install_defaults()
    r = policy_env.test("work", "personal", "qubes.Filecopy")
    choices = r.fields["choices"].split()
    assert choices == sorted(["@dispvm:default-dvm", "default-dvm", "disp7", "fedora", "mgmt",
                              "personal", "vault"])
    assert "work" not in choices and "dom0" not in choices
    assert r.fields["default"] == "personal"


def test_delegating_admin_calls(policy_env):
    policy_env.install_defaults()
    inc = policy_env.dir / "include" / "admin-local-rwx"
    inc.write_text(inc.read_text() + "mgmt  @tag:work  allow target=dom0\n")
    r = policy_env.test("mgmt", "work", "admin.vm.Start")
    assert r.fields["decision"] == "allow" and r.fields["target"] == "dom0"
    assert r.fields["rule"] == f"{inc}:3"
    assert policy_env.test("mgmt", "personal", "admin.vm.Start").fields["decision"] == "deny"
    assert policy_env.test("work", "work", "admin.vm.Start").fields["decision"] == "deny"
    assert policy_env.test("mgmt", "work", "admin.vm.Remove").fields["decision"] == "deny"


# --- qrexec-policy-test: answering "why was this denied?" -------------------------------

def test_why_denied_names_the_rule(policy_env):
    policy_env.write("30-user.policy",
                     "qubes.Filecopy * work personal allow\n"
                     "qubes.Filecopy * work vault deny notify=no\n")
    r = policy_env.test("work", "vault", "qubes.Filecopy")
    assert r.returncode == 1
    assert r.fields["decision"] == "deny"
    assert r.fields["rule"] == f"{policy_env.dir}/30-user.policy:2"
    assert r.fields["notify"] == "no"
    r = policy_env.test("work", "personal", "qubes.Filecopy")
    assert r.returncode == 0
    assert r.fields["target"] == "personal"
    assert r.fields["rule"] == f"{policy_env.dir}/30-user.policy:1"


def test_broken_file_fails_closed_with_location(policy_env):
    policy_env.write("10-ok.policy", "qubes.A * work personal allow\n")
    policy_env.write("20-broken.policy", "qubes.B * work personal allow\nqubes.B * work personal allow user=\n")
    policy_env.write("30-later.policy", "qubes.C * work personal allow\n")
    assert policy_env.test("work", "personal", "qubes.A").fields["decision"] == "allow"
    for svc in ("qubes.B", "qubes.C", "qubes.D"):
        r = policy_env.test("work", "personal", svc)
        assert r.fields["decision"] == "deny"
        assert f"20-broken.policy:2: invalid user= value" in r.fields["reason"]
        assert "policy error:" in r.stderr


def test_parameters_are_reported(policy_env):
    policy_env.write("30-user.policy",
                     "my.Svc +arg work @default allow target=personal user=root notify=yes\n"
                     "my.Svc * work @anyvm allow autostart=no\n")
    r = policy_env.test("work", "", "my.Svc+arg")
    assert r.fields["decision"] == "allow"
    assert (r.fields["target"], r.fields["user"], r.fields["notify"], r.fields["autostart"]) == \
        ("personal", "root", "yes", "yes")
    # autostart=no: denied while the target is halted, allowed when it runs
    r = policy_env.test("work", "personal", "my.Svc+other")
    assert r.fields["decision"] == "deny" and "not running" in r.fields["reason"]
    assert policy_env.test("work", "mgmt", "my.Svc").fields["decision"] == "allow"


def test_call_to_itself_and_forged_targets(policy_env):
    policy_env.write("30-user.policy", "* * @anyvm @anyvm allow\n")
    assert policy_env.test("work", "work", "x.Y").fields["decision"] == "deny"
    assert "itself" in policy_env.test("work", "work", "x.Y").fields["reason"]
    for target in ("@anyvm", "@tag:work", "nosuch", "@dispvm:personal", "../etc", "x" * 200):
        r = policy_env.test("work", target, "x.Y")
        assert r.fields["decision"] == "deny", target
    assert policy_env.test("nosuch", "work", "x.Y").fields["decision"] == "deny"
    assert policy_env.test("work", "personal", "bad/service").fields["decision"] == "deny"


def test_system_info_errors(policy_env):
    policy_env.sysinfo.write_text("work NoSuchClass\n")
    r = policy_env.test("work", "personal", "x.Y")
    assert r.returncode == 125
    assert "system info" in r.stderr


def test_usage(policy_env):
    r = subprocess.run([policy_env.tool("qrexec-policy-test"), "only-one-arg"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 125 and "usage" in r.stderr
    r = subprocess.run([policy_env.tool("qrexec-policy-lint"), "--bogus"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2


def test_admin_api_unreachable_is_an_error(policy_env, tmp_path):
    """Without --system-info the tool asks bulkheadd; no daemon means a clear error."""
    import os
    env = dict(os.environ, BULKHEAD_SOCKET=str(tmp_path / "no-such.sock"))
    r = subprocess.run([policy_env.tool("qrexec-policy-test"), "--policy-dir", str(policy_env.dir),
                        "work", "personal", "x.Y"], capture_output=True, text=True, timeout=30,
                       env=env)
    assert r.returncode == 125
    assert "cannot connect to bulkheadd" in r.stderr


def test_lint_single_file_without_policy_dir(policy_env, tmp_path):
    f = tmp_path / "x.policy"
    f.write_text("qubes.A * work personal allow\n!include include/x\n")
    r = subprocess.run([policy_env.tool("qrexec-policy-lint"), "--policy-dir", str(tmp_path / "none"),
                        str(f)], capture_output=True, text=True, timeout=30)
    assert r.returncode == 1
    assert r.stdout.strip() == f"{f}:2: includes are not available here (no policy directory)"


def test_test_tool_root_option(policy_env):
    policy_env.write("30-user.policy", "qubes.A * work personal allow\n")
    r = subprocess.run([policy_env.tool("qrexec-policy-test"), "--root", str(policy_env.root),
                        "--system-info", str(policy_env.sysinfo), "work", "personal", "qubes.A"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0
    assert f"rule: {policy_env.dir}/30-user.policy:1" in r.stdout
