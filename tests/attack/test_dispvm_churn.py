"""bulkheadd stays responsive while disposables start: a disposable's start (which
other qubes' calls cause at will) runs beside bulkheadd's event loop, not in it, so a
quiet qube's Admin API request (qvm-ls) is answered while one boots. The boot is made
slow on purpose: the in-qube programs come from a copy whose qrexec-agent sleeps 3 s
before it starts (the qube is ready only once its agent is)."""
import os
import pathlib
import shutil
import sys
import threading
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import BUILD, engine_daemon  # noqa: E402,F401
from waiting import wait_for  # noqa: E402


@pytest.fixture
def slow_agent(tmp_path, monkeypatch):
    src = BUILD / "src/agent"
    dst = tmp_path / "libexec"
    dst.mkdir()
    for f in src.iterdir():
        if f.name.endswith(".p"):
            continue
        (shutil.copytree if f.is_dir() else shutil.copy2)(f, dst / f.name)
    os.rename(dst / "qrexec-agent", dst / "qrexec-agent.real")
    (dst / "qrexec-agent").write_text('#!/bin/sh\nsleep 3\nexec /usr/lib/bulkhead/qrexec-agent.real "$@"\n')
    os.chmod(dst / "qrexec-agent", 0o755)
    os.chmod(dst, 0o755)
    monkeypatch.setenv("BULKHEAD_LIBEXEC", str(dst))


