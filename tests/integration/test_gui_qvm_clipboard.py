"""dom0's side of the global clipboard with real ns qubes on an Xvfb host display:
qvm-clipboard --copy puts the desktop's clipboard into the global one (source dom0),
which a qube gets with Ctrl+Shift+V if qubes.ClipboardPaste policy allows @adminvm to it;
qvm-clipboard --paste puts a qube's copied data into the desktop's clipboard only where
policy allows that qube to @adminvm (Qubes' defaults never do)."""
import subprocess
import time

from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import gui_bin, host_display  # noqa: F401
from test_gui import ask_script, gui  # noqa: F401


def qvm_clipboard(gui, *args):
    return subprocess.run([gui_bin("qvm-clipboard"), *args], env=gui.env, capture_output=True, text=True,
                          timeout=30)


def host_clipboard(gui):
    return gui.host.run("timeout", "5", "xclip", "-selection", "clipboard", "-o", check=False).stdout


def set_host_clipboard(gui, text):
    """xclip serves the desktop's clipboard from a child it forks: wait until it does."""
    subprocess.run(["xclip", "-selection", "clipboard", "-i"], input=text.encode(), env=gui.host.env(), timeout=10,
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and host_clipboard(gui) != text:
        time.sleep(0.1)
    assert host_clipboard(gui) == text


def policy(gui, text):
    pol = gui.d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text(text)


def b_clipboard(gui):
    return gui.qvm_run("-p", "b", "timeout 5 xclip -selection clipboard -o 2>/dev/null").stdout


def paste_into_b(gui):
    gui.spawn("b", "xterm -T clip-b -geometry 30x5+400+20")
    wb = gui.host.find_window("[b] clip-b")
    gui.host.run("xdotool", "windowfocus", "--sync", str(wb))
    gui.host.run("xdotool", "key", "ctrl+shift+v")


def test_the_desktops_clipboard_into_a_qube_by_policy(gui):
    policy(gui, "qubes.ClipboardPaste  *  @adminvm  b  allow\n")
    set_host_clipboard(gui, "from-the-desktop")
    r = qvm_clipboard(gui, "--copy")
    assert r.returncode == 0, r.stderr
    assert (gui.clip_dir / "clipboard.source").read_text() == "dom0"
    assert (gui.clip_dir / "clipboard.bin").read_bytes() == b"from-the-desktop"
    assert qvm_clipboard(gui).stdout == "16 bytes from dom0\n"
    paste_into_b(gui)
    deadline = time.time() + 60
    while time.time() < deadline and b_clipboard(gui) != b"from-the-desktop":
        time.sleep(0.3)
    assert b_clipboard(gui) == b"from-the-desktop"
    assert qvm_clipboard(gui).stdout == "The global clipboard is empty\n"  # pasted once


def test_the_desktops_clipboard_is_denied_by_policy_and_limited(gui):
    policy(gui, "qubes.ClipboardPaste  *  @adminvm  b  deny\n")
    set_host_clipboard(gui, "x" * 65001)  # past Qubes' 65000 bytes: not copied
    r = qvm_clipboard(gui, "--copy")
    assert r.returncode == 1 and "more than 65000 bytes" in r.stderr
    assert qvm_clipboard(gui).stdout == "The global clipboard is empty\n"
    set_host_clipboard(gui, "not-for-b")
    assert qvm_clipboard(gui, "--copy").returncode == 0
    paste_into_b(gui)
    deadline = time.time() + 60
    while time.time() < deadline and "denied by policy" not in gui.log.read_text():
        time.sleep(0.2)
    assert "Paste from dom0 into b denied by policy (" in gui.log.read_text()
    assert "10-test.policy:1)" in gui.log.read_text()
    assert b_clipboard(gui) == b""


def _copy_from_a(gui):
    gui.spawn("a", "xterm -T clip-a -geometry 30x5+20+20")
    wa = gui.host.find_window("[a] clip-a")
    assert gui.qvm_run("a", "printf secret-of-a | xclip -selection clipboard -i >/dev/null 2>&1").returncode == 0
    gui.host.run("xdotool", "windowfocus", "--sync", str(wa))
    gui.host.run("xdotool", "key", "ctrl+shift+c")
    src = gui.clip_dir / "clipboard.source"
    deadline = time.time() + 60
    while time.time() < deadline and not (src.exists() and src.read_text() == "a"):
        time.sleep(0.2)
    assert src.read_text() == "a", gui.log.read_text()


def test_a_qubes_clipboard_reaches_the_desktop_only_where_policy_says(gui):
    set_host_clipboard(gui, "desktop-own")
    _copy_from_a(gui)
    # Qubes' default policy (@anyvm never matches dom0): refused, nothing changes
    r = qvm_clipboard(gui, "--paste")
    assert r.returncode == 1
    assert "Paste from a into dom0 denied by policy" in r.stderr
    assert host_clipboard(gui) == "desktop-own"
    assert qvm_clipboard(gui).stdout == "11 bytes from a\n"
    # the positive control: a rule for a -> @adminvm lets the same paste through
    policy(gui, "qubes.ClipboardPaste  *  a  @adminvm  allow\n")
    r = qvm_clipboard(gui, "--paste")
    assert r.returncode == 0, r.stderr
    assert host_clipboard(gui) == "secret-of-a"
    assert qvm_clipboard(gui).stdout == "The global clipboard is empty\n"
