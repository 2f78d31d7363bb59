"""Window decorations with real ns qubes on an Xvfb host display: a qube's window icon
reaches the desktop tinted in the qube's label colour and no larger than 64x64; an
application's fullscreen request covers the screen only in a qube the user allowed
(Qubes' gui-allow-fullscreen / gui-default-allow-fullscreen features)."""
import time

from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import BORDER, LABEL_COLOURS, GuiSession, X11_CLIENT, frame_is, host_display, tint  # noqa: F401
from test_gui import ask_script, gui  # noqa: F401
from waiting import wait_for


# Sets a CARDINAL property in the qube's X server (xprop stops at 64 values): raw X11
# ChangeProperty; argv: window, property; the values (comma-separated) on stdin.
SET_PROP32 = X11_CLIENT + r"""
name = sys.argv[2].encode(); pad = (4 - len(name) % 4) % 4
s.sendall(struct.pack("<BBHH2x", 16, 0, 2 + (len(name) + pad) // 4, len(name)) + name + b"\0" * pad)
atom = struct.unpack("<I", recv(32)[8:12])[0]
v = [int(x) for x in sys.stdin.read().split(",")]
s.sendall(struct.pack("<BBHIIIB3xI", 18, 0, 6 + len(v), int(sys.argv[1]), atom, 6, 32, len(v)) + struct.pack(f"<{len(v)}I", *v))
s.sendall(struct.pack("<BBHH2x", 16, 0, 2, 4) + b"ATOM"); recv(32)  # a round trip
"""


def _set_icon_in_qube(gui, title, icons):
    """Sets _NET_WM_ICON of the qube's window `title` (in the qube)."""
    values = []
    for w, h, px in icons:
        values += [w, h] + px
    gui.qvm_run("a", f"cat > /tmp/setprop.py <<'EOF'\n{SET_PROP32}\nEOF")
    cmd = f"python3 /tmp/setprop.py $(xdotool search --name '^{title}$' | head -1) _NET_WM_ICON"
    r = gui.qvm_run("-p", "a", cmd, input=",".join(map(str, values)).encode())
    assert r.returncode == 0, r.stderr