def test_qvm_ls_answered_while_a_disposable_boots(slow_agent, engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    name = d.call("admin.vm.CreateDisposable", "dvmt").strip()
    res = {}

    def start():
        t0 = time.monotonic()
        res["r"] = d.call("admin.vm.Start", name)
        res["took"] = time.monotonic() - t0

    t = threading.Thread(target=start)
    t.start()
    # the boot is under way (its init runs; its agent sleeps), however slowly it got here
    assert wait_for(lambda: (d.runtime / "qubes" / name / "init.pid").exists())
    listing = d.call("admin.vm.List", "dom0")
    t.join(120)
    # positive control: the start really took the agent's 3 s, and it did succeed
    assert res["took"] >= 2.5, res
    assert f"{name} class=DispVM state=Running" in d.call("admin.vm.List", name)
    assert "a class=AppVM" in listing
    # answered while the disposable booted, not after: it was still starting (in line,
    # the listing came once the start was over: Running). Not a time bound: a slow
    # machine makes the boot slower too.
    assert f"{name} class=DispVM state=Transient" in listing, listing


def test_kill_during_a_disposable_boot_leaves_nothing(slow_agent, engine_daemon):
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    name = d.call("admin.vm.CreateDisposable", "dvmt").strip()
    res = {}

    def start():
        try:
            res["r"] = d.call("admin.vm.Start", name)
        except Exception as e:  # noqa: BLE001 - the start is expected to fail
            res["e"] = e

    t = threading.Thread(target=start)
    t.start()
    rt = d.runtime / "qubes" / name
    assert wait_for(lambda: (rt / "init.pid").exists())  # positive control: it was booting
    init = int((rt / "init.pid").read_text().split()[0])
    d.call("admin.vm.Kill", name)
    t.join(120)
    assert "e" in res, res  # the parked Start learns that the boot was cancelled
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (os.path.exists(f"/proc/{init}") or rt.exists()):
        time.sleep(0.1)
    assert not os.path.exists(f"/proc/{init}") and not rt.exists()
    assert "a class=AppVM" in d.call("admin.vm.List", "dom0")


@pytest.fixture
def slow_qrexec_daemon(tmp_path, monkeypatch):
    """qube-side boot at full speed, but the host's qrexec-daemon for each qube starts
    3 s late (a wrapper that sleeps, then execs the real one with its ready fd)."""
    real = BUILD / "src/qrexec/qrexec-daemon"
    w = tmp_path / "slow-qrexec-daemon"
    w.write_text(f'#!/bin/sh\nsleep 3\nexec {real} "$@"\n')
    os.chmod(w, 0o755)
    monkeypatch.setenv("BULKHEAD_QREXEC_DAEMON", str(w))


def test_qvm_ls_answered_while_a_disposables_qrexec_daemon_starts(slow_qrexec_daemon, engine_daemon):
    """The wait for a disposable's qrexec-daemon to be ready runs beside the loop: a
    listing made meanwhile is answered and shows the disposable still Transient (in
    line, the loop answered only once the start was over: Running)."""
    d = engine_daemon
    d.call("admin.vm.Create.AppVM+host", payload="name=dvmt label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    name = d.call("admin.vm.CreateDisposable", "dvmt").strip()
    res = {}

    def start():
        t0 = time.monotonic()
        res["r"] = d.call("admin.vm.Start", name)
        res["took"] = time.monotonic() - t0

    t = threading.Thread(target=start)
    t.start()
    rt = d.runtime / "qubes" / name
    wait_for(lambda: (rt / "init.pid").exists())
    # The listing is asked while the start waits for the late daemon; polled, not one
    # look after a fixed sleep (a slow machine's listing may come late): with the wait in
    # line, every listing would be answered only once the start was over (Running, the
    # thread done), so this loop would end without ever seeing Transient.
    while True:
        listing = d.call("admin.vm.List", name)
        if "state=Transient" in listing or not t.is_alive():
            break
        time.sleep(0.1)
    t.join(120)
    # positive control: the start waited for the slow daemon, and it did succeed
    assert res["took"] >= 2.5, res
    assert f"{name} class=DispVM state=Running" in d.call("admin.vm.List", name)
    assert f"{name} class=DispVM state=Transient" in listing, listing
    # and the qube is usable through its (late) daemon
    assert d.call("admin.vm.CurrentState", name).endswith("power_state=Running")


PTRACE_SEIZE = 0x4206


def test_qvm_ls_answered_while_a_qube_is_killed(engine_daemon):
    """A Kill's engine work (SIGKILL, waiting for the qube's processes to be gone,
    unmounting, removing cgroups) runs beside the loop. Made slow on purpose: this test
    (host root) ptrace-seizes a process of the qube and reaps it only 3 s after the Kill,
    and the qube's PID namespace cannot end before that. A listing made meanwhile is
    answered and shows the qube Dying (in line: answered after the kill, Halted)."""
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    d = engine_daemon
    d.call("admin.vm.Start", "a")
    init = int((d.runtime / "qubes/a/init.pid").read_text().split()[0])
    kids = open(f"/proc/{init}/task/{init}/children").read().split()
    assert kids, "the qube's init has no child to hold"
    victim = int(kids[0])
    assert libc.ptrace(PTRACE_SEIZE, victim, None, None) == 0, ctypes.get_errno()
    released = threading.Event()

    def victim_killed():  # a zombie now, which only we (its tracer) can reap
        return open(f"/proc/{victim}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"

    def release():
        wait_for(victim_killed)  # the Kill is under way: 3 s from then, however late it came
        time.sleep(3)
        os.waitpid(victim, os.WNOHANG | 0x40000000)  # __WALL: reap the traced child
        released.set()

    res = {}

    def kill():
        t0 = time.monotonic()
        res["r"] = d.call("admin.vm.Kill", "a")
        res["took"] = time.monotonic() - t0

    r = threading.Thread(target=release)
    k = threading.Thread(target=kill)
    r.start()
    k.start()
    # listings made while the Kill waits are answered, and show the qube Dying (in line,
    # the first came only after the kill: Halted)
    listing = wait_for(lambda: (lambda ls: ls if "state=Dying" in ls or released.is_set() else None)(
        d.call("admin.vm.List", "a")))
    k.join(120)
    r.join(120)
    # positive control: the kill really waited for the held process, and it worked
    assert res["took"] >= 2.0, res
    assert d.call("admin.vm.CurrentState", "a").endswith("power_state=Halted")
    assert "a class=AppVM state=Dying" in listing, listing
    # and the qube starts again
    d.call("admin.vm.Start", "a")
    assert d.call("admin.vm.CurrentState", "a").endswith("power_state=Running")
