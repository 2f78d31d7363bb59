"""Qubes' own policy parser test cases (qubes-core-qrexec qrexec/tests/policy/parser.py),
ported for the constructs where Bulkhead used to differ: uuid: sources and targets,
@dispvm:uuid:UUID, upper-case uuids and @type:RemoteVM (parse, match nothing),
ask/allow with autostart=no, the notify default of such a refusal, and a
@dispvm:NAME naming no qube, which makes collecting the ask's targets fail closed.

Run through qrexec-policy-test with Qubes' test system info (its local qubes; the
RemoteVM/relay qubes and the `internal` ones have no counterpart here, so they are left
out, and the expected target lists lose exactly them)."""
import os
import subprocess

import pytest

from admin_fixtures import BUILD, Daemon  # noqa: F401

TOOL = str(BUILD / "src/qrexec/policy/qrexec-policy-test")

# Qubes' _SYSTEM_INFO, local qubes.
SYSTEM_INFO = """\
dom0             AdminVM      uuid=00000000-0000-0000-0000-000000000000 state=Running tags=dom0-tag default_dispvm=default-dvm
test-vm1         AppVM        uuid=c9024a97-9b15-46cc-8341-38d75d5d421b state=Running tags=tag1,tag2 default_dispvm=default-dvm
test-vm2         AppVM        uuid=b3eb69d0-f9d9-4c3c-ad5c-454500303ea4 state=Running tags=tag2 default_dispvm=default-dvm
test-vm3         AppVM        uuid=fa6d56e8-a89d-4106-aa62-22e172a43c8b state=Halted tags=tag3 default_dispvm=default-dvm template_for_dispvms=yes
test-vm4         AppVM        uuid=91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9 state=Halted default_dispvm=default-dvm template_for_dispvms=yes
default-dvm      AppVM        uuid=f3e538bd-4427-4697-bed7-45ef3270df21 state=Halted default_dispvm=default-dvm template_for_dispvms=yes
test-invalid-dvm AppVM        uuid=c4fa3586-a6b6-4dc4-bdda-c9e7375a12b5 state=Halted tags=tag1,tag2 default_dispvm=test-vm1
test-no-dvm      AppVM        uuid=53a450b9-a454-4416-8adb-46812257ad29 state=Halted tags=tag1,tag2
test-template    TemplateVM   uuid=a9fe2b04-9fd5-4e95-be20-162433d64de0 state=Halted tags=tag1,tag2 default_dispvm=default-dvm
test-standalone  StandaloneVM uuid=6d7a02b5-532b-467f-b9fb-6596bae03c33 state=Halted tags=tag1,tag2 default_dispvm=default-dvm
test-relayvm1    AppVM        uuid=355304b8-bd5e-4699-9a2b-b6864fc26f6b state=Running
test2-vm1        AppVM        uuid=c798d6db-360f-473a-b902-1cc58ffd3ab0 state=Running
test2-relayvm1   AppVM        uuid=41435947-21f8-41d9-9079-26df31f03d97 state=Running
test2-relayvm2   AppVM        uuid=044767bb-081e-4260-b7be-35e77c36d510 state=Running
"""


