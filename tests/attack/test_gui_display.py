"""No qube can reach the host's display: a qube with a running GUI tries the host X
server's every door (its Unix socket path, the abstract socket, TCP) from inside, as
its user and as root. The positive control is the same client reaching the qube's own
X server, and the host reaching the host display."""
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import engine_daemon  # noqa: E402,F401
from gui_fixtures import GuiSession, host_display  # noqa: E402,F401

PROBE = r"""
import socket, sys
n = int(sys.argv[1])
for fam, addr in ((socket.AF_UNIX, "\0/tmp/.X11-unix/X%d" % n), (socket.AF_UNIX, "/tmp/.X11-unix/X%d" % n),
                  (socket.AF_INET, ("127.0.0.1", 6000 + n))):
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect(addr)
        print("REACHED", addr)
    except OSError as e:
        print("refused", type(e).__name__)
"""


@pytest.fixture
def gui(engine_daemon, host_display):
    s = GuiSession(engine_daemon, host_display)
    assert s.qvm_run("a", "true").returncode == 0
    s.start()
    s.wait_gui("a")
    yield s
    s.stop()


@pytest.mark.parametrize("user", ["user", "root"])
def test_qube_cannot_reach_the_host_display(gui, user):
    n = gui.host.number
    # positive control: the host display is up and answers X clients
    assert gui.host.run("xdpyinfo").returncode == 0
    # ... and inside the qube the same client reaches the qube's own X server
    own = gui.qvm_run("-p", "--user", user, "a", "DISPLAY=:0 xdpyinfo >/dev/null && echo own-ok")
    assert own.stdout == b"own-ok\n", own.stderr
    r = gui.qvm_run("-p", "--user", user, "a", f"DISPLAY=:{n} xdpyinfo >/dev/null 2>&1; echo rc=$?")
    assert r.stdout.strip() != b"rc=0", r.stdout
    r = gui.qvm_run("-p", "--user", user, "a", f"python3 -c '{PROBE}' {n}")
    assert r.returncode == 0, r.stderr
    assert r.stdout.count(b"refused") == 3 and b"REACHED" not in r.stdout, r.stdout
    # the control probe from the host reaches the abstract socket (so the probe works)
    import subprocess
    out = subprocess.run([sys.executable, "-c", PROBE, str(n)], capture_output=True, text=True).stdout
    assert "REACHED" in out
