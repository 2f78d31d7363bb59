"""The seamless GUI with real ns qubes: qvm-start-daemon starts a GUI daemon per running
qube, each qube runs its own Xvfb and gui-agent, and the qubes' windows appear on a
private Xvfb standing in for the desktop, framed in their label colours."""
import os
import time

import pytest

from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import BORDER, LABEL_COLOURS, GuiSession, X11_CLIENT, frame_is, host_display  # noqa: F401
from waiting import wait_for


def tree(display):
    """The host display's window tree. xwininfo fails (BadWindow) when a window it is
    walking is destroyed meanwhile, which is what these tests wait for: read it again."""
    for _ in range(20):
        r = display.run("xwininfo", "-root", "-tree", check=False)
        if r.returncode == 0:
            return r.stdout
        time.sleep(0.05)
    return display.run("xwininfo", "-root", "-tree").stdout


@pytest.fixture
def ask_script(monkeypatch, tmp_path):
    """A scriptable `ask` prompt (as in test_qrexec_real_qubes): logs, answers $answer."""
    log, answer = tmp_path / "ask.log", tmp_path / "answer"
    prog = tmp_path / "ask"
    prog.write_text(f"#!/bin/sh\necho \"$@\" >> {log}\ncat {answer}\n")
    prog.chmod(0o755)
    monkeypatch.setenv("BULKHEAD_QREXEC_ASK", str(prog))
    return log, answer


@pytest.fixture
def gui(ask_script, engine_daemon, host_display):
    d = engine_daemon
    s = GuiSession(d, host_display)
    s.ask_log, s.ask_answer = ask_script
    for q in ("a", "b"):  # a is red, b is blue
        assert s.qvm_run(q, "true").returncode == 0
    s.start()
    for q in ("a", "b"):
        s.wait_gui(q)
    yield s
    s.stop()


