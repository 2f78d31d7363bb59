"""GUI test helpers: a private Xvfb as the host display, screenshots, window lookup, and
the GUI daemons of real ns qubes started with qvm-start-daemon."""
import os
import shutil
import struct
import subprocess
import time

import pytest

from qrexec_fixtures import BUILD, bin_path


def gui_bin(name):
    """bulkhead-guid and qvm-start-daemon are built in src/gui."""
    return str(BUILD / "src" / "gui" / name)

# Qubes' label colours (qubes-core-admin, also bulkheadd's built-in labels)
LABEL_COLOURS = {"red": 0xcc0000, "orange": 0xf57900, "yellow": 0xedd400, "green": 0x73d216,
                 "gray": 0x555753, "blue": 0x3465a4, "purple": 0x75507b, "black": 0x000000}
BORDER = 2  # BH_GUID_BORDER

# The start of a raw X11 client that a test runs in a qube (python3, no Xlib there): it
# connects to the qube's display and leaves s (the socket), recv(n), setup, base (the
# resource ID base), root (the root window) and reply() (the next reply; an X error ends
# the script). A test's script is X11_CLIENT + its own requests.
X11_CLIENT = r"""
import socket, struct, sys, time
s = socket.socket(socket.AF_UNIX); s.connect("/tmp/.X11-unix/X0")
s.sendall(b"l\0" + struct.pack("<HHHH2x", 11, 0, 0, 0))
def recv(n):
    b = b""
    while len(b) < n: b += s.recv(n - len(b))
    return b
h = recv(8); assert h[0] == 1; setup = recv(struct.unpack("<H", h[6:8])[0] * 4)
base = struct.unpack("<I", setup[4:8])[0]
vlen, nfmt = struct.unpack("<H", setup[16:18])[0], setup[21]
root = struct.unpack("<I", setup[32 + (vlen + 3) // 4 * 4 + 8 * nfmt:][:4])[0]
def reply():
    while True:
        r = recv(32)
        if r[0] == 1:
            return r + recv(struct.unpack("<I", r[4:8])[0] * 4)
        if r[0] == 0:
            raise SystemExit("X error %d" % r[1])
"""

NEEDED = ["Xvfb", "xterm", "xeyes", "xdotool", "xwd", "convert", "xprop", "xclip"]


def need_gui_tools():
    missing = [p for p in NEEDED if not shutil.which(p)]
    if missing:
        pytest.skip(f"missing GUI test tools: {' '.join(missing)} (scripts/deps.d/gui.txt)")
    if not os.path.exists(gui_bin("bulkhead-guid")):
        pytest.skip("bulkhead-guid not built (xcb development files missing)")


