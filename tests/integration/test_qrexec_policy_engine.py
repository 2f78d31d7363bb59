"""The daemon deciding through the real policy engine (bhpolicy) with the system as a
stand-in bulkheadd reports it. Skipped when the tree has no policy engine yet."""
import os
import socket
import struct
import threading
import time

import pytest

from qrexec_fixtures import BIN, as_dom0_socket, bin_path, world  # noqa: F401

if not (BIN / "policy" / "qrexec-policy-test").exists():
    pytest.skip("policy engine (bhpolicy) not in this tree", allow_module_level=True)


class Admin:
    def __init__(self, path, qubes, runtime=None, qids=None):
        self.qubes = qubes
        self.runtime, self.qids = runtime, qids or {}
        self.srv = socket.socket(socket.AF_UNIX)
        self.srv.bind(path)
        as_dom0_socket(path)  # as bulkheadd's: the call processes reach it by group
        self.srv.listen(16)
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            data = b""
            while (d := c.recv(65536)):
                data += d
            method = data.split(b"\0")[0].split(b" ")[0].decode().split("+")[0]
            if method == "admin.vm.List":
                body = "".join(f"{n} class={k} state=Running\n" for n, k in self.qubes.items())
                c.sendall(b"0\0" + body.encode())
            elif method == "admin.vm.property.Get":
                c.sendall(b"0\0default=True type=vm ")
            elif method == "admin.vm.tag.List":
                c.sendall(b"0\0")
            elif method == "internal.qrexec.ConnectTarget" and self.runtime:
                self.connect_target(c, data)
            else:
                c.sendall(b"2\0ProtocolError\0\0no\0")
            c.close()


    def connect_target(self, c, data):
        """As bulkheadd (which also checks the call against the policy, and takes the
        source from the peer's UID): connects to the target's daemon (root's socket),
        sends the client's HELLO and the call's QUBESRPC line, passes the socket back."""
        head, payload = data.split(b"\0", 1)
        _, src, _, dest = head.decode().split(" ")
        svc, req = payload.decode().split(" ")
        line = (f"DEFAULT:QUBESRPC {svc} {src} {'keyword' if req[0] == '@' else 'name'} {req.lstrip('@')}"
                .encode() + b"\0")
        t = socket.socket(socket.AF_UNIX)
        t.connect(str(self.runtime / "qubes" / dest / "qrexec.sock"))
        t.sendall(struct.pack("<III", 0x300, 4, 3) + struct.pack("<IIII", 0x200, 8 + len(line), self.qids[src], 0)
                  + line)
        socket.send_fds(c, [b"0\0"], [t.fileno()])
        t.close()


def start_daemon(world, q, policy_dir, admin_path):
    r, wfd = os.pipe()
    world.spawn([bin_path("qrexec-daemon"), "--name", q.name, "--domid", str(q.qid), "--runtime",
                 str(world.runtime), "--ready-fd", str(wfd), "--policy-dir", str(policy_dir)],
                pass_fds=(wfd,), log=f"daemon-{q.name}", env=dict(os.environ, BULKHEAD_SOCKET=admin_path))
    os.close(wfd)
    assert os.read(r, 1) == b"1"
    os.close(r)


def test_policy_engine_decides(world):
    admin_path = str(world.tmp / "qubesd.sock")
    Admin(admin_path, {"dom0": "AdminVM", "work": "AppVM", "personal": "AppVM"}, world.runtime,
          {"work": world.qid(5), "personal": world.qid(6)})
    pol = world.tmp / "policy.d"
    pol.mkdir()
    (pol / "30-test.policy").write_text("test.Echo  *  work  personal  allow\n"
                                        "*  *  @anyvm  @anyvm  deny\n")
    world.service("test.Echo", "#!/bin/sh\necho \"hi $QREXEC_REMOTE_DOMAIN\"\n")
    world.service("test.Other", "#!/bin/sh\ntouch \"$HOME/ran\"\n")
    work = world.qube("work", 5, daemon=False)
    personal = world.qube("personal", 6, daemon=False)
    start_daemon(world, work, pol, admin_path)
    start_daemon(world, personal, pol, admin_path)
    r = work.run(["qrexec-client-vm", "personal", "test.Echo+x"])
    assert r.returncode == 0, (r.stderr, world.log_text("daemon-work"))
    assert r.stdout == b"hi work\n"
    r = work.run(["qrexec-client-vm", "personal", "test.Other"])
    assert r.returncode == 126
    assert not (personal.home / "ran").exists()
    assert "30-test.policy:2" in world.log_text("daemon-work")


def test_policy_change_decides_the_next_call(world):
    """The daemon keeps the loaded policy.d between calls while nothing in it changed;
    a rule edited in place from allow to deny (same size, mtime set back as `cp -p`
    does), after a call served from the kept load, decides the very next call. (The
    stand-in bulkheadd here checks nothing: the daemon's decision alone is tested.)"""
    admin_path = str(world.tmp / "qubesd.sock")
    # (the world's qids are its own on this host: qid_slots.py)
    Admin(admin_path, {"dom0": "AdminVM", "work": "AppVM", "personal": "AppVM"}, world.runtime,
          {"work": world.qid(141), "personal": world.qid(142)})
    pol = world.tmp / "policy.d"
    pol.mkdir()
    f = pol / "30-test.policy"
    allow = "test.Echo  *  work  personal  allow\n"
    f.write_text(allow)
    world.service("test.Echo", "#!/bin/sh\necho \"hi $QREXEC_REMOTE_DOMAIN\"\n")
    work = world.qube("work", 141, daemon=False)
    personal = world.qube("personal", 142, daemon=False)
    start_daemon(world, work, pol, admin_path)
    start_daemon(world, personal, pol, admin_path)
    deadline = time.time() + 60  # kept only once its files are 3 s old
    while time.time() < deadline and time.time() < max(os.stat(p).st_ctime for p in (pol, f)) + 3.2:
        time.sleep(0.2)
    for _ in range(2):
        r = work.run(["qrexec-client-vm", "personal", "test.Echo"])
        assert r.returncode == 0 and r.stdout == b"hi work\n", (r.stderr, world.log_text("daemon-work"))
    st = os.stat(f)
    with open(f, "r+") as fh:
        fh.write("test.Echo  *  work  personal  deny".ljust(len(allow) - 1) + "\n")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    r = work.run(["qrexec-client-vm", "personal", "test.Echo"])
    assert r.returncode == 126 and r.stdout == b"", (r.stdout, world.log_text("daemon-work"))
