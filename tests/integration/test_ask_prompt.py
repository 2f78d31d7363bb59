"""policy `ask` answered by a person: qrexec-policy-agent in a terminal (driven here
through a pty, as a person would type), qrexec-policy-ask relaying each question, and
bulkheadd wiring it into every qrexec-daemon."""
import os
import pathlib
import pty
import re
import select
import signal
import socket
import subprocess
import time

import pytest

from admin_fixtures import engine_daemon, qvm_run  # noqa: F401
from qrexec_fixtures import bin_path

NO_AGENT = "no prompt agent: run qrexec-policy-agent in a dom0 terminal"


class PtyAgent:
    """qrexec-policy-agent with a pty as its controlling terminal."""

    def __init__(self, runtime, timeout=30, extra_env=None):
        self.sock = os.path.join(str(runtime), "policy-agent.sock")
        args = [bin_path("qrexec-policy-agent"), "--runtime", str(runtime), "--timeout", str(timeout)]
        env = dict(os.environ, **(extra_env or {}))
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child: a new session whose controlling terminal is the pty
            try:
                os.execve(args[0], args, env)
            finally:
                os._exit(127)
        self.out = b""
        self.mark = 0
        self.expect(rb"answering qrexec `ask` questions on ")

    def read(self, wait):
        r, _, _ = select.select([self.fd], [], [], wait)
        if r:
            try:
                data = os.read(self.fd, 65536)
            except OSError:  # EIO: the agent is gone
                data = b""
            self.out += data
            return data
        return None

    def expect(self, pattern, timeout=30):
        """Waits for pattern in the output after the last match; returns the match."""
        deadline = time.time() + timeout
        rx = re.compile(pattern, re.S)
        while True:
            m = rx.search(self.out, self.mark)
            if m:
                self.mark = m.end()
                return m
            left = deadline - time.time()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} in agent output: {self.out[self.mark:]!r}")
            if self.read(min(left, 0.5)) == b"":
                raise AssertionError(f"agent ended; output: {self.out!r}")

    def question(self):
        """Waits for a question; returns (header, [(target, is_default)])."""
        m = self.expect(rb"\r\n(\S+ wants to call \S+; choose a target:)\r\n(.*?)Target \[[^\]]*\]: ")
        choices = [(t.decode(), bool(d)) for t, d in
                   re.findall(rb"^  \d+\) (\S+)(  \[default\])?\r$", m.group(2), re.M)]
        numbers = re.findall(rb"^  (\d+)\) ", m.group(2), re.M)
        assert numbers == [str(i + 1).encode() for i in range(len(choices))], m.group(2)
        return m.group(1).decode(), choices

    def type(self, text):
        os.write(self.fd, text.encode())

    def stop(self):
        if not self.pid:
            return
        os.kill(self.pid, signal.SIGTERM)
        deadline = time.time() + 5
        done = False
        while not done and time.time() < deadline:
            done = os.waitpid(self.pid, os.WNOHANG) != (0, 0)
            if not done:
                self.read(0.05)
        if not done:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        self.pid = 0
        os.close(self.fd)


@pytest.fixture
def agent_factory(tmp_path):
    made = []

    def make(runtime=None, **kw):
        a = PtyAgent(runtime or tmp_path, **kw)
        made.append(a)
        return a
    yield make
    for a in made:
        a.stop()