def test_windows_are_framed_in_their_qubes_label_colours(gui):
    host = gui.host
    gui.spawn("a", "xterm -T term-a -geometry 40x8+20+20")
    # the plain way a person types it: qvm-run QUBE PROGRAM ARGS (it returns when xeyes exits)
    import subprocess
    from qrexec_fixtures import bin_path
    plain = subprocess.Popen([bin_path("qvm-run"), "b", "xeyes", "-geometry", "200x150+500+300"], env=gui.env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wa = host.find_window("[a] term-a")
    wb = host.find_window("[b] xeyes")
    # the first frames arrive when they do: polled for both frames (was: 1 s, one look)
    wait_for(lambda: (lambda shot: frame_is(shot, host.geometry(wa), LABEL_COLOURS["red"])[0] and
                      frame_is(shot, host.geometry(wb), LABEL_COLOURS["blue"])[0])(host.screenshot()), step=0.2)
    shot = host.screenshot()
    ok, bad = frame_is(shot, host.geometry(wa), LABEL_COLOURS["red"])
    assert ok, bad
    ok, bad = frame_is(shot, host.geometry(wb), LABEL_COLOURS["blue"])
    assert ok, bad
    # the properties window managers read, from dom0's store
    assert host.prop(wa, "_QUBES_VMNAME").endswith('"a"')
    assert host.prop(wa, "_QUBES_LABEL_COLOR").endswith(str(LABEL_COLOURS["red"]))
    assert host.prop(wb, "_QUBES_LABEL_COLOR").endswith(str(LABEL_COLOURS["blue"]))
    assert '"b:xeyes"' in host.prop(wb, "WM_CLASS")
    # the qube's pixels are there too: xterm's white background inside a's frame
    x, y, w, h = host.geometry(wa)
    assert host.pixel(shot, x + w // 2, y + h - 6) == 0xffffff
    # where the qube placed them (the frame surrounds the qube's window)
    assert (x, y) == (20 - BORDER, 20 - BORDER)
    assert host.geometry(wb)[:2] == (500 - BORDER, 300 - BORDER)
    if os.environ.get("BULKHEAD_GUI_SCREENSHOT"):
        host.save_png(os.environ["BULKHEAD_GUI_SCREENSHOT"])
    gui.qvm_run("b", "pkill -x xeyes")
    assert plain.wait(20) is not None


def test_typing_reaches_only_the_focused_qube(gui):
    host = gui.host
    for q in ("a", "b"):
        gui.spawn(q, f"xterm -T type-{q} -geometry 30x5+{20 if q == 'a' else 400}+20 -e sh -c 'cat > /tmp/typed'")
    wa, wb = host.find_window("[a] type-a"), host.find_window("[b] type-b")
    time.sleep(1)

    def typed(q):
        return gui.qvm_run("-p", q, "cat /tmp/typed 2>/dev/null").stdout

    host.run("xdotool", "windowfocus", "--sync", str(wa))
    host.run("xdotool", "type", "--delay", "30", "secret-for-a")
    host.run("xdotool", "key", "Return")
    deadline = time.time() + 60
    while time.time() < deadline and typed("a") != b"secret-for-a\n":
        time.sleep(0.2)
    assert typed("a") == b"secret-for-a\n"
    assert typed("b") == b""  # b saw none of it
    # positive control: b's window does receive what is typed while it has the focus
    host.run("xdotool", "windowfocus", "--sync", str(wb))
    host.run("xdotool", "type", "--delay", "30", "for-b")
    host.run("xdotool", "key", "Return")
    deadline = time.time() + 60
    while time.time() < deadline and typed("b") != b"for-b\n":
        time.sleep(0.2)
    assert typed("b") == b"for-b\n"
    assert typed("a") == b"secret-for-a\n"


def _clip_setup(gui, policy):
    pol = gui.d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text(policy)
    host = gui.host
    for q in ("a", "b"):
        gui.spawn(q, f"xterm -T clip-{q} -geometry 30x5+{20 if q == 'a' else 400}+20")
    wa, wb = host.find_window("[a] clip-a"), host.find_window("[b] clip-b")
    r = gui.qvm_run("a", "printf clip-from-a | xclip -selection clipboard -i >/dev/null 2>&1")
    assert r.returncode == 0
    host.run("xdotool", "windowfocus", "--sync", str(wa))
    host.run("xdotool", "key", "ctrl+shift+c")
    src = gui.clip_dir / "clipboard.source"
    deadline = time.time() + 60
    while time.time() < deadline and not (src.exists() and src.read_text() == "a"):
        time.sleep(0.2)
    assert src.read_text() == "a", gui.log.read_text()
    assert (gui.clip_dir / "clipboard.bin").read_bytes() == b"clip-from-a"
    host.run("xdotool", "windowfocus", "--sync", str(wb))
    host.run("xdotool", "key", "ctrl+shift+v")
    return src


def _b_clipboard(gui):
    return gui.qvm_run("-p", "b", "timeout 5 xclip -selection clipboard -o 2>/dev/null").stdout


def test_clipboard_paste_allowed_by_policy(gui):
    src = _clip_setup(gui, "qubes.ClipboardPaste  *  a  b  allow\n")
    deadline = time.time() + 60
    while time.time() < deadline and _b_clipboard(gui) != b"clip-from-a":
        time.sleep(0.3)
    assert _b_clipboard(gui) == b"clip-from-a"
    assert src.read_text() == ""  # pasted once, then emptied
    assert "Pasted 11 bytes from a into b" in gui.log.read_text()


def test_clipboard_paste_denied_by_policy(gui):
    src = _clip_setup(gui, "qubes.ClipboardPaste  *  a  b  deny\n")
    deadline = time.time() + 60
    while time.time() < deadline and "denied by policy" not in gui.log.read_text():
        time.sleep(0.2)
    assert "Paste from a into b denied by policy" in gui.log.read_text()
    assert "10-test.policy:1" in gui.log.read_text()
    assert _b_clipboard(gui) == b""
    assert src.read_text() == "a"  # still there for an allowed paste


def test_clipboard_paste_asks_a_person(gui):
    gui.ask_answer.write_text("b\n")
    _clip_setup(gui, "qubes.ClipboardPaste  *  a  b  ask\n")
    deadline = time.time() + 60
    while time.time() < deadline and _b_clipboard(gui) != b"clip-from-a":
        time.sleep(0.3)
    assert _b_clipboard(gui) == b"clip-from-a"
    assert "--source a --service qubes.ClipboardPaste" in gui.ask_log.read_text()


def test_stopping_the_qube_closes_its_windows(gui):
    host = gui.host
    gui.spawn("a", "xterm -T bye-a")
    host.find_window("[a] bye-a")
    gui.d.call("admin.vm.Kill", "a")
    deadline = time.time() + 60
    while time.time() < deadline and "[a] bye-a" in tree(host):
        time.sleep(0.2)
    assert "[a] bye-a" not in tree(host)


def test_watch_starts_a_daemon_for_a_qube_started_later(engine_daemon, host_display):
    d = engine_daemon
    s = GuiSession(d, host_display).start()
    try:
        time.sleep(1)  # no qube runs yet: nothing to show
        assert "started the GUI daemon" not in s.log.read_text()
        d.call("admin.vm.Start", "b")  # domain-start -> a daemon for b
        s.wait_gui("b")
        s.spawn("b", "xterm -T late-b")
        host_display.find_window("[b] late-b")
        d.call("admin.vm.Kill", "b")  # domain-shutdown -> the daemon ends, windows go
        deadline = time.time() + 60
        while time.time() < deadline and "GUI daemon of b ended" not in s.log.read_text():
            time.sleep(0.2)
        assert "GUI daemon of b ended" in s.log.read_text()
        assert "[b] late-b" not in tree(host_display)
    finally:
        s.stop()


def test_moving_and_resizing_on_the_desktop_reaches_the_qube(gui):
    """The user (or window manager) moves and resizes the framed window; the qube's own
    window follows, and the frame keeps surrounding the new size."""
    host = gui.host
    gui.spawn("a", "xterm -T resize-a -geometry 40x8+20+20")
    wa = host.find_window("[a] resize-a")
    time.sleep(1)
    host.run("xdotool", "windowmove", "--sync", str(wa), "300", "200")
    host.run("xdotool", "windowsize", "--sync", str(wa), "500", "300")

    def in_qube():
        out = gui.qvm_run("-p", "a", "DISPLAY=:0 xwininfo -name resize-a").stdout.decode()
        g = {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln)}
        return (int(g.get("Absolute upper-left X", -1)), int(g.get("Absolute upper-left Y", -1)),
                int(g.get("Width", -1)), int(g.get("Height", -1)), int(g.get("Border width", 0)))

    deadline = time.time() + 60
    want = (300 + BORDER, 200 + BORDER)
    while time.time() < deadline:
        x, y, w, h, bw = in_qube()
        if (x, y, w + 2 * bw, h + 2 * bw) == (*want, 500 - 2 * BORDER, 300 - 2 * BORDER):
            break
        time.sleep(0.3)
    x, y, w, h, bw = in_qube()
    # (xwininfo's upper-left is the outer corner, border included; its size is without)
    assert (x, y, w + 2 * bw, h + 2 * bw) == (*want, 500 - 2 * BORDER, 300 - 2 * BORDER)
    wait_for(lambda: frame_is(host.screenshot(), host.geometry(wa), LABEL_COLOURS["red"])[0], step=0.2)
    shot = host.screenshot()
    ok, bad = frame_is(shot, host.geometry(wa), LABEL_COLOURS["red"])
    assert ok, bad
    assert host.geometry(wa) == (300, 200, 500, 300)


def test_a_bell_asks_for_attention(gui):
    """xterm's urgent bell (ICCCM urgency in the qube) becomes Qubes' DEMANDS_ATTENTION."""
    host = gui.host
    gui.spawn("a", "xterm -T bell-a -xrm 'XTerm*bellIsUrgent: true' -e sh -c 'sleep 2; printf \"\\a\"; sleep 60'")
    wa = host.find_window("[a] bell-a")
    assert "DEMANDS_ATTENTION" not in host.prop(wa, "_NET_WM_STATE")
    deadline = time.time() + 60
    while time.time() < deadline and "DEMANDS_ATTENTION" not in host.prop(wa, "_NET_WM_STATE"):
        time.sleep(0.2)
    assert "_NET_WM_STATE_DEMANDS_ATTENTION" in host.prop(wa, "_NET_WM_STATE")


def test_the_qubes_cursor_shape_shows_on_the_desktop(monkeypatch, engine_daemon, host_display):
    """A themed cursor in the qube (XFIXES names it) reaches the host as a cursor-font
    glyph: xterm's I-beam is XC_xterm (CURSOR_X11 + 152 = 0x198)."""
    if not os.path.isdir("/usr/share/icons/whiteglass"):
        pytest.skip("no cursor theme to name cursors (xcursor-themes)")
    monkeypatch.setenv("BULKHEAD_LOG", "debug")
    s = GuiSession(engine_daemon, host_display)
    assert s.qvm_run("a", "true").returncode == 0
    s.start()
    try:
        s.wait_gui("a")
        s.spawn("a", "XCURSOR_THEME=whiteglass xterm -T cur-a -geometry 40x8+20+20")
        host_display.find_window("[a] cur-a")
        time.sleep(1)
        deadline = time.time() + 60
        while time.time() < deadline and "cursor 0x198" not in s.log.read_text():
            host_display.run("xdotool", "mousemove", "500", "500")
            time.sleep(0.3)
            host_display.run("xdotool", "mousemove", "100", "60")
            time.sleep(0.3)
        assert "cursor 0x198" in s.log.read_text()
    finally:
        s.stop()


def test_closing_the_last_window_leaves_the_qube_running(gui):
    host = gui.host
    gui.spawn("a", "xterm -T close-a")
    wa = host.find_window("[a] close-a")
    host.send_delete(wa)  # the desktop's close button -> CLOSE -> xterm's WM_DELETE_WINDOW
    deadline = time.time() + 60
    while time.time() < deadline and "[a] close-a" in tree(host):
        time.sleep(0.2)
    assert "[a] close-a" not in tree(host)
    assert gui.qvm_run("-p", "a", "pgrep -x xterm || echo none").stdout == b"none\n"
    assert "power_state=Running" in gui.d.call("admin.vm.CurrentState", "a")
    # and the qube's GUI still works
    gui.spawn("a", "xterm -T again-a")
    host.find_window("[a] again-a")


# A window whose cursor an application named itself (raw X11 in the qube): a cursor-font
# glyph named with XFIXES SetCursorName, as a browser's theme cursors are named with CSS
# names (argv: the name).
NAMED_CURSOR = X11_CLIENT + r"""
def padded(b):
    return b + b"\0" * ((4 - len(b) % 4) % 4)
s.sendall(struct.pack("<BBHH2x", 98, 0, 2 + len(padded(b"XFIXES")) // 4, 6) + padded(b"XFIXES"))
xfixes = reply()[9]
s.sendall(struct.pack("<BBHII", xfixes, 0, 3, 4, 0)); reply()
font, cur, win = base | 1, base | 2, base | 3
s.sendall(struct.pack("<BBHIH2x", 45, 0, 3 + len(padded(b"cursor")) // 4, font, 6) + padded(b"cursor"))
s.sendall(struct.pack("<BBHIIIHH6H", 94, 0, 8, cur, font, font, 0, 1, 0, 0, 0, 65535, 65535, 65535))
name = sys.argv[1].encode()
s.sendall(struct.pack("<BBHIH2x", xfixes, 23, 3 + len(padded(name)) // 4, cur, len(name)) + padded(name))
s.sendall(struct.pack("<BBHIIhhHHHHIIII", 1, 0, 10, win, root, 20, 20, 200, 100, 0, 1, 0, 0x2 | 0x4000,
                      0xffffff, cur))
s.sendall(struct.pack("<BBHI", 8, 0, 2, win))
s.sendall(struct.pack("<BBHH2x", 16, 0, 3, 4) + b"ATOM"); reply()
print("ok", flush=True)
time.sleep(3600)
"""


def test_a_css_named_cursor_becomes_its_glyph(monkeypatch, engine_daemon, host_display):
    """As Qubes' agent: cursors named with the CSS names browsers use ("col-resize")
    become the cursor-font glyph Qubes gives them (XC_sb_h_double_arrow, CURSOR_X11 +
    108 = 0x16c); the protocol carries no images."""
    monkeypatch.setenv("BULKHEAD_LOG", "debug")
    s = GuiSession(engine_daemon, host_display)
    assert s.qvm_run("a", "true").returncode == 0
    s.start()
    try:
        s.wait_gui("a")
        s.qvm_run("a", f"cat > /tmp/cur.py <<'EOF'\n{NAMED_CURSOR}\nEOF")
        r = s.qvm_run("a", "python3 /tmp/cur.py col-resize >/tmp/cur.log 2>&1 </dev/null &")
        assert r.returncode == 0, r.stderr
        deadline = time.time() + 60
        while time.time() < deadline and "cursor 0x16c" not in s.log.read_text():
            host_display.run("xdotool", "mousemove", "500", "500")
            time.sleep(0.3)
            host_display.run("xdotool", "mousemove", "120", "70")
            time.sleep(0.3)
        assert "cursor 0x16c" in s.log.read_text(), (s.log.read_text()[-2000:],
                                                      s.qvm_run("-p", "a", "cat /tmp/cur.log").stdout)
    finally:
        s.stop()
