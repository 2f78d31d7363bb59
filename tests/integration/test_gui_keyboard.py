"""Keyboards with real ns qubes on an Xvfb host display: a qube types in the host's
keyboard layout (or in its own keyboard_layout when one is set, as Qubes), and a key let
go while another window had the focus does not stay held down in the qube."""
import time


from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import GuiSession, host_display  # noqa: F401
from test_gui import ask_script, gui  # noqa: F401


def _typed(s, q):
    return s.qvm_run("-p", q, "cat /tmp/typed 2>/dev/null").stdout


def _wait_typed(s, q, want, timeout=15):
    deadline = time.time() + timeout
    while time.time() < deadline and _typed(s, q) != want:
        time.sleep(0.2)
    return _typed(s, q)


def _typing_terminal(s, q, x):
    s.spawn(q, f"xterm -T kbd-{q} -geometry 30x5+{x}+20 -e sh -c 'cat > /tmp/typed'")
    return s.host.find_window(f"[{q}] kbd-{q}")


def _qube_layout(s, q):
    out = s.qvm_run("-p", q, "setxkbmap -display :0 -query").stdout.decode()
    return dict((k.strip(), v.strip()) for k, v in (ln.split(":", 1) for ln in out.splitlines() if ":" in ln))


def test_a_qube_types_in_the_hosts_layout_or_its_own(engine_daemon, host_display):
    d, host = engine_daemon, host_display
    d.call("admin.vm.property.Set+keyboard_layout", "b", "us++")  # b has a layout of its own
    host.run("setxkbmap", "us")
    s = GuiSession(d, host)
    for q in ("a", "b"):
        assert s.qvm_run(q, "true").returncode == 0
    s.start()
    try:
        for q in ("a", "b"):
            s.wait_gui(q)
        wa, wb = _typing_terminal(s, "a", 20), _typing_terminal(s, "b", 400)
        # the desktop switches to German while the qubes run: a follows, b keeps its own
        host.run("setxkbmap", "de")
        deadline = time.time() + 60
        while time.time() < deadline and _qube_layout(s, "a").get("layout") != "de":
            time.sleep(0.3)
        assert _qube_layout(s, "a").get("layout") == "de", s.log.read_text()
        assert _qube_layout(s, "b").get("layout") == "us"
        # German keyboard: Z and Y are swapped against US, and there is a key for ü
        host.run("xdotool", "windowfocus", "--sync", str(wa))
        host.run("xdotool", "type", "--delay", "30", "zyü")
        host.run("xdotool", "key", "Return")
        got = _wait_typed(s, "a", "zyü\n".encode())
        assert got in ("zyü\n".encode(), "zyü\n".encode("latin-1")), got
        # the control: the same keys in b (US) are other characters, so the layout
        # decides, not the keycodes
        host.run("xdotool", "windowfocus", "--sync", str(wb))
        host.run("xdotool", "type", "--delay", "30", "zy")
        host.run("xdotool", "key", "Return")
        assert _wait_typed(s, "b", b"yz\n") == b"yz\n"
        # b's own layout changes while it runs (qvm-prefs b keyboard_layout fr++): it follows
        d.call("admin.vm.property.Set+keyboard_layout", "b", "fr++")
        deadline = time.time() + 60
        while time.time() < deadline and _qube_layout(s, "b").get("layout") != "fr":
            time.sleep(0.3)
        assert _qube_layout(s, "b").get("layout") == "fr", s.log.read_text()
        # and back to the default: the desktop's again
        d.call("admin.vm.property.Reset+keyboard_layout", "b")
        deadline = time.time() + 60
        while time.time() < deadline and _qube_layout(s, "b").get("layout") != "de":
            time.sleep(0.3)
        assert _qube_layout(s, "b").get("layout") == "de", s.log.read_text()
        assert _qube_layout(s, "a").get("layout") == "de"
    finally:
        s.stop()


def test_a_key_let_go_in_another_window_is_let_go_in_the_qube(gui):
    host = gui.host
    wa, wb = _typing_terminal(gui, "a", 20), _typing_terminal(gui, "b", 400)
    time.sleep(1)
    host.run("xdotool", "windowfocus", "--sync", str(wa))
    host.run("xdotool", "keydown", "shift")       # a sees Shift go down...
    host.run("xdotool", "windowfocus", "--sync", str(wb))
    host.run("xdotool", "keyup", "shift")         # ...and b sees it come up
    host.run("xdotool", "windowfocus", "--sync", str(wa))
    host.run("xdotool", "type", "--delay", "30", "x")
    host.run("xdotool", "key", "Return")
    # a is told which keys are down when it gets the focus back: Shift is not
    assert _wait_typed(gui, "a", b"x\n") == b"x\n"


def test_a_qube_follows_the_desktops_layout_group(engine_daemon, host_display):
    """A desktop with two layouts (us,de) switched with a key: as Qubes, a qube that
    follows the desktop gets the selected group's layout only (with the options), and
    follows the switch, so the same keys type German after it. Without that the qube,
    given both groups, would stay in its first (US) whatever the desktop shows."""
    d, host = engine_daemon, host_display
    host.run("setxkbmap", "-layout", "us,de", "-variant", ",nodeadkeys", "-option", "grp:caps_toggle")
    s = GuiSession(d, host)
    assert s.qvm_run("a", "true").returncode == 0
    s.start()
    try:
        s.wait_gui("a")
        wa = _typing_terminal(s, "a", 20)

        def wait_layout(want):
            deadline = time.time() + 60
            while time.time() < deadline and _qube_layout(s, "a").get("layout") != want:
                time.sleep(0.3)
            return _qube_layout(s, "a")
        got = wait_layout("us")
        assert got.get("layout") == "us" and got.get("options") == "grp:caps_toggle", (got, s.log.read_text())
        host.press_keycode(66)  # Caps Lock, here ISO_Next_Group: the desktop switches to its second group
        st = host.xkb_state()  # the premise: the desktop is in its second group, no key held
        assert st["group"] == 1 and st["down"] == [], st
        got = wait_layout("de")
        assert got.get("layout") == "de" and got.get("variant") == "nodeadkeys", (got, s.log.read_text())
        # the keys of US y and z (keycodes 29 and 52; xdotool would pick keys by keysym
        # and switch groups itself): German z and y now, in the qube too
        host.run("xdotool", "windowfocus", "--sync", str(wa))
        for kc in (29, 52, 36):
            host.press_keycode(kc)
        assert _wait_typed(s, "a", b"zy\n") == b"zy\n"
        host.press_keycode(66)  # and back: the same keys are y and z again
        st = host.xkb_state()
        assert st["group"] == 0 and st["down"] == [], st
        assert wait_layout("us").get("layout") == "us", s.log.read_text()
        for kc in (29, 52, 36):
            host.press_keycode(kc)
        assert _wait_typed(s, "a", b"zy\nyz\n") == b"zy\nyz\n"
    finally:
        s.stop()
        host.run("setxkbmap", "us")