def ask(sock, *args, timeout=30, env=None):
    """Runs qrexec-policy-ask against the agent at sock (in the background)."""
    e = dict(os.environ, BULKHEAD_POLICY_AGENT_SOCKET=str(sock), **(env or {}))
    e.pop("DISPLAY", None)
    return subprocess.Popen([bin_path("qrexec-policy-ask"), *args], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


# ---- the agent and the relay, without qubes ------------------------------------------

def test_agent_socket_is_private_and_single(agent_factory, tmp_path):
    a = agent_factory()
    st = os.stat(a.sock)
    # root and the group of qrexec's call processes (which run the relay), no one else
    assert st.st_mode & 0o777 == 0o660 and st.st_uid == os.geteuid() == 0
    assert st.st_gid == (1 << 19) + (1 << 17)
    r = subprocess.run([bin_path("qrexec-policy-agent"), "--runtime", str(tmp_path)],
                       capture_output=True, timeout=10, stdin=subprocess.DEVNULL, start_new_session=True)
    assert r.returncode == 1  # no terminal: refuses (and leaves the running agent alone)
    assert os.path.exists(a.sock)


def test_relay_enter_takes_the_default(agent_factory):
    a = agent_factory()
    p = ask(a.sock, "--source", "work", "--service", "qubes.Filecopy", "--default", "b", "--", "b", "c")
    head, choices = a.question()
    assert head == "work wants to call qubes.Filecopy; choose a target:"
    assert choices == [("b", True), ("c", False)]
    a.type("\n")
    out, err = p.communicate(timeout=10)
    assert (p.returncode, out) == (0, b"b\n"), err
    a.expect(rb"Allowed: work -> b")


def test_relay_number_and_name_pick_other_targets(agent_factory):
    a = agent_factory()
    for answer, want in (("2\n", b"c\n"), ("@dispvm:dvm\n", b"@dispvm:dvm\n")):
        p = ask(a.sock, "--source", "work", "--service", "qubes.OpenInVM", "--default", "b", "--",
                "b", "c", "@dispvm:dvm")
        a.question()
        a.type(answer)
        out, err = p.communicate(timeout=10)
        assert (p.returncode, out) == (0, want), err


def test_relay_not_offered_is_refused(agent_factory):
    a = agent_factory()
    p = ask(a.sock, "--source", "work", "--service", "s", "--default", "b", "--", "b", "c")
    a.question()
    for bad in ("vault", "9", "0", "b c", "x" * 1000):
        a.type(bad + "\n")
        a.expect(rb"That is not one of the offered targets\.")
        assert p.poll() is None  # still asking
    a.type("n\n")
    out, err = p.communicate(timeout=10)
    assert (p.returncode, out) == (1, b"")
    a.expect(rb"Denied\.")


def test_typeahead_cannot_answer_the_next_question(agent_factory):
    a = agent_factory()
    a.type("2\n")  # typed before any question
    time.sleep(0.3)
    p = ask(a.sock, "--source", "work", "--service", "s", "--default", "b", "--", "b", "c")
    a.question()
    time.sleep(0.5)
    assert p.poll() is None
    a.type("\n")
    out, _ = p.communicate(timeout=10)
    assert out == b"b\n"


def test_unanswered_question_is_denied_after_the_timeout(agent_factory):
    a = agent_factory(timeout=2)
    t0 = time.time()
    p = ask(a.sock, "--source", "work", "--service", "s", "--default", "b", "--", "b")
    a.question()
    out, _ = p.communicate(timeout=20)
    assert (p.returncode, out) == (1, b"")
    assert 1.5 < time.time() - t0 < 15
    a.expect(rb"No answer in 2 s: denied\.")


def test_no_default_means_enter_does_not_allow(agent_factory):
    a = agent_factory()
    p = ask(a.sock, "--source", "work", "--service", "s", "--default", "", "--", "b", "c")
    head, choices = a.question()
    assert choices == [("b", False), ("c", False)]
    a.type("\n")
    a.expect(rb"There is no default")
    assert p.poll() is None
    a.type("c\n")
    out, _ = p.communicate(timeout=10)
    assert out == b"c\n"


HOSTILE = ["a\x1b]0;pwned\x07", "b\x1b[2J", "c\r\nfake wants to call x", "d\x9b31m", "e f", "g\x7f"]


def test_hostile_names_are_never_shown(agent_factory):
    a = agent_factory()
    # the relay refuses to pass them on at all
    for h in HOSTILE:
        for args in (["--source", h, "--service", "s", "--default", "", "--", "b"],
                     ["--source", "a", "--service", "s+" + h, "--default", "", "--", "b"],
                     ["--source", "a", "--service", "s", "--default", h, "--", "b", h]):
            p = ask(a.sock, *args)
            out, err = p.communicate(timeout=10)
            assert (p.returncode, out) == (1, b""), err
            assert b"refusing to show a question" in err
    # and the agent refuses them from anyone who talks to its socket directly
    for h in HOSTILE + ["x" * 1100]:
        for msg in (f"bulkhead-ask 1\nsource {h}\nservice s\ndefault \nchoice b\nend\n",
                    f"bulkhead-ask 1\nsource a\nservice {h}\ndefault \nchoice b\nend\n",
                    f"bulkhead-ask 1\nsource a\nservice s\ndefault \nchoice b\nchoice {h}\nend\n"):
            s = socket.socket(socket.AF_UNIX)
            s.connect(a.sock)
            s.sendall(msg.encode("latin-1"))
            s.shutdown(socket.SHUT_WR)
            s.settimeout(10)
            assert s.recv(100) == b"deny\n"
            s.close()
            a.expect(rb"Refused a malformed question")
    # an oversized question
    s = socket.socket(socket.AF_UNIX)
    s.connect(a.sock)
    try:
        s.sendall(b"bulkhead-ask 1\nsource a\nservice s\ndefault \n" + b"choice b\n" * 5000)
        s.shutdown(socket.SHUT_WR)
    except OSError:
        pass
    s.settimeout(10)
    assert s.recv(100) in (b"deny\n", b"")
    s.close()
    a.expect(rb"Refused a malformed question")
    time.sleep(0.2)
    a.read(0.1)
    assert b"\x1b" not in a.out and b"\x07" not in a.out and b"\x9b" not in a.out
    assert b"pwned" not in a.out and b"fake wants" not in a.out
    assert b"wants to call" not in a.out  # nothing was ever shown as a question


def test_withdrawn_call_clears_the_question(agent_factory):
    a = agent_factory()
    p = ask(a.sock, "--source", "work", "--service", "s", "--default", "b", "--", "b")
    a.question()
    p.kill()
    p.wait()
    a.expect(rb"\(The call was withdrawn\.\)")
    # the agent goes on answering
    p = ask(a.sock, "--source", "work", "--service", "s", "--default", "b", "--", "b")
    a.question()
    a.type("\n")
    assert p.communicate(timeout=10)[0] == b"b\n"


def test_relay_without_agent_denies_at_once(tmp_path):
    t0 = time.time()
    p = ask(tmp_path / "policy-agent.sock", "--source", "work", "--service", "s", "--default", "b", "--", "b")
    out, err = p.communicate(timeout=10)
    assert (p.returncode, out) == (1, b"")
    assert NO_AGENT.encode() in err
    assert time.time() - t0 < 5


def test_relay_refuses_an_answer_that_was_not_offered(tmp_path):
    """A lying agent (anything that holds the socket) cannot pick a target of its own."""
    path = str(tmp_path / "fake.sock")
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(path)
    srv.listen(1)
    for answer in (b"allow vault\n", b"allow b\nallow c\n", b"allow b", b"yes\n"):
        p = ask(path, "--source", "work", "--service", "s", "--default", "b", "--", "b", "c")
        c, _ = srv.accept()
        c.settimeout(10)
        q = b""
        while not q.endswith(b"end\n"):
            q += c.recv(4096)
        assert q == b"bulkhead-ask 1\nsource work\nservice s\ndefault b\nchoice b\nchoice c\nend\n"
        c.sendall(answer)
        c.close()
        out, err = p.communicate(timeout=10)
        assert (p.returncode, out) == (1, b""), answer
        assert b"not one of the offered targets" in err
    srv.close()


# ---- with real qubes under bulkheadd ---------------------------------------------------

def call_bg(d, target, service, stdin="hostname"):
    e = dict(d.env, BULKHEAD_RUNTIME=str(d.runtime))
    cmd = f"echo {stdin} | /usr/lib/bulkhead/qrexec-client-vm {target} {service}"
    return subprocess.Popen([bin_path("qvm-run"), "-p", "--user", "root", "a", cmd], env=e,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.fixture
def ask_qubes(monkeypatch, engine_daemon):
    """bulkheadd with qubes a, b, c running and an ask rule: a may call b or c, default b.
    Nothing in the environment overrides the default ask program, and no display."""
    monkeypatch.delenv("BULKHEAD_QREXEC_ASK", raising=False)
    monkeypatch.delenv("DISPLAY", raising=False)
    d = engine_daemon
    # bulkheadd was started by the fixture with the test's environment; restart it clean
    d.stop()
    d.start()
    d.call("admin.vm.Create.AppVM+host", payload="name=c label=green")
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text(
        "qubes.VMShell  *  a  @default  ask  default_target=b\n"
        "qubes.VMShell  *  a  b         ask\n"
        "qubes.VMShell  *  a  c         ask\n")
    for q in ("a", "b", "c"):
        assert qvm_run(d, q, "true").returncode == 0
    return d


def test_real_call_prompts_with_exactly_the_admitted_targets(ask_qubes, agent_factory):
    d = ask_qubes
    a = agent_factory(d.runtime)
    p = call_bg(d, "@default", "qubes.VMShell")
    head, choices = a.question()
    assert head == "a wants to call qubes.VMShell; choose a target:"
    assert choices == [("b", True), ("c", False)]
    a.type("\n")  # Enter: the default
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out) == (0, b"b\n"), err
    p = call_bg(d, "@default", "qubes.VMShell")
    a.question()
    a.type("c\n")
    out, err = p.communicate(timeout=60)
    assert (p.returncode, out) == (0, b"c\n"), err
    p = call_bg(d, "@default", "qubes.VMShell")
    a.question()
    a.type("a\n")  # the caller itself is not offered
    a.expect(rb"That is not one of the offered targets\.")
    a.type("deny\n")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 126 and out == b"", err


def test_real_call_without_agent_is_denied(ask_qubes):
    d = ask_qubes
    t0 = time.time()
    p = call_bg(d, "@default", "qubes.VMShell")
    out, err = p.communicate(timeout=60)
    assert p.returncode == 126 and out == b""
    assert time.time() - t0 < 30
    assert NO_AGENT in d.log.read_text()


def test_real_call_unanswered_is_denied(ask_qubes, agent_factory):
    d = ask_qubes
    a = agent_factory(d.runtime, timeout=2)
    p = call_bg(d, "@default", "qubes.VMShell")
    a.question()
    out, err = p.communicate(timeout=60)
    assert p.returncode == 126 and out == b""
    a.expect(rb"No answer in 2 s: denied\.")


def test_real_hostile_service_never_reaches_the_terminal(ask_qubes, agent_factory):
    d = ask_qubes
    (d.root / "policy.d" / "10-test.policy").write_text("*  *  a  @default  ask  default_target=b\n")
    a = agent_factory(d.runtime)
    for svc in ("'qubes.VMShell+\x1b]0;pwned\x07'", "'qubes.VMShell+a\x1b[2J'"):
        p = call_bg(d, "@default", svc)
        out, err = p.communicate(timeout=60)
        assert p.returncode != 0 and out == b""
    a.read(0.5)
    assert b"wants to call" not in a.out and b"\x1b" not in a.out and b"pwned" not in a.out


# ---- the window fallback (no agent, a display) -------------------------------------------
# zenity/xmessage are stand-ins here (no X server on the test machine): scripts that log
# how they were called and answer as a person clicking would. They check that the
# relay offers exactly the choices with the default selected, and honours only those.

def fake_dialog(tmp_path, name, body):
    bindir = tmp_path / "bin"
    bindir.mkdir(exist_ok=True)
    prog = bindir / name
    prog.write_text("#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done > " + str(tmp_path / "args") +
                    "\n" + body + "\n")
    prog.chmod(0o755)
    return bindir


def ask_with_display(tmp_path, bindir, *args):
    e = dict(os.environ, DISPLAY=":99", PATH=f"{bindir}:/usr/bin:/bin",
             BULKHEAD_POLICY_AGENT_SOCKET=str(tmp_path / "none.sock"))
    return subprocess.run([bin_path("qrexec-policy-ask"), *args], env=e, capture_output=True, timeout=30)


QARGS = ["--source", "work", "--service", "qubes.OpenInVM", "--default", "c", "--", "b", "c", "@dispvm:dvm"]


@pytest.mark.parametrize("said,want", [("c", b"c\n"), ("@dispvm:dvm", b"@dispvm:dvm\n"), ("vault", None)])
def test_window_zenity_radiolist(tmp_path, said, want):
    bindir = fake_dialog(tmp_path, "zenity", f"echo '{said}'")
    r = ask_with_display(tmp_path, bindir, *QARGS)
    args = (tmp_path / "args").read_text().split("\n")
    assert "--radiolist" in args and "work wants to call qubes.OpenInVM; choose a target:" in args
    i = args.index("Target")
    assert args[i + 1:i + 3] == ["--timeout", "60"]
    assert args[i + 3:] == ["FALSE", "b", "TRUE", "c", "FALSE", "@dispvm:dvm", ""]
    if want:
        assert (r.returncode, r.stdout) == (0, want), r.stderr
    else:
        assert (r.returncode, r.stdout) == (1, b"")


@pytest.mark.parametrize("code,want", [(101, b"c\n"), (102, b"@dispvm:dvm\n"), (1, None), (0, None), (103, None)])
def test_window_xmessage_buttons(tmp_path, code, want):
    bindir = fake_dialog(tmp_path, "xmessage", f"exit {code}")
    r = ask_with_display(tmp_path, bindir, *QARGS)
    args = (tmp_path / "args").read_text()
    assert "-buttons\n1:100,2:101,3:102,Deny:1\n-default\n2\n" in args
    assert "  1) b\n  2) c  [default]\n  3) @dispvm:dvm\n" in args
    if want:
        assert (r.returncode, r.stdout) == (0, want), r.stderr
    else:
        assert (r.returncode, r.stdout) == (1, b"")


def test_window_without_dialog_program_denies(tmp_path):
    bindir = tmp_path / "empty"
    bindir.mkdir()
    e = dict(os.environ, DISPLAY=":99", PATH=str(bindir),
             BULKHEAD_POLICY_AGENT_SOCKET=str(tmp_path / "none.sock"))
    r = subprocess.run([bin_path("qrexec-policy-ask"), *QARGS], env=e, capture_output=True, timeout=30)
    assert (r.returncode, r.stdout) == (1, b"") and NO_AGENT.encode() in r.stderr


def test_real_call_window_reads_the_session_cookie_only_through_its_fd(ask_qubes, monkeypatch, tmp_path):
    """The call process that asks is not root, but the window must still open on root's
    display: it passes $XAUTHORITY (root's, 0600, under a 0700 dir) to the prompt program
    as an fd it opened before giving up root. The stand-in zenity (reachable by the call
    identity, as /usr/bin's is) reads the cookie through that fd and answers c; the
    control: the same program cannot open the cookie by its path."""
    import shutil
    import tempfile
    d = ask_qubes
    cookie = tmp_path / "Xauthority"            # tmp_path: under pytest's 0700 dirs
    cookie.write_text("cookie-7f3a\n")
    cookie.chmod(0o600)
    bindir = pathlib.Path(tempfile.mkdtemp(prefix="bh-zenity-"))
    try:
        bindir.chmod(0o755)
        log = bindir / "log"
        log.touch()
        log.chmod(0o666)
        (bindir / "zenity").write_text(
            "#!/bin/sh\n"
            f"echo \"fd: $(cat \"$XAUTHORITY\" 2>&1)\" >> {log}\n"
            f"if cat {cookie} >/dev/null 2>&1; then echo 'path: read' >> {log}; else echo 'path: denied' >> {log}; fi\n"
            "echo c\n")
        (bindir / "zenity").chmod(0o755)
        monkeypatch.setenv("DISPLAY", ":99")
        monkeypatch.setenv("XAUTHORITY", str(cookie))
        monkeypatch.setenv("PATH", f"{bindir}:{os.environ['PATH']}")
        d.stop()
        d.start()  # bulkheadd passes its environment to the daemons
        p = call_bg(d, "@default", "qubes.VMShell", stdin="'sleep 3; hostname'")
        # While the allowed call runs, what moves its bytes holds no copy of the cookie:
        # it was the prompt's. Checked once the relay exists (a fork of the call process,
        # made after the decision: the call process has the call identity, the relay the
        # qube's unprivileged one): then neither the relay nor the call process may hold it.
        call_ids = range((1 << 19) + 0x10000, (1 << 19) + 0x20000)
        relay_ids = range(1 << 19, (1 << 19) + 0x10000)

        def call_procs():
            found = {}
            for pid in filter(str.isdigit, os.listdir("/proc")):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        st = {ln.split(":")[0]: ln.split()[1] for ln in f if ln.startswith(("Uid:", "PPid:"))}
                    with open(f"/proc/{pid}/comm") as f:
                        comm = f.read().strip()
                except (OSError, IndexError):
                    continue
                if comm == "qrexec-daemon" and (int(st["Uid"]) in call_ids or int(st["Uid"]) in relay_ids):
                    found[pid] = (st["PPid"], int(st["Uid"]) in call_ids)
            return found

        seen, leaked = set(), []
        deadline = time.time() + 60
        while p.poll() is None and time.time() < deadline:
            procs = call_procs()
            for relay, (parent, is_call) in procs.items():
                if is_call or parent not in procs or not procs[parent][1]:
                    continue  # not a relay (a fork of a call process)
                seen.add(relay)
                for pid in (relay, parent):
                    try:
                        for fd in os.listdir(f"/proc/{pid}/fd"):
                            if "xauthority" in os.readlink(f"/proc/{pid}/fd/{fd}"):
                                leaked.append((pid, fd))
                    except OSError:
                        continue
            time.sleep(0.1)
        out, err = p.communicate(timeout=60)
        text = log.read_text()
        assert (p.returncode, out) == (0, b"c\n"), (err, text, d.log.read_text()[-1500:])
        assert "fd: cookie-7f3a" in text and "path: denied" in text, text
        assert seen, "no relay seen while the call ran (control)"
        assert not leaked, leaked
    finally:
        shutil.rmtree(bindir, ignore_errors=True)
