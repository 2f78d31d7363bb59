"""A compromised qube controls its own gui-agent. These tests replace the agent with a
hostile one speaking raw GUI protocol to the real bulkhead-guid, drawing on a private
Xvfb, and check that the host side holds: sizes and positions are refused or clamped,
window counts are capped, floods do not starve the daemon, buffers must be sealed
memfds large enough for their image, titles cannot fake another qube or hide the
prefix, and framing errors end only that qube's connection, without a crash."""
import os
import pathlib
import socket
import struct
import subprocess
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from gui_fixtures import BORDER, FakeTray, HostDisplay, frame_is, gui_bin, host_display, tint, tint_tray  # noqa: E402,F401
from waiting import wait_for  # noqa: E402


def shows(pred, timeout=30):
    """What the screen shows, polled: the X server draws when it gets to it (was: a
    fixed 0.3-0.5 s, then one screenshot)."""
    return wait_for(pred, timeout=timeout, step=0.1)

CREATE, DESTROY, MAP, UNMAP, CONFIGURE, SHMIMAGE = 130, 131, 132, 133, 134, 136
CLIPBOARD_DATA, WMNAME, WINDOW_DUMP, KEYPRESS = 140, 141, 147, 124
WINDOW_ICON = 0x10002
WINDOW_FLAGS, FULLSCREEN = 145, 1
RED = 0xcc0000
F_ADD_SEALS, F_SEAL_SHRINK, F_SEAL_GROW = 1033, 0x2, 0x4


def hdr(t, win, n):
    return struct.pack("=III", t, win, n)


class FakeAgent:
    """Listens on the qube's vchan socket like a gui-agent; bulkhead-guid connects."""

    def __init__(self, tmp, host, name="evil", qid=7, extra=()):
        self.dir = pathlib.Path(tmp) / f"vchan-{name}"
        self.dir.mkdir()
        path = self.dir / f"vchan.{qid}.0.6000.sock"
        ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        ls.bind(str(path))
        ls.listen(1)
        ls.settimeout(20)
        self.log = pathlib.Path(tmp) / f"guid-{name}.log"
        self.host, self.name = host, name
        self.proc = subprocess.Popen(
            [gui_bin("bulkhead-guid"), "--qube", name, "--qid", str(qid), "--color", "0xcc0000", "--label", "red",
             "--label-index", "1", "--vchan-dir", str(self.dir), "--clipboard-dir", str(pathlib.Path(tmp) / "clip"),
             "--policy-dir", str(pathlib.Path(tmp) / "policy.d"), *extra],
            env=host.env(), stdout=open(self.log, "ab"), stderr=subprocess.STDOUT)
        self.sock, _ = ls.accept()
        ls.close()
        self.sock.sendall(struct.pack("=I", 0x10004))
        got = b""
        while len(got) < 20:
            got += self.sock.recv(20 - len(got))
        self.version, self.w, self.h, self.depth, self.mem = struct.unpack("=5I", got)

    def send(self, t, win, body=b"", fds=()):
        data = hdr(t, win, len(body)) + body
        if fds:
            socket.send_fds(self.sock, [data], list(fds))
        else:
            self.sock.sendall(data)

    def create(self, win, x, y, w, h, override_redirect=0):
        self.send(CREATE, win, struct.pack("=6I", x & 0xffffffff, y & 0xffffffff, w & 0xffffffff,
                                           h & 0xffffffff, 0, override_redirect))

    def map(self, win):
        self.send(MAP, win, struct.pack("=II", 0, 0))

    def title(self, win, raw):
        self.send(WMNAME, win, raw[:127].ljust(128, b"\0"))

    def buffer(self, win, w, h, colour, seal=True, size=None):
        fd = os.memfd_create("fake-agent", os.MFD_ALLOW_SEALING)
        os.ftruncate(fd, size if size is not None else w * h * 4)
        px = struct.pack("=I", colour)
        os.pwrite(fd, px * (w * h) if size is None else px * (size // 4), 0)
        if seal:
            import fcntl
            fcntl.fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW)
        self.send(WINDOW_DUMP, win, struct.pack("=4I", 1, w, h, 32), fds=[fd])
        return fd

    def window(self, win, title, x=100, y=100, w=120, h=80, colour=0x00ff00):
        self.create(win, x, y, w, h)
        self.title(win, title.encode())
        self.map(win)
        fd = self.buffer(win, w, h, colour)
        self.send(SHMIMAGE, win, struct.pack("=4I", 0, 0, w, h))
        return fd

    def messages(self, timeout=2.0):
        """What the daemon sent since the last call: [(type, window, body)]."""
        import select
        buf = getattr(self, "_rbuf", b"")
        deadline = time.time() + timeout
        while time.time() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.time()))
            if not r:
                break
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            buf += chunk
        out = []
        while len(buf) >= 12:
            t, win, n = struct.unpack("=III", buf[:12])
            if len(buf) < 12 + n:
                break
            out.append((t, win, buf[12:12 + n]))
            buf = buf[12 + n:]
        self._rbuf = buf
        return out

    def log_text(self):
        return self.log.read_text(errors="replace")

    def wait_log(self, text, timeout=10):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if text in self.log_text():
                return
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not in log: {self.log_text()[-3000:]}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def agent(tmp_path, host_display):
    a = FakeAgent(tmp_path, host_display)
    yield a
    a.close()


def alive(agent, win, marker):
    """The daemon still serves this qube: a fresh title arrives."""
    agent.title(win, marker.encode())
    return agent.host.find_window(f"[{agent.name}] {marker}", timeout=10)


