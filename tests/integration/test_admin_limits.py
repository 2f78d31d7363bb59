"""The Admin API's documented limits (docs/admin.md), each driven to the bound and one
past it: at most 4096 connections at once, and an admin.Events subscriber that does
not read is dropped once its queue passes 8 MiB, without anyone else waiting for it."""
import os
import resource
import socket
import threading
import time

import pytest

from admin_fixtures import daemon, raw_call  # noqa: F401

MAX_CONNS = 4096
EVENT_QUEUE_MAX = 8 << 20


def open_fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def answer_or_hangup(sock_path, data):
    """The reply, or b"" when the daemon hangs up unanswered (EOF, reset, or a broken
    pipe while still sending: it closed without reading)."""
    try:
        return raw_call(sock_path, data, timeout=30)
    except (ConnectionResetError, BrokenPipeError):
        return b""


def test_connection_cap(daemon):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = MAX_CONNS + 256
    if hard < need:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} < {need}: cannot hold {MAX_CONNS} connections")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    base = open_fds(daemon.proc.pid)
    idle = []
    try:
        # 4096 clients that have not finished their request (the daemon keeps each for
        # its 10 s request deadline): all accepted
        for _ in range(MAX_CONNS):
            s = socket.socket(socket.AF_UNIX)
            s.connect(daemon.sock)
            s.sendall(b"admin.vm.List+ dom0 na")
            idle.append(s)
        deadline = time.monotonic() + 60
        while open_fds(daemon.proc.pid) < base + MAX_CONNS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert open_fds(daemon.proc.pid) >= base + MAX_CONNS, "the daemon did not take 4096 connections"
        # the 4097th is closed at once, unanswered
        t = time.monotonic()
        assert answer_or_hangup(daemon.sock, b"admin.vm.List+ dom0 name dom0\0") == b""
        # closed, not kept waiting for a slot: one frees within the others' 10 s request
        # deadline, and a connection that waited for it would have been answered
        assert time.monotonic() - t < 9
        # one slot free again: served
        idle.pop().close()
        deadline = time.monotonic() + 60
        while open_fds(daemon.proc.pid) >= base + MAX_CONNS and time.monotonic() < deadline:
            time.sleep(0.05)
        assert raw_call(daemon.sock, b"admin.vm.List+ dom0 name dom0\0", timeout=60).startswith(b"0\0")
    finally:
        for s in idle:
            s.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    # and all of them go: the daemon is back to its own descriptors
    deadline = time.monotonic() + 60
    while open_fds(daemon.proc.pid) > base + 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert open_fds(daemon.proc.pid) <= base + 8


def subscribe(daemon, rcvbuf=None):
    s = socket.socket(socket.AF_UNIX)
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.connect(daemon.sock)
    s.sendall(b"admin.Events+ dom0 name dom0\0")
    s.shutdown(socket.SHUT_WR)
    return s


def test_events_subscriber_that_does_not_read_is_dropped(daemon):
    daemon.call("admin.vm.feature.Set+big", "work", "x")
    stalled = subscribe(daemon, rcvbuf=4096)
    # control: a subscriber that reads gets every event and is never dropped
    reader = subscribe(daemon)
    got = bytearray()
    done = threading.Event()

    def read_all():
        reader.settimeout(60)
        try:
            while not done.is_set():
                chunk = reader.recv(1 << 20)
                if not chunk:
                    break
                got.extend(chunk)
        except OSError:
            pass

    th = threading.Thread(target=read_all)
    th.start()
    # each feature change of a 4000-byte value carries value and oldvalue: ~8 KiB an event
    value = lambda i: (str(i) * 4000)[:4000]  # noqa: E731
    sent = 0
    n = 0
    t0 = time.monotonic()
    while sent < EVENT_QUEUE_MAX + (4 << 20):
        daemon.call("admin.vm.feature.Set+big", "work", value(n))
        sent += 2 * 4000
        n += 1
    took = time.monotonic() - t0
    # the writer was never held up by the stalled subscriber (every call answered; they
    # took their own time only)
    assert took < 120, took
    # the stalled subscriber was dropped: draining it ends in EOF, well short of all
    stalled.settimeout(10)
    drained = 0
    while True:
        chunk = stalled.recv(1 << 20)
        if not chunk:
            break
        drained += len(chunk)
    assert drained < sent, (drained, sent)
    assert drained <= EVENT_QUEUE_MAX + (1 << 20), drained  # queue bound + socket buffers
    # the reader saw the last event: nobody was dropped but the one that did not read
    last = value(n - 1).encode()
    deadline = time.monotonic() + 30
    while last not in got[-20000:] and time.monotonic() < deadline:
        time.sleep(0.1)
    done.set()
    reader.shutdown(socket.SHUT_RDWR)
    th.join(10)
    reader.close()
    stalled.close()
    assert last in got, "the reading subscriber lost events"
    assert got.count(b"domain-feature-set:big") >= n