def _host_icon(gui, wid, want_len, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = gui.host.prop32(wid, "_NET_WM_ICON")
        if len(got) == want_len:
            return got
        time.sleep(0.2)
    return gui.host.prop32(wid, "_NET_WM_ICON")


def test_window_icons_are_tinted_and_limited(gui):
    gui.spawn("a", "xterm -T icon-a -geometry 30x5+20+20")
    wid = gui.host.find_window("[a] icon-a")
    # an application's icon larger than 64x64: the desktop gets it scaled to 64x51
    sw, sh = 100, 80
    src = [0xff000000 | ((x * 2) << 16) | ((y * 3) << 8) | ((x + y) & 0xff) for y in range(sh) for x in range(sw)]
    _set_icon_in_qube(gui, "icon-a", [(sw, sh, src)])
    got = _host_icon(gui, wid, 2 + 64 * 51)
    assert got[:2] == [64, 51], got[:2]
    red = LABEL_COLOURS["red"]
    want = [tint(src[(y * sh // 51) * sw + x * sw // 64], red) for y in range(51) for x in range(64)]
    assert got[2:] == want
    # of the sizes an application offers, the largest that fits is taken as it is
    small = [0xff3465a4] * (16 * 16)
    _set_icon_in_qube(gui, "icon-a", [(16, 16, small), (sw, sh, src)])
    got = _host_icon(gui, wid, 2 + 16 * 16)
    assert got == [16, 16] + [tint(0xff3465a4, red)] * 256
    assert tint(0xff3465a4, red) != 0xff3465a4  # (a blue icon is not blue on a red qube)


# An EWMH application's fullscreen request: the _NET_WM_STATE client message to the root
# window (raw X11 in the qube; argv: window, 1 to enter or 0 to leave).
FULLSCREEN_REQUEST = X11_CLIENT + r"""
def atom(name):
    n = name.encode(); pad = (4 - len(n) % 4) % 4
    s.sendall(struct.pack("<BBHH2x", 16, 0, 2 + (len(n) + pad) // 4, len(n)) + n + b"\0" * pad)
    return struct.unpack("<I", recv(32)[8:12])[0]
state, full = atom("_NET_WM_STATE"), atom("_NET_WM_STATE_FULLSCREEN")
ev = struct.pack("<BBHII5I", 33, 32, 0, int(sys.argv[1]), state, int(sys.argv[2]), full, 0, 1, 0)
s.sendall(struct.pack("<BBHII", 25, 0, 11, root, 0x180000) + ev)
atom("ATOM")
"""


def test_fullscreen_only_where_the_user_allowed_it(engine_daemon, host_display):
    d, host = engine_daemon, host_display
    d.call("admin.vm.feature.Set+gui-default-allow-fullscreen", "dom0", "")  # the default: not allowed
    d.call("admin.vm.feature.Set+gui-allow-fullscreen", "a", "1")            # a: allowed
    s = GuiSession(d, host)
    for q in ("a", "b"):
        assert s.qvm_run(q, "true").returncode == 0
    s.start()
    try:
        wins = {}
        for q, x in (("a", 20), ("b", 400)):
            s.wait_gui(q)
            s.spawn(q, f"xterm -T full-{q} -geometry 30x5+{x}+20")
            wins[q] = host.find_window(f"[{q}] full-{q}")
            s.qvm_run(q, f"cat > /tmp/full.py <<'EOF'\n{FULLSCREEN_REQUEST}\nEOF")
        assert "GUI daemon of a (pid" in s.log.read_text() and "(fullscreen allowed)" in s.log.read_text()
        for q in ("a", "b"):
            r = s.qvm_run("-p", q, f"python3 /tmp/full.py $(xdotool search --name '^full-{q}$' | head -1) 1")
            assert r.returncode == 0, r.stderr
        sw, sh = host.width, host.height

        def qube_geometry(q):
            out = s.qvm_run("-p", q, f"xwininfo -name full-{q}").stdout.decode()
            g = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)}
            bw = int(g.get("Border width", 0))
            return (int(g.get("Absolute upper-left X", -1)), int(g.get("Absolute upper-left Y", -1)),
                    int(g.get("Width", -1)) + 2 * bw, int(g.get("Height", -1)) + 2 * bw)
        want = {"a": (0, 0, sw, sh), "b": (BORDER, BORDER, sw - 2 * BORDER, sh - 2 * BORDER)}
        deadline = time.time() + 60
        while time.time() < deadline and any(qube_geometry(q) != want[q] for q in want):
            time.sleep(0.3)
        for q in want:  # the application in the qube was given the whole screen (a) or less (b)
            assert qube_geometry(q) == want[q], (q, s.log.read_text())

        def qube_state(q):
            return s.qvm_run("-p", q, f"xprop -name full-{q} _NET_WM_STATE").stdout.decode()

        def wait_state(q, full):
            deadline = time.time() + 60
            while time.time() < deadline and ("_NET_WM_STATE_FULLSCREEN" in qube_state(q)) != full:
                time.sleep(0.3)
            return qube_state(q)
        # the daemon's answer (Qubes' fullscreen ack): in both qubes the application's
        # window says fullscreen, granted (a) or as the maximise that stands in for it (b)
        for q in want:
            assert "_NET_WM_STATE_FULLSCREEN" in wait_state(q, True), q
        # leaving: b asks to leave, is put back and told so
        r = s.qvm_run("-p", "b", "python3 /tmp/full.py $(xdotool search --name '^full-b$' | head -1) 0")
        assert r.returncode == 0, r.stderr
        assert "_NET_WM_STATE_FULLSCREEN" not in wait_state("b", False)
        deadline = time.time() + 60
        while time.time() < deadline and host.geometry(wins["b"])[2] == sw:
            time.sleep(0.3)
        assert host.geometry(wins["b"])[2] < sw
        r = s.qvm_run("-p", "b", "python3 /tmp/full.py $(xdotool search --name '^full-b$' | head -1) 1")
        assert "_NET_WM_STATE_FULLSCREEN" in wait_state("b", True)
        deadline = time.time() + 60
        while time.time() < deadline and host.geometry(wins["b"]) != (0, 0, sw, sh):
            time.sleep(0.3)
        assert host.geometry(wins["a"]) == (0, 0, sw, sh) == host.geometry(wins["b"])
        # b's frame shows on every edge (a, behind or in front, unmapped for the look)
        host.run("xdotool", "windowunmap", "--sync", str(wins["a"]))
        wait_for(lambda: frame_is(host.screenshot(), (0, 0, sw, sh), LABEL_COLOURS["blue"])[0], step=0.2)
        ok, bad = frame_is(host.screenshot(), (0, 0, sw, sh), LABEL_COLOURS["blue"])
        assert ok, bad
        # a covers the screen with its own pixels: no red frame at the edges (xterm's own
        # 1-pixel black border is there instead), xterm's white just inside
        host.run("xdotool", "windowmap", "--sync", str(wins["a"]))
        host.run("xdotool", "windowunmap", "--sync", str(wins["b"]))
        wait_for(lambda: host.pixel(host.screenshot(), 1, 1) == 0xffffff, step=0.2)
        shot = host.screenshot()
        for p in ((0, 0), (sw - 1, sh - 1), (sw // 2, 0), (0, sh // 2)):
            assert host.pixel(shot, *p) == 0x000000, p
        assert host.pixel(shot, 1, 1) == 0xffffff == host.pixel(shot, sw - 2, sh - 2)
    finally:
        s.stop()


def test_old_style_icons_of_xterm_and_xeyes_are_tinted_too(gui):
    """xterm and xeyes have no _NET_WM_ICON, only an ICCCM icon pixmap and mask
    (WM_HINTS), which the agent reads as Qubes' icon-sender does."""
    gui.spawn("a", "xterm -T old-icon-a -geometry 30x5+20+20")
    gui.spawn("a", "xeyes -geometry 100x80+400+20")
    for title in ("[a] old-icon-a", "[a] xeyes"):
        wid = gui.host.find_window(title)
        deadline = time.time() + 60
        while time.time() < deadline and not gui.host.prop32(wid, "_NET_WM_ICON"):
            time.sleep(0.2)
        icon = gui.host.prop32(wid, "_NET_WM_ICON")
        assert icon, title
        w, h, px = icon[0], icon[1], icon[2:]
        assert 0 < w <= 64 and 0 < h <= 64 and len(px) == w * h, (title, w, h)
        opaque = [p for p in px if p >> 24]
        assert opaque and len(opaque) < len(px), title  # the mask made some pixels transparent
        # every visible pixel has the red label's hue
        assert all((p >> 16) & 255 >= (p >> 8) & 255 and (p >> 16) & 255 >= p & 255 for p in opaque), title
        assert any((p >> 16) & 255 > (p >> 8) & 255 for p in opaque), title
