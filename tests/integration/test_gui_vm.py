"""The seamless GUI with a VM qube (virt_mode pvh; TCG here, KVM where it opens): its
GUI daemon reaches the guest's gui-agent over the mirrored vchan port as for an ns
qube; the window pixels, which cannot travel as a memfd through the virtio-serial
bridge, come inline (PIXELS). Its windows appear framed in its label colour with the
guest's own pixels, beside an ns qube's, and follow what the guest draws."""
import os

import pytest

from admin_fixtures import engine_daemon  # noqa: F401
from gui_fixtures import LABEL_COLOURS, GuiSession, frame_is, host_display  # noqa: F401
from vm_fixtures import SLOW_BRIDGE, start, vm_premises
from waiting import wait_for


def test_a_vm_qubes_windows_on_the_desktop(engine_daemon, host_display):
    why = vm_premises()
    if why:
        pytest.skip(why)
    d = engine_daemon
    for k, v in (("virt_mode", "pvh"), ("memory", "400"), ("qrexec_timeout", "240"), ("kernelopts", SLOW_BRIDGE)):
        d.call(f"admin.vm.property.Set+{k}", "a", v)
    assert start(d, "a") == ""
    s = GuiSession(d, host_display)
    try:
        assert s.qvm_run("b", "true").returncode == 0
        s.start()
        for q in ("a", "b"):
            s.wait_gui(q, timeout=120)
        s.spawn("a", "xterm -T vm-term -geometry 40x8+20+20")
        s.spawn("b", "xterm -T ns-term -geometry 40x8+400+300")
        host = host_display
        wa, wb = host.find_window("[a] vm-term", timeout=120), host.find_window("[b] ns-term")
        wait_for(lambda: (lambda shot: frame_is(shot, host.geometry(wa), LABEL_COLOURS["red"])[0] and
                          frame_is(shot, host.geometry(wb), LABEL_COLOURS["blue"])[0])(host.screenshot()),
                 step=0.2, timeout=120)
        x, y, w, h = host.geometry(wa)
        # xterm's own white background, drawn in the guest (not a blank buffer)
        assert wait_for(lambda: host.pixel(host.screenshot(), x + w // 2, y + h - 6) == 0xffffff, timeout=60)
        # the guest draws again (a second window, all green): the host follows
        s.spawn("a", "xterm -T vm-green -bg green -geometry 20x4+300+20")
        wk = host.find_window("[a] vm-green", timeout=120)
        kx, ky, kw, kh = host.geometry(wk)
        assert wait_for(lambda: host.pixel(host.screenshot(), kx + kw // 2, ky + kh // 2) == 0x00ff00, timeout=60)
        r = s.qvm_run("-p", "a", "uname -r")
        assert r.stdout.decode().strip() != os.uname().release  # it is a VM
    finally:
        s.stop()
