"""Multiple monitors with real ns qubes on an Xvfb host display that has two RandR 1.5
monitors (Xvfb offers them as virtual monitors, `xrandr --setmonitor`): the GUI daemon
sends the desktop's layout to the qube's qubes.SetMonitorLayout as Qubes'
qvm-start-daemon does ("W H X Y W_MM H_MM" per monitor, the physical size rounded to a
common DPI), the qube's X server takes it (screen size and monitors), and changes of the
desktop's layout are followed while the qube runs. A qube with Qubes'
no-monitor-layout feature keeps its own."""
import time

from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import GuiSession, HostDisplay, need_gui_tools

import pytest


@pytest.fixture
def wide_display():
    need_gui_tools()
    h = HostDisplay(2048, 768)
    yield h
    h.close()


def _qube_screen(s, q):
    """(screen size, [monitor lines]) of the qube's own X server."""
    dims = s.qvm_run("-p", q, "xdpyinfo -display :0 | grep dimensions").stdout.decode().split()
    mons = s.qvm_run("-p", q, "xrandr -display :0 --listmonitors").stdout.decode().splitlines()[1:]
    return (dims[1] if len(dims) > 1 else "?"), [" ".join(m.split()[1:3]) for m in mons]


def _wait_screen(s, q, want, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline and _qube_screen(s, q) != want:
        time.sleep(0.3)
    return _qube_screen(s, q)


def test_the_qube_gets_the_desktops_monitors_and_follows_them(engine_daemon, wide_display):
    d, host = engine_daemon, wide_display
    # L: 1024x768 on 271 mm (96 DPI); R: 1024x600 on 120 mm (216 DPI) at the right
    host.set_monitors([(1024, 768, 0, 0, 271, 203), (1024, 600, 1024, 0, 120, 70)])
    d.call("admin.vm.feature.Set+no-monitor-layout", "b", "1")  # b keeps its own
    s = GuiSession(d, host)
    for q in ("a", "b"):
        assert s.qvm_run(q, "true").returncode == 0
    s.start()
    try:
        for q in ("a", "b"):
            s.wait_gui(q)
        # a: the same two monitors, named like Qubes' dummy outputs, on a screen that is
        # their bounding box; physical sizes from Qubes' DPI steps (R: 216 DPI is 200 -> 130 x 76)
        want = ("2048x768", ["*DUMMY0 1024/270x768/203+0+0", "DUMMY1 1024/130x600/76+1024+0"])
        assert _wait_screen(s, "a", want) == want, s.log.read_text()
        # b (no-monitor-layout): its X server keeps the one monitor it started with
        assert _qube_screen(s, "b") == ("2048x768", ["*screen 2048/541x768/203+0+0"]) or \
            len(_qube_screen(s, "b")[1]) == 1, _qube_screen(s, "b")
        assert "DUMMY" not in " ".join(_qube_screen(s, "b")[1])
        # the desktop loses R: a's screen shrinks to L and has one monitor
        host.set_monitors([(1024, 768, 0, 0, 271, 203)])
        want = ("1024x768", ["*DUMMY0 1024/270x768/203+0+0"])
        assert _wait_screen(s, "a", want) == want, s.log.read_text()
        # and R comes back at the left, the screen grows again to what it was
        host.set_monitors([(1024, 600, 0, 0, 271, 159), (1024, 768, 1024, 0, 271, 203)])
        want = ("2048x768", ["*DUMMY0 1024/270x600/158+0+0", "DUMMY1 1024/270x768/203+1024+0"])
        assert _wait_screen(s, "a", want) == want, s.log.read_text()
        # a window the qube's application puts on the part of its screen that is on no
        # desktop monitor (below the shorter left one) lands on a monitor whole
        s.spawn("a", "xterm -T mon-a -geometry 20x3+100+700")
        wid = host.find_window("[a] mon-a")
        x, y, w, h = host.geometry(wid)
        assert y + h <= 600 and x + w <= 1024, (x, y, w, h)
    finally:
        s.stop()


def test_notify_monitor_layout_sends_the_layout_again(engine_daemon, wide_display):
    """Qubes' `qvm-start-daemon --notify-monitor-layout` tells the running watcher (one
    per bulkheadd here, found by its pid file) to send the monitor layout to every
    qube again, changed or not. The qube's own screen is changed from inside; the
    daemon's own polling does not undo that (it sends only changes: the control), the
    notification does. A second watcher is refused; without one, the notification
    fails and says so."""
    from gui_fixtures import gui_bin
    import subprocess
    d, host = engine_daemon, wide_display
    host.set_monitors([(1024, 768, 0, 0, 271, 203), (1024, 600, 1024, 0, 120, 70)])
    s = GuiSession(d, host)
    assert s.qvm_run("a", "true").returncode == 0
    s.start()

    def tool(*args):
        return subprocess.run([gui_bin("qvm-start-daemon"), *args], env=s.env, capture_output=True, text=True,
                              timeout=30)
    try:
        s.wait_gui("a")
        want = ("2048x768", ["*DUMMY0 1024/270x768/203+0+0", "DUMMY1 1024/130x600/76+1024+0"])
        assert _wait_screen(s, "a", want) == want, s.log.read_text()
        second = tool("--all", "--watch")
        assert second.returncode == 1 and "another qvm-start-daemon --watch runs" in second.stderr, second
        # something in the qube drops its second monitor
        assert s.qvm_run("a", "xrandr -display :0 --delmonitor DUMMY1").returncode == 0
        drifted = ("2048x768", ["*DUMMY0 1024/270x768/203+0+0"])
        assert _wait_screen(s, "a", drifted) == drifted
        time.sleep(4)  # two rounds of the daemon's own look at the desktop
        assert _qube_screen(s, "a") == drifted
        r = tool("--notify-monitor-layout")
        assert r.returncode == 0, r
        assert _wait_screen(s, "a", want) == want, s.log.read_text()
    finally:
        s.stop()
    r = tool("--notify-monitor-layout")
    assert r.returncode == 1 and "no qvm-start-daemon --watch runs" in r.stderr, r
