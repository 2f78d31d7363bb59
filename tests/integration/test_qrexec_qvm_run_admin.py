"""qvm-run's Admin API side (autostart, --all, --dispvm) against a stand-in bulkheadd that
speaks the real Admin API framing (docs/admin.md) and "starts" qubes by starting their
real agent and daemon."""
import os
import socket
import subprocess
import threading

import pytest

from qrexec_fixtures import World, bin_path


class FakeAdmin:
    def __init__(self, world, qids):
        self.world, self.qids, self.calls = world, qids, []
        self.path = str(world.tmp / "qubesd.sock")
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(self.path)
        self.srv.listen(8)
        self.running = {}
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            data = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                data += d
            head = data.split(b"\0", 1)[0].decode()
            method, _src, _kw, dest = head.split(" ")
            self.calls.append((method, dest))
            c.sendall(self.answer(method.split("+")[0], dest))
            c.close()

    def answer(self, method, dest):
        if method == "admin.vm.Start":
            if dest in self.running:
                return b"2\0QubesVMNotHaltedError\0\0Domain is running: %s\0" % dest.encode()
            self.running[dest] = self.world.qube(dest, self.qids[dest])
            return b"0\0"
        if method == "admin.vm.List":
            return b"0\0" + b"".join(
                f"{n} class=AppVM state={'Running' if n in self.running else 'Halted'}\n".encode()
                for n in self.qids) + b"dom0 class=AdminVM state=Running\n"
        if method == "admin.vm.CreateDisposable":
            self.qids["disp42"] = 42
            return b"0\0disp42"
        if method == "admin.vm.Kill":
            return b"0\0"
        return b"2\0ProtocolError\0\0no such method\0"

    def close(self):
        self.srv.close()


@pytest.fixture
def env():
    w = World()
    admin = FakeAdmin(w, {"work": 5, "personal": 6, "halted": 7})
    e = w.dom0_env()
    e["BULKHEAD_SOCKET"] = admin.path
    yield w, admin, e
    admin.close()
    w.close()


def qvm_run(e, *args, **kw):
    return subprocess.run([bin_path("qvm-run"), *args], env=e, capture_output=True, timeout=60, **kw)


def test_autostart_then_run(env):
    w, admin, e = env
    r = qvm_run(e, "-p", "work", "echo started")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"started\n"
    assert ("admin.vm.Start+", "work") in admin.calls
    r = qvm_run(e, "-p", "work", "echo again")  # already running: no second start
    assert r.stdout == b"again\n"
    assert admin.calls.count(("admin.vm.Start+", "work")) == 1


def test_all_runs_on_running_qubes_only(env):
    w, admin, e = env
    qvm_run(e, "-p", "work", "true")
    qvm_run(e, "-p", "personal", "true")
    r = qvm_run(e, "-p", "--all", "--exclude", "personal", "echo $((40+2))")
    assert r.returncode == 0, r.stderr
    assert r.stdout == b"42\n"
    assert ("admin.vm.Start+", "halted") not in admin.calls


def test_dispvm_is_created_run_and_killed(env):
    w, admin, e = env
    r = qvm_run(e, "-p", "--dispvm", "echo in-disposable; exit 3")
    assert r.returncode == 3
    assert r.stdout == b"in-disposable\n"
    methods = [m for m, _ in admin.calls]
    assert methods.index("admin.vm.CreateDisposable+") < methods.index("admin.vm.Start+") < methods.index(
        "admin.vm.Kill+")
    assert ("admin.vm.Kill+", "disp42") in admin.calls
