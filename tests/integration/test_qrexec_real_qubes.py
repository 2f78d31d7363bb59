"""qrexec with real ns qubes: bulkheadd starts the qubes and their qrexec daemons; dom0
runs commands with qvm-run; qubes call each other under policy (bhpolicy)."""
import os
import pathlib

import pytest

from admin_fixtures import engine_daemon, wait_state, qvm_run  # noqa: F401


def test_qvm_run_in_a_real_qube(engine_daemon):
    d = engine_daemon
    r = qvm_run(d, "-p", "a", "echo hi from $(hostname); id -un; exit 3")  # autostarts a
    assert r.returncode == 3, r.stderr
    assert r.stdout == b"hi from a\nuser\n"
    r = qvm_run(d, "-p", "--user", "root", "a", "id -u; cat /etc/shadow >/dev/null && echo readable")
    assert r.stdout.startswith(b"0\n")
    data = os.urandom(1 << 20)
    r = qvm_run(d, "-p", "a", "cat", input=data)
    assert r.returncode == 0 and r.stdout == data


def test_qube_to_qube_under_policy(engine_daemon):
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.GetDate  *  a  b  allow\n"
                                        "qubes.Filecopy  *  a  b  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    r = qvm_run(d, "-p", "--user", "root", "a", "/usr/lib/bulkhead/qrexec-client-vm b qubes.GetDate")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert r.stdout.startswith(b"20")
    r = qvm_run(d, "-p", "--user", "root", "a", "/usr/lib/bulkhead/qrexec-client-vm b qubes.VMShell")
    assert r.returncode == 126  # no rule: denied
    r = qvm_run(d, "-p", "--user", "root", "a",
                "echo payload > /root/f && /usr/lib/bulkhead/qvm-copy-to-vm b /root/f")
    assert r.returncode == 0, (r.stdout, r.stderr)
    r = qvm_run(d, "-p", "b", "cat ~/QubesIncoming/a/f")
    assert r.stdout == b"payload\n", r.stderr


def test_user_calls_from_a_real_qube(engine_daemon):
    """qrexec-client-vm as the qube's user: it creates its data socket in /run/qubes/vchan."""
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.GetDate  *  a  b  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    mode = qvm_run(d, "-p", "a", "stat -c %a /run/qubes/vchan").stdout.strip()
    assert mode == b"1777"
    r = qvm_run(d, "-p", "a", "/usr/lib/bulkhead/qrexec-client-vm b qubes.GetDate")
    assert r.returncode == 0, r.stderr


def test_call_starts_a_halted_target(engine_daemon):
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.GetDate  *  a  b  allow\n")
    assert qvm_run(d, "a", "true").returncode == 0
    assert "state=Halted" in d.call("admin.vm.List", "b")
    r = qvm_run(d, "-p", "--user", "root", "a", "/usr/lib/bulkhead/qrexec-client-vm b qubes.GetDate")
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "state=Running" in d.call("admin.vm.List", "b")


