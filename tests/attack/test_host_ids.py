"""Bulkhead's host IDs are nobody else's. A host user whom /etc/subuid (or /etc/subgid)
gives a range that meets them ([2^19, end of the qubes' ranges)) could map such an ID in a
user namespace of their own (newuidmap) and be a qube's root, a qrexec process, or in the
group that reaches bulkheadd's socket. bulkheadd refuses to start on such a host, naming
the user and the range. Each case runs the real daemon in a private mount namespace of the
test's where /etc/subuid or /etc/subgid is a file of the test's."""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import Daemon, bind_over_in_private_mounts, kill_all  # noqa: E402


@pytest.mark.parametrize("which", ["/etc/subuid", "/etc/subgid"])
@pytest.mark.parametrize("line,refused", [
    # useradd's 7th regular user: 100000 + 6 * 65536 .. +65535 meets 2^19 = 524288
    ("alice:493216:65536", True),
    # a range inside the qubes' (qube 3's UIDs)
    ("bob:1245184:10", True),
    # a range that ends just below Bulkhead's: the control, the daemon starts
    ("carol:100000:65536\n# comment\nmalformed line\ndave:458752:65536", False),
])
def test_a_host_whose_users_share_bulkheads_ids_is_refused(tmp_path, which, line, refused):
    if not os.path.exists(which):
        # the bind needs a mount point; a host without the file has no ranges at all
        pytest.skip(f"{which} does not exist on this host (nothing to overlap)")
    fake = tmp_path / "subid"
    fake.write_text(line + "\n")
    d = Daemon(tmp_path / "d", defaults=False)
    d.preexec = bind_over_in_private_mounts(which, fake)
    try:
        if refused:
            with pytest.raises(RuntimeError) as e:
                d.start()
            msg = str(e.value)
            assert "refusing to start" in msg and which in msg, msg
            user = line.split(":")[0]
            assert f"gives {user} the host IDs" in msg, msg
        else:
            d.start()  # the control: a range below Bulkhead's is no reason to refuse
            assert d.call("admin.vm.List", "dom0").startswith("dom0 ")
    finally:
        if not refused:
            kill_all(d)
        d.stop()
        d.cleanup()


CALL_ID_BASE = (1 << 19) + 0x10000  # qrexec_ids.h
CALL_GID = (1 << 19) + 0x20000

CHILD = r"""
import os, socket, sys
d = os.open(sys.argv[1], os.O_PATH | os.O_DIRECTORY)
os.setgroups([])
os.setresgid(int(sys.argv[3]), int(sys.argv[3]), int(sys.argv[3]))
os.setresuid(int(sys.argv[2]), int(sys.argv[2]), int(sys.argv[2]))
s = socket.socket(socket.AF_UNIX)
s.connect(f"/proc/self/fd/{d}/{sys.argv[4]}")
out = b""
try:
    s.sendall(b"admin.vm.List+ dom0 name dom0\0")
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10)
    while True:
        b = s.recv(65536)
        if not b:
            break
        out += b
except (BrokenPipeError, ConnectionResetError):
    pass  # closed by bulkheadd before it read the request
print(repr(out[:2]))
"""


def test_the_socket_group_alone_does_not_let_a_process_in(tmp_path):
    """bulkheadd's socket is root:dom0-qrexec 0660; a process that holds the group but is
    neither root nor a qube's call identity (as a host user with an overlapping subgid
    range would be) gets no answer. Control: a call identity in the same group does."""
    import subprocess
    d = Daemon(tmp_path / "d", defaults=False).start()
    try:
        def ask(uid):
            r = subprocess.run([sys.executable, "-c", CHILD, os.path.dirname(str(d.sock)), str(uid), str(CALL_GID),
                                os.path.basename(str(d.sock))], capture_output=True, text=True, timeout=30)
            assert r.returncode == 0, r.stderr
            return r.stdout.strip()
        # the control: a call identity is heard (and answered: refused, as qube 7 does not
        # exist and dom0 is no source of its to name; test_qrexec_call_source.py)
        assert ask(CALL_ID_BASE + 7) == repr(b"2\0")
        assert ask(4242) == repr(b"")                  # the group alone: closed unanswered
        assert ask(CALL_ID_BASE - 1) == repr(b"")      # a reader's range, not a call's
    finally:
        kill_all(d)
        d.stop()
        d.cleanup()
