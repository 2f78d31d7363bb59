"""The tools facing a broken or hostile Admin API peer: a tiny fake responder (not a
substitute for the real daemon, which the other test modules use) sends malformed or
unexpected replies; the tools must fail cleanly, never crash or hang."""
import os
import socket
import subprocess
import threading

import pytest

from tools_fixtures import TOOLS


class FakeDaemon:
    """Answers each request with replies[method] (bytes), or closes without a reply."""

    def __init__(self, path, replies):
        self.path = path
        self.replies = replies
        self.requests = []
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.stopped = False
        self.thread.start()

    def serve(self):
        while not self.stopped:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\0" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                header = data.split(b"\0", 1)[0].decode(errors="replace")
                self.requests.append(header)
                method = header.split(" ", 1)[0].split("+", 1)[0]
                reply = self.replies.get(method)
                if callable(reply):
                    reply = reply(header)
                if reply is not None:
                    try:
                        conn.sendall(reply)
                    except OSError:
                        pass

    def close(self):
        self.stopped = True
        self.sock.close()


LIST = b"0\0dom0 class=AdminVM state=Running\nwork class=AppVM state=Halted\n"


@pytest.fixture
def fake(tmp_path):
    daemons = []

    def make(replies):
        d = FakeDaemon(str(tmp_path / f"fake{len(daemons)}.sock"), replies)
        daemons.append(d)
        return d
    yield make
    for d in daemons:
        d.close()


def run(d, tool, *args):
    env = dict(os.environ, BULKHEAD_SOCKET=d.path)
    p = subprocess.run([str(TOOLS / tool), *args], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode >= 0, f"{tool} died of signal {-p.returncode}: {p.stderr}"
    return p


def test_no_reply_and_garbage(fake):
    d = fake({})
    p = run(d, "qvm-ls")
    assert p.returncode == 1 and "closed the connection without a reply" in p.stderr
    d = fake({"admin.vm.List": b"7\0what"})
    p = run(d, "qvm-ls")
    assert p.returncode == 1 and "malformed reply" in p.stderr
    d = fake({"admin.vm.List": b"2\0QubesException\0"})
    p = run(d, "qvm-prefs", "work")
    assert p.returncode == 1 and "malformed" in p.stderr


def test_exception_message_unescaped(fake):
    d = fake({"admin.vm.List": LIST,
              "admin.vm.property.Set": b"2\0QubesValueError\0\0value 100%% wrong\0"})
    p = run(d, "qvm-prefs", "work", "memory", "5")
    assert p.returncode == 1 and p.stderr == "qvm-prefs: error: value 100% wrong\n"
    assert "admin.vm.property.Set+memory dom0 name work" in d.requests


def test_malformed_properties(fake):
    d = fake({"admin.vm.List": LIST,
              "admin.vm.property.GetAll": b"0\0memory garbage\n",
              "admin.vm.property.List": b"0\0memory\n",
              "admin.vm.property.Get": b"0\0no-default-field"})
    for args in (["qvm-ls"], ["qvm-prefs", "work"], ["qvm-prefs", "work", "memory"]):
        p = run(d, *args)
        assert p.returncode == 1 and "Invalid response format" in p.stderr, (args, p)


def test_hostile_list(fake):
    # Odd bytes, missing fields, empty lines, a very long name: printed, never a crash.
    big = b"q" * 100000
    d = fake({"admin.vm.List": b"0\0\n\n" + big + b" class=AppVM\n\xff\xfe state=\nx\n",
              "admin.vm.property.GetAll": b"0\0",
              "admin.vm.CurrentState": b"0\0power_state=Halted"})
    p = subprocess.run([str(TOOLS / "qvm-ls"), "--raw-list"], env=dict(os.environ, BULKHEAD_SOCKET=d.path),
                       capture_output=True, timeout=30)
    assert p.returncode == 0
    assert big in p.stdout.splitlines()


def test_bad_firewall_rules(fake):
    d = fake({"admin.vm.List": LIST,
              "admin.vm.firewall.Get": b"0\0action=accept dstports=80\n"})
    p = run(d, "qvm-firewall", "work", "list")
    assert p.returncode == 1 and p.stderr.startswith("Error: invalid rule from qubesd: ")
    # Nothing is written back when the current rules cannot be read.
    p = run(d, "qvm-firewall", "work", "add", "accept")
    assert p.returncode == 1
    assert not any(r.startswith("admin.vm.firewall.Set") for r in d.requests)


def test_events_stream_garbage(fake):
    # qvm-shutdown --wait must not trust the event stream: junk and an early close are
    # survived by polling the state.
    states = iter([b"0\0power_state=Running"] * 2 + [b"0\0power_state=Halted"] * 100)
    d = fake({"admin.vm.List": b"0\0dom0 class=AdminVM state=Running\nwork class=AppVM state=Running\n",
              "admin.vm.Shutdown": b"0\0",
              "admin.Events": b"1\0\0connection-established\0\0" + b"\x01" * 5000,
              "admin.vm.CurrentState": lambda h: next(states)})
    p = run(d, "qvm-shutdown", "--wait", "--timeout", "10", "work")
    assert p.returncode == 0, p
