"""Another qube must not pose as a qube's GUI agent to its GUI daemon.

bulkhead-guid connects to vchan.<qid>.0.6000.sock in the qube's host-side vchan dir. That
dir lets more than the qube create names (the ns engine's is a 1777 tmpfs, the VM
engine's host side 1770 with the group every qube's call processes have), so a
taken-over call process of another qube that binds the name first would be drawn with
this qube's label and get its clipboard. guid now takes no listener of a UID outside the
qube's range (SO_PEERCRED; from the store's qid as bulkheadd assigns it, or
--agent-uid). Controls: without a known range the same impostor IS the agent, and a
listener of the qube's own UID is served."""
import pathlib
import socket
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import qid_slots  # noqa: E402
from gui_fixtures import gui_bin, host_display  # noqa: E402,F401
from test_qrexec_privsep import CALL_GID, CALL_ID_BASE  # noqa: E402

UID_FIRST, UID_RANGE = 1 << 20, 1 << 16  # host_ids.h
# the victim's and the impostor's qids: this test process's own on the host (qid_slots.py)
QID = qid_slots.take()
C_QID = qid_slots.take()

# Listens (as its own UID: the kernel records the listener's credentials at listen())
# on the socket the test bound, and reports each connection and the bytes it brought
# (guid's handshake is 20).
LISTENER = r"""
import socket, sys
s = socket.socket(fileno=int(sys.argv[1]))
s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept()
    c.settimeout(5)
    got = 0
    try:
        while got < 20:
            b = c.recv(20 - got)
            if not b:
                break
            got += len(b)
    except OSError:
        pass
    print(f"conn {got}", flush=True)
    if got:
        sys.stdin.read()  # keep it until the test ends
"""


def attempt(tmp_path, display, listener_uid, listener_gid, agent_uid):
    vdir = tmp_path / "vchan"
    vdir.mkdir()
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(str(vdir / f"vchan.{QID}.0.6000.sock"))
    lst = subprocess.Popen([sys.executable, "-c", LISTENER, str(ls.fileno())], pass_fds=(ls.fileno(),),
                           user=listener_uid, group=listener_gid, extra_groups=[], stdin=subprocess.PIPE,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    ls.close()
    assert lst.stdout.readline().strip() == "listening"
    log = tmp_path / "guid.log"
    extra = ["--agent-uid", str(agent_uid)] if agent_uid is not None else []
    g = subprocess.Popen([gui_bin("bulkhead-guid"), "--qube", "victim", "--qid", str(QID), "--color", "0xcc0000",
                          "--vchan-dir", str(vdir), "--clipboard-dir", str(tmp_path / "clip"),
                          "--policy-dir", str(tmp_path / "policy.d"), "--connect-timeout", "3000", *extra],
                         env=display.env(), stdout=open(log, "ab"), stderr=subprocess.STDOUT)
    try:
        first = lst.stdout.readline().strip()  # guid reached the listener: the attempt ran
        if first == "conn 0":
            rc = g.wait(30)
        else:
            rc = None
        return first, rc, log.read_text()
    finally:
        for p in (g, lst):
            if p.poll() is None:
                p.kill()
            p.wait()


def test_another_qubes_call_identity_is_not_taken_for_the_gui_agent(tmp_path, host_display):
    first, rc, log = attempt(tmp_path, host_display, CALL_ID_BASE + C_QID, CALL_GID, UID_FIRST + QID * UID_RANGE)
    assert first == "conn 0" and rc == 1, (first, rc, log)  # reached, not one byte, guid gave up
    assert f"bound by UID {CALL_ID_BASE + C_QID}, not the qube's {UID_FIRST + QID * UID_RANGE} range" in log, log


def test_control_without_a_known_range_the_impostor_is_the_agent(tmp_path, host_display):
    first, _, log = attempt(tmp_path, host_display, CALL_ID_BASE + C_QID, CALL_GID, None)
    assert first == "conn 20", (first, log)


def test_control_the_qubes_own_uid_is_served(tmp_path, host_display):
    uid = UID_FIRST + QID * UID_RANGE + 1000  # the qube's user, as an ns gui-agent runs
    first, _, log = attempt(tmp_path, host_display, uid, uid, UID_FIRST + QID * UID_RANGE)
    assert first == "conn 20", (first, log)
