"""Window decorations with real ns qubes on an Xvfb host display: a qube's window icon
reaches the desktop tinted in the qube's label colour and no larger than 64x64."""
import time

from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import LABEL_COLOURS, host_display, tint  # noqa: F401
from test_gui import ask_script, gui  # noqa: F401


# Sets a CARDINAL property in the qube's X server (xprop stops at 64 values): raw X11
# ChangeProperty; argv: window, property; the values (comma-separated) on stdin.
SET_PROP32 = r"""
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect("/tmp/.X11-unix/X0")
s.sendall(b"l\0" + struct.pack("<HHHH2x", 11, 0, 0, 0))
def recv(n):
    b = b""
    while len(b) < n: b += s.recv(n - len(b))
    return b
h = recv(8); assert h[0] == 1; recv(struct.unpack("<H", h[6:8])[0] * 4)
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