def test_call_to_dispvm_runs_in_a_new_disposable(engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    d.call("admin.vm.property.Set+default_dispvm", "a", "dvmt")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.VMShell  *  a  @dispvm  allow\n")
    assert qvm_run(d, "a", "true").returncode == 0
    r = qvm_run(d, "-p", "--user", "root", "a", "echo hostname | /usr/lib/bulkhead/qrexec-client-vm @dispvm qubes.VMShell")
    assert r.returncode == 0, (r.stdout, r.stderr)
    name = r.stdout.decode().strip()
    assert name.startswith("disp"), r.stdout
    # the disposable served one call and is gone
    import time
    for _ in range(600):
        if name not in d.call("admin.vm.List", "dom0"):
            break
        time.sleep(0.1)
    assert name not in d.call("admin.vm.List", "dom0")


@pytest.fixture
def ask_script(monkeypatch):
    """A scriptable prompt: logs its arguments, answers what $ANSWER_FILE says. Where the
    daemon's call process, which runs it and is not root, can reach it (as the real
    prompt in /usr/lib/bulkhead): pytest's tmp_path is under 0700 dirs."""
    import shutil
    import tempfile
    d = pathlib.Path(tempfile.mkdtemp(prefix="bh-ask-"))
    d.chmod(0o755)
    log, answer = d / "ask.log", d / "answer"
    log.touch(0o666)
    log.chmod(0o666)
    answer.touch()
    prog = d / "ask"
    prog.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\ncat {answer}\n")
    prog.chmod(0o755)
    monkeypatch.setenv("BULKHEAD_QREXEC_ASK", str(prog))
    yield log, answer
    shutil.rmtree(d, ignore_errors=True)


def test_ask_is_answered_by_the_prompt(ask_script, engine_daemon):
    log, answer = ask_script
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("qubes.GetDate  *  a  @default  ask  default_target=b\n"
                                        "qubes.GetDate  *  a  b  ask\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    call = "/usr/lib/bulkhead/qrexec-client-vm @default qubes.GetDate"
    answer.write_text("b\n")
    r = qvm_run(d, "-p", "--user", "root", "a", call)
    assert r.returncode == 0, (r.stdout, r.stderr)
    assert "--source a --service qubes.GetDate --default b -- b" in log.read_text()
    answer.write_text("a\n")  # not offered (a call to itself): refused
    assert qvm_run(d, "-p", "--user", "root", "a", call).returncode == 126
    answer.write_text("")  # nobody answered
    assert qvm_run(d, "-p", "--user", "root", "a", call).returncode == 126


def test_admin_api_from_a_qube_only_as_policy_allows(engine_daemon):
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("admin.vm.List  *  a  @adminvm  allow  target=dom0\n"
                                        "admin.vm.List  *  a  b  allow  target=dom0\n"
                                        "admin.vm.property.Get  +label  a  b  allow  target=dom0\n")
    assert qvm_run(d, "a", "true").returncode == 0
    cvm = "/usr/lib/bulkhead/qrexec-client-vm"
    r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} dom0 admin.vm.List < /dev/null")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith(b"0\0") and b"b class=AppVM state=Halted" in r.stdout  # filtered: attack test
    r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} b admin.vm.property.Get+label < /dev/null")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"0\0default=False type=label blue"
    r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} dom0 admin.vm.Kill < /dev/null")
    assert r.returncode == 126  # no rule
    r = qvm_run(d, "-p", "--user", "root", "a", f"{cvm} b admin.vm.property.Get+netvm < /dev/null")
    assert r.returncode == 126  # only +label was allowed
    assert "state=Running" in d.call("admin.vm.List", "a")


def test_user_service_in_usr_local_persists_and_is_called(engine_daemon):
    """A service the user installs in an app qube's /usr/local/etc/qubes-rpc survives a
    restart (it lives in the private volume, as in Qubes) and answers policy-allowed calls."""
    d = engine_daemon
    pol = d.root / "policy.d"
    (pol / "10-test.policy").write_text("my.Echo  *  a  b  allow\n")
    svc = "mkdir -p /usr/local/etc/qubes-rpc && printf '#!/bin/sh\\necho from-b:$1:$QREXEC_REMOTE_DOMAIN\\n' > /usr/local/etc/qubes-rpc/my.Echo && chmod +x /usr/local/etc/qubes-rpc/my.Echo"
    assert qvm_run(d, "--user", "root", "b", svc).returncode == 0
    d.call("admin.vm.Kill", "b")
    r = qvm_run(d, "-p", "a", "qrexec-client-vm b my.Echo+xyz")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == b"from-b:xyz:a"
    # the host's /usr/local is not what the qube sees
    assert qvm_run(d, "-p", "b", "ls /usr/local").stdout.split() == [b"etc"]


def test_qvm_run_on_a_paused_qube_fails_at_once(engine_daemon):
    d = engine_daemon
    assert qvm_run(d, "a", "true").returncode == 0
    d.call("admin.vm.Pause", "a")
    r = qvm_run(d, "-p", "a", "true", timeout=20)
    assert r.returncode == 1 and b"paused" in r.stderr
    d.call("admin.vm.Unpause", "a")
    assert qvm_run(d, "-p", "a", "true").returncode == 0