class HostDisplay:
    """An Xvfb standing in for the desktop: the display the GUI daemons draw on."""

    def __init__(self, width=1024, height=768):
        # a number of its own, well above :0 (which is what every qube's own X server
        # uses, so a test could not tell the two apart) and unique among parallel tests
        import random
        for _ in range(20):
            n = random.randint(100, 999)
            if os.path.exists(f"/tmp/.X{n}-lock") or os.path.exists(f"/tmp/.X11-unix/X{n}"):
                continue
            r, w = os.pipe()
            self.proc = subprocess.Popen(["Xvfb", f":{n}", "-displayfd", str(w), "-screen", "0",
                                          f"{width}x{height}x24", "-nolisten", "tcp", "-noreset"], pass_fds=(w,),
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            os.close(w)
            num = b""
            deadline = time.time() + 60
            while not num.endswith(b"\n") and time.time() < deadline:
                chunk = os.read(r, 16)
                if not chunk:
                    break
                num += chunk
            os.close(r)
            if num.strip():
                break
            self.proc.wait()
        else:
            pytest.skip("Xvfb did not start")
        self.number = int(num)
        self.display = f":{self.number}"
        self.width, self.height = width, height

    def env(self, base=None):
        e = dict(base if base is not None else os.environ)
        e["DISPLAY"] = self.display
        e.pop("XAUTHORITY", None)
        return e

    def run(self, *args, check=True):
        return subprocess.run(list(args), env=self.env(), capture_output=True, text=True, timeout=30, check=check)

    def screenshot(self):
        """The whole screen as (width, height, rgb bytes)."""
        xwd = subprocess.run(["xwd", "-root", "-silent"], env=self.env(), capture_output=True, timeout=30,
                             check=True).stdout
        rgb = subprocess.run(["convert", "xwd:-", "-depth", "8", "rgb:-"], input=xwd, capture_output=True,
                             timeout=30, check=True).stdout
        assert len(rgb) == self.width * self.height * 3
        return self.width, self.height, rgb

    def save_png(self, path):
        xwd = subprocess.run(["xwd", "-root", "-silent"], env=self.env(), capture_output=True, check=True).stdout
        subprocess.run(["convert", "xwd:-", str(path)], input=xwd, check=True)

    @staticmethod
    def pixel(shot, x, y):
        w, _, data = shot
        o = (y * w + x) * 3
        return (data[o] << 16) | (data[o + 1] << 8) | data[o + 2]

    def find_window(self, title, timeout=30):
        """The host window whose name is exactly `title`."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            r = self.run("xdotool", "search", "--name", f"^{title.replace('[', '.').replace(']', '.')}$",
                         check=False)
            for wid in r.stdout.split():
                if self.run("xprop", "-id", wid, "WM_NAME", check=False).stdout.strip().endswith(f'"{title}"'):
                    return int(wid)
            time.sleep(0.2)
        raise AssertionError(f"no window {title!r}: {self.run('xwininfo', '-root', '-tree', check=False).stdout}")

    def geometry(self, wid):
        r = self.run("xdotool", "getwindowgeometry", "--shell", str(wid))
        g = dict(line.split("=", 1) for line in r.stdout.split())
        return int(g["X"]), int(g["Y"]), int(g["WIDTH"]), int(g["HEIGHT"])

    def prop(self, wid, name):
        return self.run("xprop", "-id", str(wid), name).stdout.strip()

    def _xconn(self):
        """A raw X11 connection (no tool at hand sends client messages or prints
        _NET_WM_ICON as numbers): (socket, recv(n), atom(name))."""
        import socket
        import struct
        s = socket.socket(socket.AF_UNIX)
        s.connect(f"/tmp/.X11-unix/X{self.number}")
        s.sendall(b"l\0" + struct.pack("<HHHH2x", 11, 0, 0, 0))

        def recv(n):
            b = b""
            while len(b) < n:
                chunk = s.recv(n - len(b))
                assert chunk, "X connection closed"
                b += chunk
            return b
        hdr = recv(8)
        assert hdr[0] == 1, "X connection refused"
        recv(struct.unpack("<H", hdr[6:8])[0] * 4)

        def atom(name):
            n = name.encode()
            pad = (4 - len(n) % 4) % 4
            s.sendall(struct.pack("<BBHH2x", 16, 0, 2 + (len(n) + pad) // 4, len(n)) + n + b"\0" * pad)
            return struct.unpack("<I", recv(32)[8:12])[0]
        return s, recv, atom

    def send_delete(self, wid):
        """What a window manager's close button does: a WM_DELETE_WINDOW client message."""
        import struct
        s, recv, atom = self._xconn()
        protocols, delete = atom("WM_PROTOCOLS"), atom("WM_DELETE_WINDOW")
        ev = struct.pack("<BBHII5I", 33, 32, 0, wid, protocols, delete, 0, 0, 0, 0)
        s.sendall(struct.pack("<BBHII", 25, 0, 11, wid, 0) + ev)
        atom("WM_NAME")  # a round trip: the event went out before we close
        s.close()

    def press_keycode(self, keycode):
        """Presses and lets go of a key by its keycode with XTEST (xdotool picks keys by
        keysym and puts the XKB group back after typing, so it cannot switch groups)."""
        import struct
        s, recv, atom = self._xconn()
        name = b"XTEST"
        s.sendall(struct.pack("<BBHH2x", 98, 0, 2 + (len(name) + 3) // 4, len(name)) + name + b"\0" * 3)
        rep = recv(32)
        assert rep[0] == 1 and rep[8], "no XTEST"
        op = rep[9]

        def down():
            s.sendall(struct.pack("<BBH", 44, 0, 1))  # QueryKeymap
            while True:  # events before the reply are skipped
                r = recv(32)
                if r[0] == 1:
                    keys = r[8:] + recv(8)
                    return keys[keycode // 8] >> (keycode % 8) & 1
        for t, want in ((2, 1), (3, 0)):  # KeyPress, KeyRelease
            s.sendall(struct.pack("<BBHBB2xII8xhh7xB", op, 2, 9, t, keycode, 0, 0, 0, 0, 0))
            # until the server has taken it, as a person's key is held for a moment: on
            # the first key an XTEST client presses, Xvfb (21.1) first switches the core
            # keyboard to its XTEST device and may take the press only after a release
            # sent at once (a round trip is not enough), which leaves the key down: the
            # next press of it is then no press (no group switch) and only lets it go.
            deadline = time.time() + 60
            while down() != want:
                assert time.time() < deadline, f"the display did not take key {keycode} {'down' if want else 'up'}"
                time.sleep(0.01)
        s.close()

    def xkb_state(self):
        """The core keyboard's XKB state (XkbGetState) and the keys it has down
        (QueryKeymap): {group, locked, base, latched, mods, down}."""
        import struct
        s, recv, atom = self._xconn()
        name = b"XKEYBOARD"
        s.sendall(struct.pack("<BBHH2x", 98, 0, 2 + (len(name) + 3) // 4, len(name)) + name + b"\0" * 3)
        rep = recv(32)
        assert rep[0] == 1 and rep[8], "no XKB"
        op = rep[9]
        s.sendall(struct.pack("<BBHHH", op, 0, 2, 1, 0))  # XkbUseExtension 1.0
        assert recv(32)[0] == 1
        s.sendall(struct.pack("<BBHH2x", op, 4, 2, 0x100))  # XkbGetState(UseCoreKbd)
        rep = recv(32)
        assert rep[0] == 1, rep[:2]
        s.sendall(struct.pack("<BBH", 44, 0, 1))  # QueryKeymap
        km = recv(40)[8:]
        s.close()
        down = [i for i in range(256) if km[i // 8] >> (i % 8) & 1]
        base, latched = struct.unpack("<hh", rep[14:18])
        return {"group": rep[12], "locked": rep[13], "base": base, "latched": latched, "mods": rep[8], "down": down}

    def prop32(self, wid, name):
        """A 32-bit property of a window as a list of numbers ([] when unset)."""
        import struct
        s, recv, atom = self._xconn()
        s.sendall(struct.pack("<BBHIIIII", 20, 0, 6, wid, atom(name), 0, 0, 1 << 20))
        rep = recv(32)
        assert rep[0] == 1, f"GetProperty failed: {rep[:2]!r}"
        extra, = struct.unpack("<I", rep[4:8])
        fmt, nitems = rep[1], struct.unpack("<I", rep[16:20])[0]
        data = recv(extra * 4)
        s.close()
        if fmt != 32:
            return []
        return list(struct.unpack(f"<{nitems}I", data[:nitems * 4]))

    def set_monitors(self, monitors):
        """The desktop's monitors, as RandR 1.5 monitors ([(w, h, x, y, w_mm, h_mm)]):
        Xvfb has one output, so the first monitor takes it (replacing the automatic
        one) and the others are virtual (`xrandr --setmonitor`, kept by -noreset)."""
        if not shutil.which("xrandr"):
            pytest.skip("xrandr missing (x11-xserver-utils, scripts/deps.d/gui.txt)")
        listed = self.run("xrandr", "--listmonitors").stdout
        for line in listed.splitlines()[1:]:
            name = line.split()[1].lstrip("+*")
            if name.startswith("M") and name[1:].isdigit():
                self.run("xrandr", "--delmonitor", name)
        for i, (w, h, x, y, wmm, hmm) in enumerate(monitors):
            self.run("xrandr", "--setmonitor", f"M{i}", f"{w}/{wmm}x{h}/{hmm}+{x}+{y}", "screen" if i == 0 else "none")
        got = self.run("xrandr", "--listactivemonitors").stdout
        assert got.startswith(f"Monitors: {len(monitors)}"), got

    def watch_properties(self, wid, names):
        """Counts PropertyNotify events of a window, per property name, as a window
        manager or taskbar listening to it would receive them."""
        return PropertyWatch(self, wid, names)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class PropertyWatch:
    def __init__(self, host, wid, names):
        import struct
        self.s, recv, atom = host._xconn()
        self.atoms = {atom(n): n for n in names}
        self.counts = {n: 0 for n in names}
        # ChangeWindowAttributes(wid, event-mask = PropertyChange)
        self.s.sendall(struct.pack("<BBHIII", 2, 0, 4, wid, 1 << 11, 1 << 22))
        self.s.setblocking(False)
        self.buf = b""

    def poll(self):
        """Reads what arrived; returns the counts so far."""
        import struct
        while True:
            try:
                chunk = self.s.recv(65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self.buf += chunk
        while len(self.buf) >= 32:
            ev, self.buf = self.buf[:32], self.buf[32:]
            if ev[0] & 0x7f == 28:  # PropertyNotify
                a = struct.unpack("<I", ev[8:12])[0]
                if a in self.atoms:
                    self.counts[self.atoms[a]] += 1
        return dict(self.counts)

    def close(self):
        self.s.close()


class FakeTray:
    """A tiny system tray on a display (what a desktop's panel does): owns
    _NET_SYSTEM_TRAY_S0, announces itself with MANAGER, embeds what asks to be docked
    (XEmbed: reparent into its window, EMBEDDED_NOTIFY) and records the requests."""

    def __init__(self, host, x=500, y=300, w=100, h=40):
        import socket
        self.s = socket.socket(socket.AF_UNIX)
        self.s.connect(f"/tmp/.X11-unix/X{host.number}")
        self.s.sendall(b"l\0" + struct.pack("<HHHH2x", 11, 0, 0, 0))
        head = self._recv(8)
        assert head[0] == 1
        setup = self._recv(struct.unpack("<H", head[6:8])[0] * 4)
        base = struct.unpack("<I", setup[4:8])[0]
        vlen, nfmt = struct.unpack("<H", setup[16:18])[0], setup[21]
        self.root = struct.unpack("<I", setup[32 + (vlen + 3) // 4 * 4 + 8 * nfmt:][:4])[0]
        self.win = base | 1
        self.events = []
        sel, self.opcode, self.xembed, manager = (self.atom(n) for n in (
            "_NET_SYSTEM_TRAY_S0", "_NET_SYSTEM_TRAY_OPCODE", "_XEMBED", "MANAGER"))
        # CreateWindow (background white), MapWindow, SetSelectionOwner, MANAGER to root
        self.s.sendall(struct.pack("<BBHIIhhHHHHIII", 1, 0, 10, self.win, self.root, x, y, w, h, 0, 1, 0,
                                   0x2 | 0x800, 0xffffff) + struct.pack("<I", 1 << 17))
        self.s.sendall(struct.pack("<BBHI", 8, 0, 2, self.win))
        self.s.sendall(struct.pack("<BBHIII", 22, 0, 4, self.win, sel, 0))
        ev = struct.pack("<BBHII5I", 33, 32, 0, self.root, manager, 0, sel, self.win, 0, 0)
        self.s.sendall(struct.pack("<BBHII", 25, 0, 11, self.root, 1 << 17) + ev)
        self.atom("ATOM")

    def _recv(self, n):
        b = b""
        while len(b) < n:
            chunk = self.s.recv(n - len(b))
            assert chunk, "X connection closed"
            b += chunk
        return b

    def atom(self, name):
        n = name.encode()
        pad = (4 - len(n) % 4) % 4
        self.s.sendall(struct.pack("<BBHH2x", 16, 0, 2 + (len(n) + pad) // 4, len(n)) + n + b"\0" * pad)
        while True:  # events may come before the reply
            r = self._recv(32)
            if r[0] == 1:
                return struct.unpack("<I", r[8:12])[0]
            self.events.append(r)

    def dock_requests(self, timeout=10):
        """Windows that asked to be docked; each is embedded at once."""
        import select
        deadline = time.time() + timeout
        got = []
        while time.time() < deadline and not got:
            for ev in self.events:
                t, data = ev[0] & 0x7f, struct.unpack("<5I", ev[12:32])
                if t == 33 and struct.unpack("<I", ev[8:12])[0] == self.opcode and data[1] == 0:
                    got.append(data[2])
            self.events = []
            if not got and select.select([self.s], [], [], 0.2)[0]:
                self.events.append(self._recv(32))
        for icon in got:
            # ChangeSaveSet(Insert), as embedders do (GtkSocket, trays built on it): if
            # the tray goes, the X server puts the icon back on the root window, mapped
            self.s.sendall(struct.pack("<BBHI", 6, 0, 2, icon))
            # ReparentWindow into the tray at 5,5, then XEMBED_EMBEDDED_NOTIFY
            self.s.sendall(struct.pack("<BBHIIhh", 7, 0, 4, icon, self.win, 5, 5))
            ev = struct.pack("<BBHII5I", 33, 32, 0, icon, self.xembed, 0, 0, 0, self.win, 0)
            self.s.sendall(struct.pack("<BBHII", 25, 0, 11, icon, 0) + ev)
        self.atom("ATOM")
        return got

    def send_xembed(self, icon, message):
        """An XEmbed message from the tray to an icon (XEMBED_FOCUS_IN is 4)."""
        ev = struct.pack("<BBHII5I", 33, 32, 0, icon, self.xembed, 0, message, 0, 0, 0)
        self.s.sendall(struct.pack("<BBHII", 25, 0, 11, icon, 0) + ev)
        self.atom("ATOM")

    def resize_icon(self, icon, w, h):
        self.s.sendall(struct.pack("<BBHIH2xII", 12, 0, 5, icon, 0x4 | 0x8, w, h))
        self.atom("ATOM")

    def close(self):
        self.s.close()


def tint_tray(rgb, label):
    """Qubes' tray tint (trayicon_mode "tint"), from its definition: HLS lightness
    kept, hue and saturation the label's (Python's colorsys is that HLS)."""
    import colorsys
    th, _, ts = colorsys.rgb_to_hls(*(((label >> s) & 255) / 255 for s in (16, 8, 0)))
    _, l, _ = colorsys.rgb_to_hls(*(((rgb >> s) & 255) / 255 for s in (16, 8, 0)))
    r, g, b = (int(v * 255) for v in colorsys.hls_to_rgb(th, l, ts))
    return r << 16 | g << 8 | b


def tint(argb, label):
    """Qubes' icon tint (qubesimgconverter Image.tint), written again from its
    definition to check the daemon's."""
    tr, tg, tb = (label >> 16) & 255, (label >> 8) & 255, label & 255
    tM, tm = max(tr, tg, tb), min(tr, tg, tb)
    trn, tgn, tbn, tdn = (1, 1, 1, 2) if tM == tm else (tr - tm, tg - tm, tb - tm, tM - tm)
    r, g, b = (argb >> 16) & 255, (argb >> 8) & 255, argb & 255
    M, m = max(r, g, b), min(r, g, b)
    c = M - m
    c2, c2d = 255 + 3 * c, 4
    m2, m2d = (255 * c2d - c2) * m, max((255 - c) * c2d, 1)
    out = [((m2 * tdn * c2d) + tn * c2 * m2d) // (m2d * tdn * c2d) for tn in (trn, tgn, tbn)]
    return (argb & 0xff000000) | (out[0] << 16) | (out[1] << 8) | out[2]


def frame_is(shot, geom, colour):
    """Every sampled pixel of the frame's 2-pixel border has the colour."""
    x, y, w, h = geom
    pts = []
    for i in range(BORDER):
        pts += [(x + w // 2, y + i), (x + w // 2, y + h - 1 - i), (x + i, y + h // 2), (x + w - 1 - i, y + h // 2),
                (x + i, y + i), (x + w - 1 - i, y + h - 1 - i)]
    bad = [(p, hex(HostDisplay.pixel(shot, *p))) for p in pts if HostDisplay.pixel(shot, *p) != colour]
    return not bad, bad


class GuiSession:
    """qvm-start-daemon --all --watch against a bulkheadd, drawing on a HostDisplay."""

    def __init__(self, d, host):
        self.d, self.host = d, host
        self.log = d.tmp / "qvm-start-daemon.log"
        self.env = host.env(dict(d.env, BULKHEAD_RUNTIME=str(d.runtime), BULKHEAD_ROOT=str(d.root)))
        self.clip_dir = d.runtime / "gui"
        self.proc = None

    def start(self):
        logf = open(self.log, "ab")
        self.proc = subprocess.Popen([gui_bin("qvm-start-daemon"), "--all", "--watch"], env=self.env,
                                     stdout=logf, stderr=logf, stdin=subprocess.DEVNULL)
        return self

    def qvm_run(self, *args, input=None, timeout=60):
        return subprocess.run([bin_path("qvm-run"), *args], env=self.env, capture_output=True, input=input,
                              timeout=timeout)

    def wait_gui(self, qube, timeout=40):
        """Until the qube's gui-agent has its X server up (the daemon started it)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.qvm_run("-p", qube, "test -S /tmp/.X11-unix/X0").returncode == 0:
                return
            time.sleep(0.3)
        raise AssertionError(f"{qube}: no GUI after {timeout}s; log: {self.log.read_text()}")

    def spawn(self, qube, cmd):
        """Starts a GUI program in the qube and returns at once."""
        r = self.qvm_run(qube, f"{cmd} >/dev/null 2>&1 </dev/null &")
        assert r.returncode == 0, r.stderr

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def host_display():
    need_gui_tools()
    h = HostDisplay()
    yield h
    h.close()
