"""Tray icons of a real ns qube (Qubes' DOCK): an application in the qube docks an icon
in the qube's system tray, which the gui-agent runs (as Qubes' agent does); the agent
has the GUI daemon dock it in the desktop's system tray, where it shows in Qubes' tint
of the qube's label colour. The desktop's tray here is a small one in the test."""
import time

from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import LABEL_COLOURS, FakeTray, GuiSession, X11_CLIENT, host_display, tint_tray  # noqa: F401

# A tray icon as an XEmbed client does it (raw X11 in the qube): a 20x20 window of one
# colour with _XEMBED_INFO, a SYSTEM_TRAY_REQUEST_DOCK to the tray's selection owner,
# then it stays (argv: colour as 0xRRGGBB).
TRAY_ICON = X11_CLIENT + r"""
def atom(name):
    n = name.encode(); pad = (4 - len(n) % 4) % 4
    s.sendall(struct.pack("<BBHH2x", 16, 0, 2 + (len(n) + pad) // 4, len(n)) + n + b"\0" * pad)
    return struct.unpack("<I", reply()[8:12])[0]
win = base | 1
s.sendall(struct.pack("<BBHIIhhHHHHII", 1, 0, 9, win, root, 0, 0, 20, 20, 0, 1, 0, 0x2) +
          struct.pack("<I", int(sys.argv[1], 16)))
info, sel, op = atom("_XEMBED_INFO"), atom("_NET_SYSTEM_TRAY_S0"), atom("_NET_SYSTEM_TRAY_OPCODE")
s.sendall(struct.pack("<BBHIIIB3xI", 18, 0, 8, win, info, info, 32, 2) + struct.pack("<II", 0, 1))
for _ in range(600):  # the tray comes up with the agent
    s.sendall(struct.pack("<BBHI", 23, 0, 2, sel))
    owner = struct.unpack("<I", reply()[8:12])[0]
    if owner:
        break
    time.sleep(0.1)
assert owner, "no tray in the qube"
ev = struct.pack("<BBHII5I", 33, 32, 0, owner, op, 0, 0, win, 0, 0)
s.sendall(struct.pack("<BBHII", 25, 0, 11, owner, 0) + ev)
atom("ATOM")
print("docked", hex(win), flush=True)
time.sleep(3600)
"""


def test_a_qubes_tray_icon_shows_in_the_desktops_tray_tinted(engine_daemon, host_display):
    d, host = engine_daemon, host_display
    tray = FakeTray(host)
    s = GuiSession(d, host)
    assert s.qvm_run("a", "true").returncode == 0
    s.start()
    try:
        s.wait_gui("a")
        s.qvm_run("a", f"cat > /tmp/icon.py <<'EOF'\n{TRAY_ICON}\nEOF")
        r = s.qvm_run("a", "python3 /tmp/icon.py 0x4080c0 >/tmp/icon.log 2>&1 </dev/null &")
        assert r.returncode == 0, r.stderr
        got = tray.dock_requests(timeout=20)
        assert len(got) == 1, (s.log.read_text(), s.qvm_run("-p", "a", "cat /tmp/icon.log").stdout)
        deadline = time.time() + 60
        while time.time() < deadline and "IsViewable" not in host.run("xwininfo", "-id", str(got[0])).stdout:
            time.sleep(0.2)
        assert "IsViewable" in host.run("xwininfo", "-id", str(got[0])).stdout, s.log.read_text()
        want = tint_tray(0x4080c0, LABEL_COLOURS["red"])
        deadline = time.time() + 60
        while time.time() < deadline and host.pixel(host.screenshot(), 500 + 5 + 10, 300 + 5 + 10) != want:
            time.sleep(0.3)
        shot = host.screenshot()
        assert host.pixel(shot, 500 + 5 + 10, 300 + 5 + 10) == want, hex(host.pixel(shot, 515, 315))
        assert want != 0x4080c0
        # the icon is no window of its own on the desktop: only the docked one is there
        assert "docked in the desktop's tray" in s.log.read_text()
    finally:
        s.stop()
        tray.close()