def test_a_normal_window_is_drawn_from_the_sealed_buffer(agent):
    """Positive control for the cases below: the fake agent's window shows, framed."""
    agent.window(1, "normal", colour=0x00ff00)
    wid = agent.host.find_window("[evil] normal")
    geom = agent.host.geometry(wid)
    x, y, w, h = geom
    assert shows(lambda: (lambda shot: frame_is(shot, geom, RED)[0] and
                          agent.host.pixel(shot, x + w // 2, y + h // 2) == 0x00ff00)(agent.host.screenshot()))
    # the qube redraws: new pixels in the same buffer, one SHMIMAGE
    os.pwrite(agent.buffer(1, 120, 80, 0x0000ff), b"", 0)
    agent.send(SHMIMAGE, 1, struct.pack("=4I", 0, 0, 120, 80))
    assert shows(lambda: agent.host.pixel(agent.host.screenshot(), x + w // 2, y + h // 2) == 0x0000ff)


def test_huge_negative_and_offscreen_geometry(agent):
    agent.create(2, 10, 10, 0xffffffff, 100)          # "negative" width
    agent.wait_log("CREATE 0x2: window size 4294967295x100 out of range")
    agent.create(3, 10, 10, 20000, 20000)             # beyond Qubes' maximum
    agent.wait_log("CREATE 0x3: window size 20000x20000 out of range")
    agent.create(4, 0x80000000, 5, 10, 10)            # coordinate out of range
    agent.wait_log("CREATE 0x4: x -2147483648 out of range")
    # accepted but clamped: larger than the screen, placed off it
    agent.create(5, -5000, 30000, 16000, 6000)
    agent.title(5, b"big")
    agent.map(5)
    wid = agent.host.find_window("[evil] big")
    x, y, w, h = agent.host.geometry(wid)
    assert (x, y) == (0, 0) and (w, h) == (agent.host.width, agent.host.height)
    # a qube cannot push its window off the screen later either
    agent.send(CONFIGURE, 5, struct.pack("=5I", 900, 700, 300, 300, 0))
    deadline = time.time() + 60
    while time.time() < deadline and agent.host.geometry(wid)[2] != 300 + 2 * BORDER:
        time.sleep(0.1)
    x, y, w, h = agent.host.geometry(wid)
    assert w == 300 + 2 * BORDER and x + w <= agent.host.width and y + h <= agent.host.height
    assert agent.proc.poll() is None


def test_too_many_windows(agent):
    for i in range(1, 601):
        agent.create(i, 10, 10, 20, 20)
    agent.wait_log("more than 512 windows: CREATE 0x201 refused")
    agent.send(DESTROY, 1)
    agent.create(1000, 10, 10, 20, 20)
    agent.map(1000)
    alive(agent, 1000, "still-serving")
    n = agent.host.run("xwininfo", "-root", "-children").stdout.count('"[evil]')
    assert n == 512


def test_damage_flood_does_not_starve_the_daemon(agent):
    agent.window(1, "flooded")
    agent.host.find_window("[evil] flooded")
    flood = (hdr(SHMIMAGE, 1, 16) + struct.pack("=4I", 0, 0, 120, 80)) * 20000
    t0 = time.time()
    for _ in range(10):  # 200000 damage messages
        agent.sock.sendall(flood)
    alive(agent, 1, "after-flood")
    assert time.time() - t0 < 30
    # and damage for unknown windows is refused without flooding the log
    agent.sock.sendall((hdr(SHMIMAGE, 999, 16) + struct.pack("=4I", 0, 0, 1, 1)) * 5000)
    alive(agent, 1, "after-unknown")
    assert agent.log_text().count("for unknown window") <= 60


def test_buffers_must_be_sealed_memfds_of_the_right_size(agent, tmp_path):
    agent.create(1, 50, 50, 100, 100)
    agent.map(1)
    fd = agent.buffer(1, 100, 100, 0xffffff, seal=False)
    agent.wait_log("not sealed against shrinking")
    os.ftruncate(fd, 0)  # this is what an unsealed buffer would allow mid-draw
    agent.buffer(1, 100, 100, 0xffffff, size=100 * 4)  # sealed but too small
    agent.wait_log("window buffer of 400 bytes for 100x100")
    f = tmp_path / "plain"
    f.write_bytes(b"\0" * 40000)
    pfd = os.open(f, os.O_RDONLY)
    agent.send(WINDOW_DUMP, 1, struct.pack("=4I", 1, 100, 100, 32), fds=[pfd])
    agent.wait_log("WINDOW_DUMP 0x1: window buffer is not sealed")
    # a sealed buffer cannot be shrunk afterwards: the daemon's mapping stays valid
    good = agent.buffer(1, 100, 100, 0x123456)
    with pytest.raises(PermissionError):
        os.ftruncate(good, 0)
    agent.send(SHMIMAGE, 1, struct.pack("=4I", 0, 0, 100, 100))
    alive(agent, 1, "sealed-ok")
    assert agent.proc.poll() is None


def test_titles_cannot_fake_another_qube(agent):
    agent.window(1, "x")
    agent.host.find_window("[evil] x")
    agent.title(1, b"\x1b]0;[vault] passwords\x07\xe2\x80\xae\r\ndom0")
    wid = agent.host.find_window("[evil] _]0;[vault] passwords____dom0")
    assert agent.host.prop(wid, "_QUBES_VMNAME").endswith('"evil"')
    name = agent.host.prop(wid, "_NET_WM_NAME")
    assert name.split(" = ", 1)[1].startswith('"[evil] ')
    assert frame_is(agent.host.screenshot(), agent.host.geometry(wid), RED)[0]


def test_unrequested_and_oversized_clipboard(agent, tmp_path):
    agent.window(1, "clip")
    agent.host.find_window("[evil] clip")
    agent.send(CLIPBOARD_DATA, 0, b"unasked")
    agent.wait_log("clipboard data nobody asked for")
    assert not (tmp_path / "clip" / "clipboard.bin").exists()
    # more than Qubes' 65000 bytes: a framing error ends this qube's connection
    agent.sock.sendall(hdr(CLIPBOARD_DATA, 0, 70000) + b"A" * 1000)
    assert agent.proc.wait(10) == 1  # an exit, not a crash
    assert "CLIPBOARD_DATA of 70000 bytes (limit 65000)" in agent.log_text()
    assert "[evil] clip" not in agent.host.run("xwininfo", "-root", "-tree").stdout


def test_framing_errors_end_only_that_qube(tmp_path, host_display):
    good = FakeAgent(tmp_path, host_display, name="good", qid=8)
    bad = FakeAgent(tmp_path, host_display, name="bad", qid=9)
    try:
        good.window(1, "unaffected")
        bad.window(1, "doomed")
        host_display.find_window("[bad] doomed")
        bad.send(KEYPRESS, 1, b"\0" * 20)  # input is the daemon's to send, never the agent's
        assert bad.proc.wait(10) == 1
        assert "not allowed from an agent" in bad.log_text()
        # an fd riding on a message that is not a WINDOW_DUMP
        assert good.proc.poll() is None
        alive(good, 1, "still-here")
        bad2 = FakeAgent(tmp_path, host_display, name="bad2", qid=10)
        bad2.window(1, "doomed2")
        host_display.find_window("[bad2] doomed2")
        fd = os.memfd_create("x")
        bad2.send(UNMAP, 1, b"", fds=[fd])
        assert bad2.proc.wait(10) == 1
        assert "file descriptor without a WINDOW_DUMP" in bad2.log_text()
        bad2.close()
        alive(good, 1, "still-here-2")
    finally:
        good.close()
        bad.close()


def test_override_redirect_and_transient_windows_are_framed_too(agent):
    """Menus and tooltips (override-redirect) get the frame as well, and a transient
    window may only name a window of its own qube."""
    agent.window(1, "main")
    main = agent.host.find_window("[evil] main")
    agent.create(2, 200, 200, 80, 60, override_redirect=1)
    agent.title(2, b"menu")
    agent.send(MAP, 2, struct.pack("=II", 1, 1))  # transient for window 1
    agent.buffer(2, 80, 60, 0xffffff)
    agent.send(SHMIMAGE, 2, struct.pack("=4I", 0, 0, 80, 60))
    menu = agent.host.find_window("[evil] menu")
    attrs = agent.host.run("xwininfo", "-id", str(menu)).stdout
    assert "Override Redirect State: yes" in attrs
    assert shows(lambda: frame_is(agent.host.screenshot(), agent.host.geometry(menu), RED)[0])
    assert agent.host.prop(menu, "WM_TRANSIENT_FOR").endswith(hex(main)), attrs
    # naming a window that is not the qube's own (here: the host's root) is ignored
    root = int(agent.host.run("xwininfo", "-root").stdout.split("Window id: ")[1].split()[0], 16)
    agent.create(3, 300, 300, 50, 50)
    agent.title(3, b"dialog")
    agent.send(MAP, 3, struct.pack("=II", root, 0))
    dialog = agent.host.find_window("[evil] dialog")
    assert "not found" in agent.host.prop(dialog, "WM_TRANSIENT_FOR") or \
        "no such atom" in agent.host.prop(dialog, "WM_TRANSIENT_FOR")


def test_a_qube_cannot_raise_its_windows_or_take_the_focus(tmp_path, host_display):
    evil = FakeAgent(tmp_path, host_display, name="evil", qid=11)
    good = FakeAgent(tmp_path, host_display, name="good", qid=12)
    try:
        evil.window(1, "under", x=100, y=100, w=200, h=200, colour=0x0000ff)
        host_display.find_window("[evil] under")
        good.window(1, "over", x=150, y=150, w=200, h=200, colour=0x00ff00)
        over = host_display.find_window("[good] over")
        host_display.run("xdotool", "windowfocus", "--sync", str(over))
        time.sleep(0.5)
        overlap = (200, 200)
        assert host_display.pixel(host_display.screenshot(), *overlap) == 0x00ff00  # control
        for _ in range(20):  # everything a qube could try to get on top or into focus
            evil.map(1)
            evil.send(UNMAP, 1)
            evil.map(1)
            evil.send(CONFIGURE, 1, struct.pack("=5I", 150, 150, 200, 200, 0))
            evil.send(145, 1, struct.pack("=II", 3, 0))  # WINDOW_FLAGS fullscreen + attention
            evil.send(SHMIMAGE, 1, struct.pack("=4I", 0, 0, 200, 200))
        alive(evil, 1, "tried")
        time.sleep(0.5)
        assert host_display.pixel(host_display.screenshot(), *overlap) == 0x00ff00
        focus = int(host_display.run("xdotool", "getwindowfocus").stdout)
        assert focus == over
        # what it may do: ask for attention (the window manager decides); not fullscreen
        under = host_display.find_window("[evil] tried")
        assert "_NET_WM_STATE_DEMANDS_ATTENTION" in host_display.prop(under, "_NET_WM_STATE")
        assert "asked for fullscreen: maximised inside its frame instead" in evil.log_text()
        assert "_NET_WM_STATE_FULLSCREEN" not in host_display.prop(under, "_NET_WM_STATE")
    finally:
        evil.close()
        good.close()


def test_cursors_are_cursor_font_glyphs_only(agent):
    agent.window(1, "cursor")
    agent.host.find_window("[evil] cursor")
    """As Qubes' daemon: CURSOR_DEFAULT or CURSOR_X11 + n, n < 154, map to the daemon's
    own cursor-font cursors (an odd n, a glyph's mask, is the default cursor); anything
    else is refused, and a flood of them costs the host nothing new."""
    agent.send(148, 1, struct.pack("=I", 0x100 + 152))  # XC_xterm: accepted
    agent.send(148, 1, struct.pack("=I", 0x101))        # a mask: the default cursor
    for bad in (0xffffffff, 0x19a, 0xff, 0x100 | 0x10000, 0x80000100):
        agent.send(148, 1, struct.pack("=I", bad))
    agent.wait_log("CURSOR 0x80000100 is not a cursor-font glyph")
    for bad in ("0xffffffff", "0x19a", "0xff", "0x10100"):
        assert f"CURSOR {bad} is not a cursor-font glyph" in agent.log_text()
    assert "0x198" not in agent.log_text() and "0x101 is not" not in agent.log_text()
    # 20000 cursor changes over every valid id: served, no X resources pile up (the
    # daemon's cursors are made once per glyph), the daemon stays with us
    flood = b"".join(hdr(148, 1, 4) + struct.pack("=I", 0x100 + i % 154) for i in range(20000))
    agent.sock.sendall(flood)
    alive(agent, 1, "cursor-ok")
    assert agent.proc.poll() is None


def test_an_agent_that_says_nothing(tmp_path, host_display):
    """An agent that accepts the connection and never answers: the daemon gives up after
    its handshake timeout (10 s) with a log line, and exits without a crash."""
    vdir = tmp_path / "vchan-mute"
    vdir.mkdir()
    ls = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    ls.bind(str(vdir / "vchan.13.0.6000.sock"))
    ls.listen(1)
    log = tmp_path / "guid-mute.log"
    p = subprocess.Popen([gui_bin("bulkhead-guid"), "--qube", "mute", "--qid", "13", "--color", "0xcc0000",
                          "--vchan-dir", str(vdir)], env=host_display.env(), stdout=open(log, "ab"),
                         stderr=subprocess.STDOUT)
    try:
        ls.settimeout(20)
        conn, _ = ls.accept()
        assert p.wait(20) == 1
        assert "agent sent no version within 10 s" in log.read_text()
        conn.close()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        ls.close()


def test_icons_are_limited_checked_and_tinted(agent):
    """A qube's icon is tinted with its label colour by the daemon (it cannot show
    another qube's, or dom0's, icon as it is), at most 64x64, and exactly as many pixels
    as it says; anything else is refused and that qube's other windows go on."""
    agent.window(1, "icon")
    wid = agent.host.find_window("[evil] icon")
    # positive control: a valid 2x2 icon arrives, tinted red
    px = [0xff00ff00, 0x800000ff, 0xffffffff, 0x00000000]
    agent.send(WINDOW_ICON, 1, struct.pack("=2I4I", 2, 2, *px))
    deadline = time.time() + 60
    while time.time() < deadline and not agent.host.prop32(wid, "_NET_WM_ICON"):
        time.sleep(0.1)
    got = agent.host.prop32(wid, "_NET_WM_ICON")
    assert got == [2, 2] + [tint(p, RED) for p in px]
    assert got[2] != px[0] and (got[2] >> 16) & 0xff > (got[2] >> 8) & 0xff  # green became red
    # more pixels or fewer than the size says, and sizes out of 1..64: refused
    agent.send(WINDOW_ICON, 1, struct.pack("=2I", 3, 3) + b"\0" * 16)
    agent.wait_log("icon of 3x3 with 16 bytes of pixels")
    agent.send(WINDOW_ICON, 1, struct.pack("=2I", 0, 4) + b"\0" * 16)
    agent.wait_log("icon of 0x4")
    agent.send(WINDOW_ICON, 1, struct.pack("=2I", 4096, 1) + b"\0" * 16384)
    agent.wait_log("icon of 4096x1")
    agent.send(WINDOW_ICON, 99, struct.pack("=2I1I", 1, 1, 0))
    agent.wait_log("WINDOW_ICON for unknown window 0x63")
    assert agent.host.prop32(wid, "_NET_WM_ICON") == got  # unchanged
    alive(agent, 1, "icon-still")
    # a length past the largest icon is a framing error: the connection ends, no crash
    agent.sock.sendall(hdr(WINDOW_ICON, 1, 8 + 65 * 65 * 4) + b"\0" * 1000)
    assert agent.proc.wait(10) == 1
    assert "WINDOW_ICON with length 16908" in agent.log_text()


def _fullscreen(agent, on):
    agent.send(WINDOW_FLAGS, 1, struct.pack("=II", FULLSCREEN if on else 0, 0 if on else FULLSCREEN))


def _configures(agent, win):
    return [struct.unpack("=5I", b)[:4] for t, w, b in agent.messages() if t == CONFIGURE and w == win]


def test_fullscreen_keeps_the_frame_unless_allowed(tmp_path, host_display):
    """A qube asking for fullscreen to hide its frame gets, as in Qubes, a maximised
    window whose frame still shows; only a qube the user allowed fullscreen (Qubes'
    gui-allow-fullscreen) covers the screen, which is the positive control that the
    request was made and honoured where allowed."""
    sw, sh = host_display.width, host_display.height
    evil = FakeAgent(tmp_path, host_display)
    ok = FakeAgent(tmp_path, host_display, name="trusted", qid=8, extra=["--allow-fullscreen"])
    try:
        for a in (evil, ok):
            a.window(1, "full", x=100, y=100, w=120, h=80, colour=0x00ff00)
        we, wo = host_display.find_window("[evil] full"), host_display.find_window("[trusted] full")
        for a in (evil, ok):
            a.messages(0.5)
            _fullscreen(a, True)
        # the refused one: maximised inside its frame, told so
        assert (BORDER, BORDER, sw - 2 * BORDER, sh - 2 * BORDER) in _configures(evil, 1)
        evil.wait_log("asked for fullscreen: maximised inside its frame instead")
        assert host_display.geometry(we) == (0, 0, sw, sh)
        assert "_NET_WM_STATE_FULLSCREEN" not in host_display.prop(we, "_NET_WM_STATE")
        # the allowed one covers the screen, frame and all
        assert (0, 0, sw, sh) in _configures(ok, 1)
        assert host_display.geometry(wo) == (0, 0, sw, sh)
        assert "_NET_WM_STATE_FULLSCREEN" in host_display.prop(wo, "_NET_WM_STATE")
        # stacking: look at each alone
        host_display.run("xdotool", "windowunmap", "--sync", str(wo))
        shows(lambda: frame_is(host_display.screenshot(), (0, 0, sw, sh), RED)[0])
        ok_frame, bad = frame_is(host_display.screenshot(), (0, 0, sw, sh), RED)
        assert ok_frame, bad  # the refused qube's frame shows on every edge
        host_display.run("xdotool", "windowmap", "--sync", str(wo))
        host_display.run("xdotool", "windowunmap", "--sync", str(we))
        assert shows(lambda: host_display.pixel(host_display.screenshot(), 0, 0) == 0x00ff00)  # the qube's, no frame
        # leaving fullscreen brings the window back where it was, framed
        _fullscreen(ok, False)
        assert (100, 100, 120, 80) in _configures(ok, 1)
        assert host_display.geometry(wo) == (100 - BORDER, 100 - BORDER, 120 + 2 * BORDER, 80 + 2 * BORDER)
        alive(evil, 1, "full-still")
    finally:
        evil.close()
        ok.close()


def test_fullscreen_is_acknowledged_to_the_agent(tmp_path, host_display):
    """As Qubes' daemon (which acks the window manager's fullscreen, or the maximise it
    gave instead, with WINDOW_FLAGS to the agent): the agent is told the window is
    fullscreen when the daemon shows it so, and told again when it ends, whether the
    qube placed the window itself or asked to leave."""
    ok = FakeAgent(tmp_path, host_display, name="trusted", qid=8, extra=["--allow-fullscreen"])
    evil = FakeAgent(tmp_path, host_display)
    try:
        for a in (ok, evil):
            a.window(1, "ack", x=100, y=100, w=120, h=80)
            host_display.find_window(f"[{a.name}] ack")
            a.messages(0.5)

        def flags(a):
            return [struct.unpack("=II", b) for t, w, b in a.messages() if t == WINDOW_FLAGS and w == 1]
        for a in (ok, evil):
            _fullscreen(a, True)
            assert flags(a) == [(FULLSCREEN, 0)], a.name  # granted, or the maximise instead
            _fullscreen(a, True)                           # again: nothing new to say
            assert flags(a) == []
        _fullscreen(ok, False)
        assert flags(ok) == [(0, FULLSCREEN)]
        # the qube placing its window itself ends the (fake) fullscreen too
        evil.send(CONFIGURE, 1, struct.pack("=5I", 50, 50, 100, 100, 0))
        assert flags(evil) == [(0, FULLSCREEN)]
        alive(evil, 1, "ack-still")
    finally:
        ok.close()
        evil.close()


def test_a_window_managers_fullscreen_reaches_the_agent(tmp_path, host_display):
    """As Qubes' daemon: when the window manager (the user, F11 on the desktop) makes a
    qube's window fullscreen or ends it, the frame's _NET_WM_STATE changes and the agent
    is told with WINDOW_FLAGS, so the application knows. The test plays the WM. When
    the WM ends a fullscreen the qube had (allowed: no frame), the frame shows again.
    Controls: another state (ABOVE) says nothing; the qube's own request is acked once."""
    ok = FakeAgent(tmp_path, host_display, name="trusted", qid=8, extra=["--allow-fullscreen"])
    evil = FakeAgent(tmp_path, host_display)
    try:
        wids = {}
        for a in (ok, evil):
            a.window(1, "wmfs", x=100, y=100, w=120, h=80, colour=0x00ff00)
            wids[a.name] = host_display.find_window(f"[{a.name}] wmfs")
            a.messages(0.5)

        def flags(a):
            return [struct.unpack("=II", b) for t, w, b in a.messages() if t == WINDOW_FLAGS and w == 1]

        def wm_state(a, *states):
            """What a WM does: _NET_WM_STATE replaced with these atoms, or deleted
            (raw X11: xprop would intern "A,B" as one atom)."""
            s, recv, atom = host_display._xconn()
            wid, prop = wids[a.name], atom("_NET_WM_STATE")
            if states:
                ids = [atom(n) for n in states]
                s.sendall(struct.pack("<BBHIIIB3xI", 18, 0, 6 + len(ids), wid, prop, 4, 32, len(ids)) +
                          struct.pack(f"<{len(ids)}I", *ids))
            else:
                s.sendall(struct.pack("<BBHII", 19, 0, 3, wid, prop))
            atom("ATOM")  # a round trip: done before we close
            s.close()
        wm_state(evil, "_NET_WM_STATE_ABOVE")           # control: not fullscreen
        assert flags(evil) == []
        wm_state(evil, "_NET_WM_STATE_ABOVE", "_NET_WM_STATE_FULLSCREEN")
        assert flags(evil) == [(FULLSCREEN, 0)]
        evil.wait_log("window 0x1: the desktop made it fullscreen")
        wm_state(evil, "_NET_WM_STATE_ABOVE")
        assert flags(evil) == [(0, FULLSCREEN)]
        # the qube's own (refused: maximised) fullscreen, then the user un-maximises
        _fullscreen(evil, True)
        assert flags(evil) == [(FULLSCREEN, 0)]
        wm_state(evil)
        assert flags(evil) == [(0, FULLSCREEN)]
        # the allowed fullscreen (no frame showing) ended by the WM: the frame is back
        _fullscreen(ok, True)
        assert flags(ok) == [(FULLSCREEN, 0)]
        sw, sh = host_display.width, host_display.height
        assert host_display.geometry(wids["trusted"]) == (0, 0, sw, sh)
        wm_state(ok)
        msgs = ok.messages()
        assert [struct.unpack("=II", b) for t, w, b in msgs if t == WINDOW_FLAGS and w == 1] == [(0, FULLSCREEN)]
        assert (BORDER, BORDER, sw - 2 * BORDER, sh - 2 * BORDER) in \
            [struct.unpack("=5I", b)[:4] for t, w, b in msgs if t == CONFIGURE and w == 1]
        host_display.run("xdotool", "windowunmap", "--sync", str(wids["trusted"]))
        host_display.run("xdotool", "windowmap", "--sync", str(wids["trusted"]))
        host_display.run("xdotool", "windowunmap", "--sync", str(wids["evil"]))
        shows(lambda: frame_is(host_display.screenshot(), (0, 0, sw, sh), RED)[0])
        framed, bad = frame_is(host_display.screenshot(), (0, 0, sw, sh), RED)
        assert framed, bad
        alive(evil, 1, "wmfs-still")
    finally:
        ok.close()
        evil.close()


def test_title_and_icon_floods_are_bounded_per_window(agent):
    """A qube changing a window's title and icon thousands of times a second: the host
    display sees at most 8 titles and 4 icons per window per second (the newest one
    waits for the next second, so the window ends up right), and the daemon keeps
    serving the qube's other windows at once. Positive control: changes at a human
    pace all arrive, one property change each."""
    agent.window(1, "flood")
    wid = agent.host.find_window("[evil] flood")
    agent.window(2, "other", x=400, y=100)
    agent.host.find_window("[evil] other")
    watch = agent.host.watch_properties(wid, ["_NET_WM_NAME", "_NET_WM_ICON"])
    time.sleep(1.1)  # a fresh second for the control
    for i in range(3):
        agent.title(1, f"slow-{i}".encode())
        agent.send(WINDOW_ICON, 1, struct.pack("=2II", 1, 1, 0xff000000 | i))
    agent.host.find_window("[evil] slow-2")
    seen = {}
    deadline = time.time() + 30  # the icons' notifications may come later than the title
    while time.time() < deadline and seen != {"_NET_WM_NAME": 3, "_NET_WM_ICON": 3}:
        time.sleep(0.1)
        seen = watch.poll()
    assert seen == {"_NET_WM_NAME": 3, "_NET_WM_ICON": 3}  # every one shown
    time.sleep(1.1)
    base = watch.poll()
    n_titles, n_icons = 5000, 1000
    msgs = []
    for i in range(n_titles):
        t = f"flood-{i}".encode()
        msgs.append(hdr(WMNAME, 1, 128) + t.ljust(128, b"\0"))
        if i % 5 == 0:
            msgs.append(hdr(WINDOW_ICON, 1, 8 + 64 * 64 * 4) + struct.pack("=2I", 64, 64) +
                        struct.pack("=I", 0xff000000 | i) * (64 * 64))
    t0 = time.time()
    agent.sock.sendall(b"".join(msgs))
    # the daemon serves the other window while the flood is being coalesced
    alive(agent, 2, "still-serving")
    responsive = time.time() - t0
    # the newest title wins, a second later at most
    agent.host.find_window(f"[evil] flood-{n_titles - 1}", timeout=10)
    elapsed = time.time() - t0
    time.sleep(1.2)
    got = watch.poll()
    watch.close()
    titles, icons = got["_NET_WM_NAME"] - base["_NET_WM_NAME"], got["_NET_WM_ICON"] - base["_NET_WM_ICON"]
    seconds = int(elapsed + 1.2) + 2  # counting seconds the flood may have touched
    print(f"flood: {n_titles} titles, {n_icons} icons sent; {titles} and {icons} shown in "
          f"{elapsed:.1f}s; other window served after {responsive:.2f}s")
    assert 1 <= titles <= 8 * seconds and 1 <= icons <= 4 * seconds, got
    assert responsive < 5
    icon = agent.host.prop32(wid, "_NET_WM_ICON")
    assert icon[:2] == [64, 64] and icon[2] == tint(0xff000000 | (n_titles - 5), RED)  # the newest icon
    assert "the excess is coalesced" in agent.log_text()
    assert agent.proc.poll() is None


@pytest.fixture
def two_monitors():
    """A 2048x768 desktop with two monitors: L 1024x768 at 0,0 and R 1024x600 at
    1024,0, so the strip below R (1024..2047 x 600..767) is on the root window but on
    no monitor."""
    from gui_fixtures import need_gui_tools
    need_gui_tools()
    h = HostDisplay(2048, 768)
    h.set_monitors([(1024, 768, 0, 0, 271, 203), (1024, 600, 1024, 0, 271, 159)])
    yield h
    h.close()


def _on(geom, mon):
    x, y, w, h = geom
    mx, my, mw, mh = mon
    return mx <= x and my <= y and x + w <= mx + mw and y + h <= my + mh


L, R = (0, 0, 1024, 768), (1024, 0, 1024, 600)


def _wait_geometry(host, wid, pred, timeout=8):
    deadline = time.time() + timeout
    while time.time() < deadline and not pred(host.geometry(wid)):
        time.sleep(0.2)
    return host.geometry(wid)


def test_a_qube_cannot_place_windows_off_every_monitor(tmp_path, two_monitors):
    """With monitors of different sizes, part of the root window shows on no screen. A
    window the qube places there, or across monitors, or larger than its monitor is
    put on one monitor whole (the one it overlaps most, else the nearest), frame
    included; maximise and fullscreen fill the window's own monitor. The layout is
    followed live: when R goes away, R's windows move to L and the agent is told.
    Positive control: with one monitor over the whole root the same window stays
    where the qube put it."""
    host = two_monitors
    agent = FakeAgent(tmp_path, host)
    full = FakeAgent(tmp_path, host, name="trusted", qid=8, extra=["--allow-fullscreen"])
    try:
        agent.wait_log("2 monitors: 1024 768 0 0 ")
        agent.window(1, "under-r", x=1500, y=650, w=200, h=100)   # on no monitor
        agent.window(2, "across", x=900, y=100, w=300, h=100)     # more on R than on L
        agent.window(3, "huge", x=10, y=10, w=2000, h=700)        # mostly on L, wider than it
        a, b, c = (host.find_window(f"[evil] {t}") for t in ("under-r", "across", "huge"))
        assert host.geometry(a) == (1500 - BORDER, 600 - 100 - 2 * BORDER, 204, 104)
        assert _on(host.geometry(a), R) and _on(host.geometry(b), R) and host.geometry(b)[0] == 1024
        assert host.geometry(c) == (0, 8, 1024, 704) and _on(host.geometry(c), L)
        # the qube cannot push it back off later either
        agent.messages(0.3)
        agent.send(CONFIGURE, 1, struct.pack("=5I", 1200, 700, 200, 100, 0))
        agent.send(CONFIGURE, 2, struct.pack("=5I", 2000, 0, 100, 100, 0))
        time.sleep(0.5)
        assert _on(host.geometry(a), R) and _on(host.geometry(b), R)
        # maximise (fullscreen refused) fills R inside the frame; allowed fullscreen is R
        agent.send(WINDOW_FLAGS, 2, struct.pack("=II", FULLSCREEN, 0))
        assert _wait_geometry(host, b, lambda g: g == R) == R
        assert (1024 + BORDER, BORDER, 1024 - 2 * BORDER, 600 - 2 * BORDER) in \
            [struct.unpack("=5I", m)[:4] for t, w, m in agent.messages() if t == CONFIGURE and w == 2]
        full.window(1, "fs", x=1100, y=100, w=200, h=100)
        fs = host.find_window("[trusted] fs")
        full.send(WINDOW_FLAGS, 1, struct.pack("=II", FULLSCREEN, 0))
        assert _wait_geometry(host, fs, lambda g: g == R) == R
        # R goes away: its windows come to L, the maximised one fills L; the agent is told
        agent.messages(0.3)
        host.set_monitors([(1024, 768, 0, 0, 271, 203)])
        assert _on(_wait_geometry(host, a, lambda g: _on(g, L)), L)
        assert _wait_geometry(host, b, lambda g: g == L) == L
        assert _on(host.geometry(c), L)
        moved = {w for t, w, m in agent.messages() if t == CONFIGURE}
        assert {1, 2} <= moved
        agent.wait_log("1 monitor: 1024 768 0 0 ")
        # positive control: one monitor over the whole root, and the window at
        # 1500,650 stays where the qube puts it
        host.set_monitors([(2048, 768, 0, 0, 542, 203)])
        agent.wait_log("1 monitor: 2048 768 0 0 ", timeout=10)
        agent.window(4, "free", x=1500, y=650, w=200, h=100)
        d = host.find_window("[evil] free")
        assert host.geometry(d) == (1500 - BORDER, 650 - BORDER, 204, 104)
        assert agent.proc.poll() is None and full.proc.poll() is None
    finally:
        agent.close()
        full.close()


DOCK = 143
FOCUS, KEYMAP_NOTIFY = 128, 142


def test_tray_icons_dock_in_the_desktops_tray_tinted(agent):
    """DOCK as Qubes: a window the qube docks waits, unshown, while the desktop has no
    tray; when a tray announces itself, the daemon asks it to embed the window, which
    shows inside the tray with every pixel in the label's hue (no frame fits there), so
    a qube's icon cannot pass for dom0's; the tray sets the size and the qube is told.
    A mapped window cannot be docked, nor an unknown one."""
    host = agent.host
    agent.create(1, 10, 10, 24, 24)
    agent.title(1, b"tray-icon")
    agent.buffer(1, 24, 24, 0x4080c0)
    agent.send(SHMIMAGE, 1, struct.pack("=4I", 0, 0, 24, 24))
    agent.send(DOCK, 1)
    agent.wait_log("window 0x1 waits for a system tray on the desktop (there is none)")
    icon = host.find_window("[evil] tray-icon")
    assert "IsUnMapped" in host.run("xwininfo", "-id", str(icon)).stdout  # shown nowhere yet
    agent.window(2, "shown")
    host.find_window("[evil] shown")
    agent.send(DOCK, 2)                      # mapped already: refused
    agent.send(DOCK, 77)                     # not a window of the qube
    agent.wait_log("DOCK of mapped window 0x2 refused")
    agent.wait_log("DOCK for unknown window 0x4d")
    tray = FakeTray(host)
    try:
        assert tray.dock_requests() == [icon]  # asked once the tray announced itself
        agent.wait_log("window 0x1 docked in the desktop's tray")
        deadline = time.time() + 60
        while time.time() < deadline and "IsViewable" not in host.run("xwininfo", "-id", str(icon)).stdout:
            time.sleep(0.1)
        info = host.run("xwininfo", "-id", str(icon)).stdout
        assert "IsViewable" in info and f"Parent window id: {hex(tray.win)}" in \
            host.run("xwininfo", "-children", "-id", str(icon)).stdout, info
        shows(lambda: host.pixel(host.screenshot(), 500 + 5 + 12, 300 + 5 + 12) == tint_tray(0x4080c0, RED))
        shot = host.screenshot()
        got = host.pixel(shot, 500 + 5 + 12, 300 + 5 + 12)
        assert got == tint_tray(0x4080c0, RED), (hex(got), hex(tint_tray(0x4080c0, RED)))
        assert got != 0x4080c0 and host.pixel(shot, 500 + 1, 300 + 1) == 0xffffff  # the tray's own
        # the tray gives the icon the keyboard focus (XEmbed): the qube is told, after
        # the host's pressed keys, as for a focused window; and when it loses it.
        # Control: the same message to a window not in a tray says nothing.
        agent.messages(0.3)

        def focus_messages(want):  # until `want` of them came (a loaded host is slow)
            got, deadline = [], time.time() + 10
            while len(got) < want and time.time() < deadline:
                got += [(t, w, b) for t, w, b in agent.messages(0.5) if t in (FOCUS, KEYMAP_NOTIFY)]
            return got
        tray.send_xembed(icon, 4)                 # XEMBED_FOCUS_IN
        got = focus_messages(2)
        assert [t for t, _, _ in got] == [KEYMAP_NOTIFY, FOCUS] and got[1][1] == 1 and \
            struct.unpack("=3I", got[1][2]) == (9, 0, 3), got  # FocusIn, NotifyNormal, Nonlinear
        tray.send_xembed(icon, 5)                 # XEMBED_FOCUS_OUT
        got = [(w, struct.unpack("=3I", b)) for t, w, b in focus_messages(1) if t == FOCUS]
        assert got == [(1, (10, 0, 3))], got
        tray.send_xembed(host.find_window("[evil] shown"), 4)
        assert [m for m in agent.messages(1) if m[0] in (FOCUS, KEYMAP_NOTIFY)] == []
        # the tray makes it 16x16: the qube is told
        agent.messages(0.3)
        tray.resize_icon(icon, 16, 16)
        deadline = time.time() + 60
        sizes = []
        while time.time() < deadline and (16, 16) not in sizes:
            sizes += [struct.unpack("=5I", b)[2:4] for t, w, b in agent.messages(0.3) if t == CONFIGURE and w == 1]
        assert (16, 16) in sizes
        alive(agent, 2, "tray-still")
    finally:
        tray.close()


def test_a_qube_cannot_fill_the_desktops_tray(agent):
    """The desktop's tray is shared by every qube and dom0: one qube docks at most 16
    icons; the 17th and later are refused and the daemon goes on. Positive control:
    the first 16 reach the tray."""
    tray = FakeTray(agent.host)
    try:
        for i in range(1, 41):
            agent.create(i, 10, 10, 16, 16)
            agent.send(DOCK, i)
        agent.wait_log("more than 16 tray icons: DOCK of 0x11 refused")
        got, deadline = [], time.time() + 10
        while time.time() < deadline and len(got) < 16:
            got += tray.dock_requests(timeout=1)
        time.sleep(0.5)
        got += tray.dock_requests(timeout=0.5)
        assert len(got) == 16, got
        agent.window(100, "after-tray")
        alive(agent, 100, "tray-full-still")
    finally:
        tray.close()


def _map_state(host, wid):
    info = host.run("xwininfo", "-id", str(wid)).stdout
    return "IsViewable" if "IsViewable" in info else "IsUnviewable" if "IsUnviewable" in info else "IsUnMapped"


def _wait_map_state(host, wid, want, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline and _map_state(host, wid) != want:
        time.sleep(0.1)
    return _map_state(host, wid)


def test_a_tray_that_exits_leaves_no_unframed_icon_on_the_desktop(agent):
    """A docked icon has no frame. When the desktop's tray exits, the X server gives
    the windows in the tray's save-set back to the root window and maps them there:
    the qube's pixels would show on the desktop without a frame (review finding). The
    daemon takes the icon down again and shows it only once a tray has embedded it
    (XEMBED_EMBEDDED_NOTIFY), also when the qube unmaps, docks and maps it again.
    Positive controls: the icon shows inside the tray first, and again inside the
    next tray that announces itself."""
    host = agent.host
    colour = 0x4080c0
    tinted = tint_tray(colour, RED)
    agent.create(1, 10, 10, 24, 24)
    agent.title(1, b"tray-icon")
    agent.buffer(1, 24, 24, colour)
    agent.send(SHMIMAGE, 1, struct.pack("=4I", 0, 0, 24, 24))
    tray = FakeTray(host)
    try:
        agent.send(DOCK, 1)
        icon = host.find_window("[evil] tray-icon")
        assert tray.dock_requests() == [icon]
        assert _wait_map_state(host, icon, "IsViewable") == "IsViewable"  # the control: it shows in the tray
        assert shows(lambda: host.pixel(host.screenshot(), 500 + 5 + 12, 300 + 5 + 12) == tinted)
    finally:
        tray.close()  # the tray exits: its save-set puts the icon on the root window
    agent.wait_log("window 0x1 left the desktop's tray: hidden until a tray embeds it")
    deadline = time.time() + 60
    while time.time() < deadline and f"Parent window id: {hex(host_root(host))}" not in \
            host.run("xwininfo", "-children", "-id", str(icon)).stdout:
        time.sleep(0.1)
    assert f"Parent window id: {hex(host_root(host))}" in host.run("xwininfo", "-children", "-id", str(icon)).stdout
    time.sleep(1)
    assert _map_state(host, icon) == "IsUnMapped"
    shot = host.screenshot()
    w, h, _ = shot
    shown = [(x, y) for y in range(0, h, 2) for x in range(0, w, 2) if host.pixel(shot, x, y) in (tinted, colour)]
    assert not shown, shown[:5]
    # the qube unmaps, docks and maps its icon again: still nowhere without a tray
    agent.send(UNMAP, 1)
    agent.send(DOCK, 1)
    agent.map(1)
    alive(agent, 1, "tray-icon-2")
    time.sleep(0.5)
    assert _map_state(host, icon) == "IsUnMapped"
    # a new tray: the icon is docked there and shows inside it again
    tray = FakeTray(host, x=600, y=200)
    try:
        assert tray.dock_requests() == [icon]
        assert _wait_map_state(host, icon, "IsViewable") == "IsViewable"
        assert f"Parent window id: {hex(tray.win)}" in host.run("xwininfo", "-children", "-id", str(icon)).stdout
    finally:
        tray.close()
    assert _wait_map_state(host, icon, "IsUnMapped", timeout=5) == "IsUnMapped"


def host_root(host):
    out = host.run("xwininfo", "-root").stdout
    return int(out.split("Window id:")[1].split()[0], 16)


PIXELS = 0x10003


def pixels(agent, win, x, y, w, h, colour, n=None):
    """A PIXELS message of w x h pixels at x,y (n pixels sent instead, if given)."""
    agent.send(PIXELS, win, struct.pack("=4I", x & 0xffffffff, y & 0xffffffff, w, h) +
               struct.pack("=I", colour) * (w * h if n is None else n))


def test_inline_pixels_are_bounded_to_their_buffer(agent):
    """An agent that cannot pass memfds (a VM qube's) sends a WINDOW_DUMP of the inline
    type without one and its pixels in PIXELS messages: the daemon keeps the buffer
    itself, and a rectangle must lie wholly inside it and carry exactly its pixels."""
    agent.create(1, 100, 100, 100, 80)
    agent.title(1, b"inline")
    agent.map(1)
    agent.send(WINDOW_DUMP, 1, struct.pack("=4I", 2, 100, 80, 32))  # inline: no fd
    for y in range(0, 80, 40):  # in pieces, as the agent splits them
        pixels(agent, 1, 0, y, 100, 40, 0x00ff00)
    wid = agent.host.find_window("[evil] inline")
    geom = agent.host.geometry(wid)
    x, y, w, h = geom
    assert shows(lambda: (lambda shot: frame_is(shot, geom, RED)[0] and
                          agent.host.pixel(shot, x + w // 2, y + h // 2) == 0x00ff00)(agent.host.screenshot()))
    pixels(agent, 1, 90, 0, 20, 1, 0xff0000)  # past the right edge
    agent.wait_log("PIXELS 0x1: PIXELS 20x1 at 90,0 outside the 100x80 buffer")
    pixels(agent, 1, 0, 0xffffffff, 1, 2, 0xff0000)  # y wraps
    agent.wait_log("outside the 100x80 buffer")
    pixels(agent, 1, 0, 0, 10, 10, 0xff0000, n=5)  # fewer pixels than the rectangle
    agent.wait_log("PIXELS 10x10 with 20 bytes of pixels")
    agent.create(2, 300, 100, 50, 50)
    agent.map(2)
    agent.buffer(2, 50, 50, 0x0000ff)  # a memfd buffer: PIXELS do not write into it
    pixels(agent, 2, 0, 0, 10, 10, 0xff0000)
    agent.wait_log("PIXELS 0x2: PIXELS without an inline WINDOW_DUMP")
    agent.create(3, 50, 300, 40, 40)
    agent.send(WINDOW_DUMP, 3, struct.pack("=4I", 2, 16385, 40, 32))  # wider than any window
    agent.wait_log("WINDOW_DUMP 0x3")
    # none of it reached the screen, and the daemon still serves the qube
    alive(agent, 1, "inline-ok")
    assert shows(lambda: agent.host.pixel(agent.host.screenshot(), x + w // 2, y + h // 2) == 0x00ff00)
    shot = agent.host.screenshot()
    assert agent.host.pixel(shot, x + w - 4, y + 4) == 0x00ff00
    assert agent.proc.poll() is None
    # inline buffers are the daemon's memory, not the qube's: 256 MiB in all per qube
    for win in (10, 11, 12):
        agent.create(win, 0, 0, 6144, 4096)
        agent.send(WINDOW_DUMP, win, struct.pack("=4I", 2, 6144, 4096, 32))  # 96 MiB each
    agent.wait_log("WINDOW_DUMP 0xc: inline buffers of 288 MiB in all (limit 256 MiB)")
    assert "WINDOW_DUMP 0xb" not in agent.log_text()
    agent.send(DESTROY, 10)  # its buffer goes: room for another
    agent.send(WINDOW_DUMP, 12, struct.pack("=4I", 2, 6144, 4096, 32))
    alive(agent, 1, "inline-ok2")
    assert agent.log_text().count("inline buffers of") == 1
    # a message longer than the limit is a framing error: this qube's daemon ends
    agent.send(PIXELS, 1, struct.pack("=4I", 0, 0, 100, 1) + b"\0" * 65004)
    assert agent.proc.wait(10) == 1
    assert "PIXELS with length 65020" in agent.log_text()


def test_a_descriptor_with_an_inline_dump_ends_the_channel(agent):
    """An inline WINDOW_DUMP has no buffer of the agent's: a descriptor sent with it is a
    protocol error (it would otherwise wait for the next memfd dump)."""
    agent.create(1, 100, 100, 50, 50)
    agent.map(1)
    fd = os.memfd_create("stray")
    agent.send(WINDOW_DUMP, 1, struct.pack("=4I", 2, 50, 50, 32), fds=[fd])
    assert agent.proc.wait(10) == 1  # the daemon of this qube ends, as on any framing error
    assert "file descriptor with an inline WINDOW_DUMP" in agent.log_text()