def test_volume_revert_undoes_the_last_session(engine_daemon):
    """qvm-volume revert, as in Qubes: the newest revision is the private volume as it was
    before the last session."""
    d = engine_daemon
    d.call("admin.vm.volume.Set.revisions_to_keep+private", "a", "1")
    assert qvm_run(d, "a", "echo v1 > ~/v").returncode == 0
    d.call("admin.vm.Shutdown", "a")
    assert wait_state(d, "a", "Halted")
    assert qvm_run(d, "a", "echo v2 > ~/v").returncode == 0
    d.call("admin.vm.Shutdown", "a")
    assert wait_state(d, "a", "Halted")
    assert d.call("admin.vm.volume.ListSnapshots+private", "a").strip()
    d.call("admin.vm.volume.Revert+private", "a", "")
    assert qvm_run(d, "-p", "a", "cat ~/v").stdout == b"v1\n"


def test_service_user_follows_passwd_and_group(engine_daemon):
    """The agent keeps the users it resolved (svc_user.c); a user added, given a new group
    or removed inside the qube is seen by the very next call."""
    d = engine_daemon
    r = qvm_run(d, "-p", "--user", "root", "a",
                "echo 'bob:x:1234:1234::/tmp:/bin/sh' >> /etc/passwd && echo 'bob:x:1234:' >> /etc/group")
    assert r.returncode == 0, r.stderr
    r = qvm_run(d, "-p", "--user", "bob", "a", "id -u; id -G; echo $HOME $USER")
    assert (r.returncode, r.stdout) == (0, b"1234\n1234\n/tmp bob\n"), r.stderr
    # the group file changes (same size would not hide it: ctime/mtime are compared too)
    r = qvm_run(d, "-p", "--user", "root", "a", "echo 'extra:x:4321:bob' >> /etc/group")
    assert r.returncode == 0, r.stderr
    r = qvm_run(d, "-p", "--user", "bob", "a", "id -G")
    assert (r.returncode, r.stdout) == (0, b"1234 4321\n"), r.stderr
    r = qvm_run(d, "-p", "--user", "root", "a", "sed -i '/^bob:/d' /etc/passwd")
    assert r.returncode == 0, r.stderr
    r = qvm_run(d, "-p", "--user", "bob", "a", "echo ran")
    assert r.returncode == 125 and r.stdout == b""
    assert b"no such user 'bob'" in r.stderr


def test_bulk_stdout_and_stderr_stay_apart(engine_daemon):
    """A service's stdout and stderr pipes are spliced to the data socket behind their
    message headers (stream.c): many large interleaved writes to both arrive whole, in
    order, each on its own stream; and a local program's output (qrexec-client-vm's
    pipe) the same way in the other direction."""
    d = engine_daemon
    script = ("for i in $(seq 60); do head -c 70001 /dev/zero | tr '\\0' o; "
              "head -c 30011 /dev/zero | tr '\\0' e >&2; printf '%04d' $i; done")
    r = qvm_run(d, "-p", "a", script)
    assert r.returncode == 0, r.stderr[-200:]
    want = b"".join(b"o" * 70001 + b"%04d" % i for i in range(1, 61))
    assert r.stdout == want
    assert r.stderr == b"e" * (30011 * 60)
    # qube to qube with a local program: qrexec-client-vm's pipe, spliced the same way
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("test.Count  *  a  b  allow\n")
    assert qvm_run(d, "b", "true").returncode == 0
    r = qvm_run(d, "-p", "--user", "root", "b",
                "mkdir -p /etc/qubes-rpc && printf '#!/bin/sh\\nwc -c\\n' > /etc/qubes-rpc/test.Count && "
                "chmod 755 /etc/qubes-rpc/test.Count")
    assert r.returncode == 0, r.stderr
    r = qvm_run(d, "-p", "a", "/usr/lib/bulkhead/qrexec-client-vm b test.Count "
                "/bin/sh -c 'head -c 5000000 /dev/zero; exec 1>&-; cat >&2'")
    assert r.returncode == 0, r.stderr[-300:]
    assert r.stderr.strip() == b"5000000"