@pytest.fixture
def pol(tmp_path):
    si = tmp_path / "system-info"
    si.write_text(SYSTEM_INFO)
    d = tmp_path / "policy.d"
    d.mkdir()

    def run(policy, source, target, service="test.Service+argument"):
        (d / "30-test.policy").write_text(policy)
        r = subprocess.run([TOOL, "--policy-dir", str(d), "--system-info", str(si), source, target, service],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode in (0, 1, 2), r.stderr
        out = dict(line.split(": ", 1) for line in r.stdout.splitlines())
        out["errors"] = [l for l in r.stderr.splitlines() if l.startswith("policy error")]
        return out
    return run


def choices(out):
    assert out["decision"] == "ask", out
    return out["choices"].split()


# test_020_collect_targets_for_ask, with an ask in front for @default (its expansion
# is empty, so it adds nothing) to have qrexec-policy-test print the collection.
COLLECT = """\
* * @anyvm @default ask
* * test-vm1 test-vm2 allow
* * test-vm1 @anyvm ask
* * test-vm2 @tag:tag1 deny
* * test-vm2 @tag:tag2 allow
* * test-no-dvm @type:AppVM deny
* * @type:AppVM @default allow target=test-vm3
* * @tag:tag1 @type:AppVM allow
* * test-no-dvm @dispvm allow
* * test-standalone @dispvm allow
* * test-standalone @adminvm allow
* * uuid:c9024a97-9b15-46cc-8341-38d75d5d421b bogus2 deny
* * uuid:c798d6db-360f-473a-b902-1cc58ffd3ab0 uuid:6d7a02b5-532b-467f-b9fb-6596bae03c33 ask
* * test2-vm1 @dispvm:uuid:91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9 ask
"""


def test_collect_targets_for_ask(pol):
    out = pol(COLLECT, "test-vm1", "@default")
    assert out["errors"] == []                # uuid:, bogus2, @dispvm:uuid: all parse
    assert choices(out) == [
        "@dispvm:default-dvm", "@dispvm:test-vm3", "@dispvm:test-vm4", "default-dvm",
        "test-invalid-dvm", "test-no-dvm", "test-relayvm1", "test-standalone", "test-template",
        "test-vm2", "test-vm3", "test-vm4", "test2-relayvm1", "test2-relayvm2", "test2-vm1"]
    assert choices(pol(COLLECT, "test-vm2", "@default")) == ["test-vm3"]
    assert pol(COLLECT, "test-vm3", "@default")["decision"] == "deny"   # nothing to offer
    assert choices(pol(COLLECT, "test-standalone", "@default")) == [
        "@dispvm:default-dvm", "default-dvm", "dom0", "test-invalid-dvm", "test-no-dvm",
        "test-relayvm1", "test-vm1", "test-vm2", "test-vm3", "test-vm4", "test2-relayvm1",
        "test2-relayvm2", "test2-vm1"]
    assert pol(COLLECT, "test-no-dvm", "@default")["decision"] == "deny"
    # the uuid: source and target, and @dispvm:uuid:
    assert choices(pol(COLLECT, "test2-vm1", "@default")) == ["@dispvm:test-vm4", "test-standalone", "test-vm3"]


def test_uuid_forms_parse_and_match(pol):
    # upper-case uuid and @type:RemoteVM: valid Qubes policy, they match nothing
    p = ("* * uuid:C9024A97-9B15-46CC-8341-38D75D5D421B @anyvm deny\n"
         "* * @type:RemoteVM @anyvm deny\n"
         "* * @anyvm @type:RemoteVM deny\n"
         "* * test-vm1 @dispvm:uuid:91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9 allow\n"
         "* * test-vm1 uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4 allow\n")
    out = pol(p, "test-vm1", "@dispvm:test-vm4")
    assert out["errors"] == [] and out["decision"] == "allow", out
    assert out["target"] == "@dispvm:test-vm4" and out["rule"].endswith(":4")
    out = pol(p, "test-vm1", "test-vm2")
    assert out["decision"] == "allow" and out["target"] == "test-vm2" and out["rule"].endswith(":5")
    out = pol(p, "test-vm1", "uuid:b3eb69d0-f9d9-4c3c-ad5c-454500303ea4")
    assert out["decision"] == "allow" and out["target"] == "test-vm2"
    # test_089: target=@dispvm:uuid:UUID
    out = pol("* * test-vm1 test-vm2 allow target=@dispvm:uuid:91e4fe8d-083b-4ddf-ad7b-fb4ebac537b9\n",
              "test-vm1", "test-vm2")
    assert out["decision"] == "allow" and out["target"] == "@dispvm:test-vm4", out


def test_non_existing_target_is_default(pol):
    # TC_01 test_003: a target that does not exist is evaluated as @default
    p = "* * test-vm1 @default allow target=test-vm2\n"
    out = pol(p, "test-vm1", "no-such-qube")
    assert out["decision"] == "allow" and out["target"] == "test-vm2", out


def test_eval_no_autostart(pol):
    # test_032: test-vm2 runs, test-vm3 is halted; the refusal notifies as the rule says
    p = "* * test-vm1 test-vm2 allow autostart=no\n* * test-vm1 test-vm3 allow autostart=no\n"
    assert pol(p, "test-vm1", "test-vm2")["decision"] == "allow"
    out = pol(p, "test-vm1", "test-vm3")
    assert out["decision"] == "deny" and out["notify"] == "no", out
    out = pol("* * test-vm1 test-vm3 allow autostart=no notify=yes\n", "test-vm1", "test-vm3")
    assert out["decision"] == "deny" and out["notify"] == "yes", out
    out = pol("* * test-vm1 @dispvm allow autostart=no\n", "test-vm1", "@dispvm")
    assert out["decision"] == "deny" and out["notify"] == "no", out


def test_eval_ask_no_autostart(pol):
    # test_043_eval_ask_no_autostart
    assert choices(pol("* * test-vm1 @anyvm ask\n", "test-vm1", "test-vm2")) == [
        "@dispvm:default-dvm", "@dispvm:test-vm3", "@dispvm:test-vm4", "default-dvm",
        "test-invalid-dvm", "test-no-dvm", "test-relayvm1", "test-standalone", "test-template",
        "test-vm2", "test-vm3", "test-vm4", "test2-relayvm1", "test2-relayvm2", "test2-vm1"]
    assert choices(pol("* * test-vm1 @anyvm ask autostart=no\n", "test-vm1", "test-vm2")) == [
        "test-relayvm1", "test-vm2", "test2-relayvm1", "test2-relayvm2", "test2-vm1"]
    # nothing running left to offer: denied (Qubes' AccessDenied, which notifies)
    out = pol("* * test-vm1 test-vm3 ask autostart=no\n", "test-vm1", "test-vm3")
    assert out["decision"] == "deny" and "no target" in out["reason"], out


def test_ask_with_dispvm_of_no_such_qube_fails_closed(pol):
    p = ("* * test-vm1 test-vm2 ask\n"
         "* * test-vm1 @dispvm:no-such-qube ask\n")
    out = pol(p, "test-vm1", "test-vm2")
    assert out["decision"] == "deny" and "no-such-qube" in out["reason"], out
    # control: without the line, the same ask offers test-vm2
    assert choices(pol("* * test-vm1 test-vm2 ask\n", "test-vm1", "test-vm2")) == ["test-vm2"]
    # an allow that names it decides without collecting (Qubes: verify denies)
    out = pol("* * test-vm1 @anyvm allow target=@dispvm:no-such-qube\n", "test-vm1", "test-vm2")
    assert out["decision"] == "deny"


def test_policy_test_finds_the_daemons_policy(tmp_path):
    """qrexec-policy-test with only $BULKHEAD_SOCKET reads that daemon's policy.d."""
    d = Daemon(tmp_path, defaults=False).start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=tpl label=black")
        d.call("admin.vm.Create.AppVM+tpl", payload="name=w label=red")
        d.call("admin.vm.Create.AppVM+tpl", payload="name=p label=red")
        (d.root / "policy.d" / "10-mine.policy").write_text("my.Svc * w p allow\n")
        env = {k: v for k, v in d.env.items() if k != "BULKHEAD_ROOT"}
        r = subprocess.run([TOOL, "w", "p", "my.Svc"], env=env, capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert f"rule: {d.root}/policy.d/10-mine.policy:1" in r.stdout
    finally:
        d.stop()
        d.cleanup()
