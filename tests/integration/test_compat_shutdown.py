"""admin.vm.Shutdown with wait answers only after the qube is Halted and cleaned up (as
qubesd: after domain-shutdown), and a Start during Halting waits for the halt and then
starts the qube. The sequences are the ones Qubes' client library runs:
vm.shutdown(wait=True); vm.remove / vm.start().

A process in the qube that ignores SIGTERM keeps the qube Halting for init's grace
period (seconds), so an early reply is seen, not guessed."""
import re
import socket
import subprocess
import threading
import time

import pytest

from admin_fixtures import AdminError, engine_daemon, state_of, wait_state  # noqa: F401
from qrexec_fixtures import bin_path
from test_lifecycle import events_socket, read_until


def slow_to_stop(d, name):
    """Starts name with a process that ignores TERM: init waits its grace, then kills."""
    d.call("admin.vm.Start", name)
    r = subprocess.run([bin_path("qvm-run"), "-p", "--user", "root", name,
                        "rm -f /tmp/deaf; setsid sh -c 'trap \"\" TERM; touch /tmp/deaf; while :; do sleep 1; done' "
                        ">/dev/null 2>&1 </dev/null & while [ ! -e /tmp/deaf ]; do sleep 0.05; done; echo ok"],
                       env=d.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "ok\n", r.stderr


def test_shutdown_wait_then_remove(engine_daemon):
    d = engine_daemon
    slow_to_stop(d, "a")
    ev = events_socket(d, "a")
    read_until(ev, b"connection-established")
    t0 = time.time()
    assert d.raw(b"admin.vm.Shutdown+wait dom0 name a\0", timeout=120) == b"0\0"
    took = time.time() - t0
    # Positive control: the qube really was slow to stop, so an early reply would show.
    assert took > 1.0, took
    assert state_of(d, "a") == "Halted"
    # domain-shutdown went out before the reply (the stream carries it already).
    buf = read_until(ev, b"domain-shutdown\0", timeout=5)
    assert b"\0a\0domain-pre-shutdown\0force\0False\0" in buf
    assert b"\0a\0domain-stopped\0" in buf and b"\0a\0domain-shutdown\0" in buf
    assert buf.index(b"domain-stopped") < buf.index(b"domain-shutdown")
    ev.close()
    d.call("admin.vm.Remove", "a")               # no QubesVMNotHaltedError race
    assert "a class=" not in d.call("admin.vm.List")


def test_force_wait_and_start_during_halting(engine_daemon):
    d = engine_daemon
    slow_to_stop(d, "a")
    d.call("admin.vm.Shutdown+force", "a")        # no wait: answers at once
    assert state_of(d, "a") == "Halting"          # control: the start below meets Halting
    assert d.call("admin.vm.Start", "a") == ""   # waits for the halt, then starts
    assert state_of(d, "a") == "Running"
    slow_to_stop(d, "a")
    assert d.raw(b"admin.vm.Shutdown+force+wait dom0 name a\0", timeout=120) == b"0\0"
    assert state_of(d, "a") == "Halted"
    d.call("admin.vm.Start", "a")
    assert state_of(d, "a") == "Running"


def test_shutdown_wait_client_gone_and_bad_args(engine_daemon):
    d = engine_daemon
    slow_to_stop(d, "a")
    # A waiting client that goes away costs nothing; the daemon still serves.
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.sendall(b"admin.vm.Shutdown+wait dom0 name a\0")
    s.shutdown(socket.SHUT_WR)
    s.close()
    assert wait_state(d, "a", "Halted", timeout=60)
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.Shutdown+wait", "a")
    assert (e.value.exc_type, e.value.msg) == ("QubesVMNotStartedError", "Domain is powered off: 'a'")
    with pytest.raises(AdminError) as e:
        d.call("admin.vm.Shutdown+later", "a")
    assert e.value.exc_type == "PermissionDenied"


def test_two_waiters_one_halt(engine_daemon):
    d = engine_daemon
    slow_to_stop(d, "a")
    out = []
    th = [threading.Thread(target=lambda: out.append(d.raw(b"admin.vm.Shutdown+wait dom0 name a\0", timeout=120)))
          for _ in range(2)]
    th[0].start()
    time.sleep(0.3)
    th[1].start()
    for t in th:
        t.join(120)
    assert out == [b"0\0", b"0\0"]
    assert state_of(d, "a") == "Halted"


def _preloads(d):
    out = []
    for line in d.call("admin.vm.List").splitlines():
        name = line.split()[0]
        if "class=DispVM" in line:
            try:
                d.call("admin.vm.feature.Get+preload-dispvm", name)
                out.append((name, line.split("state=")[1].split()[0]))
            except AdminError:
                pass
    return out


def test_shutdown_all_wait_with_preloaded_disposables(engine_daemon):
    """qvm-shutdown --all --wait with a netvm chain and preloaded disposables on it: every
    qube halts, clients before their netvms, and the pool is not refilled meanwhile."""
    d = engine_daemon
    d.call("admin.vm.property.Set+provides_network", "a", "True")        # sys-net
    d.call("admin.vm.Create.AppVM+host", payload="name=fw label=green")
    d.call("admin.vm.property.Set+provides_network", "fw", "True")       # sys-firewall
    d.call("admin.vm.property.Set+netvm", "fw", "a")
    d.call("admin.vm.Create.AppVM+host", payload="name=dvm label=red")
    d.call("admin.vm.property.Set+netvm", "dvm", "fw")
    d.call("admin.vm.property.Set+netvm", "b", "fw")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvm", "True")
    d.call("admin.vm.feature.Set+preload-dispvm-max", "dvm", "2")
    d.call("admin.vm.Start", "b")
    deadline = time.time() + 90
    while len([p for p in _preloads(d) if p[1] == "Running"]) < 2 and time.time() < deadline:
        time.sleep(0.2)
    assert len(_preloads(d)) == 2                       # control: the pool is full
    ev = events_socket(d)
    read_until(ev, b"connection-established")
    r = d.tool("qvm-shutdown", "--all", "--wait", "--timeout", "60")
    assert r.returncode == 0, r.stderr
    assert state_of(d, "a") == state_of(d, "fw") == state_of(d, "b") == "Halted"
    time.sleep(2)                                        # several preload ticks
    assert _preloads(d) == []                            # not refilled while shutting down
    for line in d.call("admin.vm.List").splitlines():
        assert "state=Halted" in line or "class=AdminVM" in line, line
    ev.settimeout(2)
    buf = b""
    try:
        while True:
            chunk = ev.recv(65536)
            if not chunk:
                break
            buf += chunk
    except socket.timeout:
        pass
    ev.close()
    halted = [m.decode() for m in re.findall(rb"(?:^|\0)1\0([^\0]*)\0domain-shutdown\0", buf)]
    # No pool left to refill while the fixture kills what runs.
    d.call("admin.vm.feature.Remove+preload-dispvm-max", "dvm")
    assert halted.index("b") < halted.index("fw") < halted.index("a"), halted
