"""The vchan bridge's flow control with a slow reader, without QEMU: a host-side and a
guest-side bulkhead-vchan-bridge joined by one Unix socket (where QEMU's virtio-serial
port would be), a server in one side's directory and a client of its proxy in the
other's. The reader does not read for a while, so the writing side's bridge fills the
reader's socket and its write() returns EAGAIN; then everything must still arrive.

(A bridge that met EAGAIN kept the rest in its buffer without asking epoll for
EPOLLOUT: nobody wrote it out, no ACK went back, the sender's window stayed full and
the stream hung for ever. Seen as a `qvm-copy` from a VM qube to an ns qube that
stopped at 8 MiB when the receiving qube was slower than the VM.)"""
import os
import pathlib
import socket
import subprocess
import threading
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))
BRIDGE = BUILD / "src/driver/bulkhead-vchan-bridge"
NAME = "vchan.2.3.513.sock"
SIZE = 8 << 20


def wait_path(p, timeout=10):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if p.exists():
            return True
        time.sleep(0.01)
    return False


@pytest.fixture
def bridges(tmp_path):
    if not BRIDGE.exists():
        pytest.skip("bulkhead-vchan-bridge not built")
    hdir, gdir = tmp_path / "host", tmp_path / "guest"
    hdir.mkdir()
    gdir.mkdir()
    port = tmp_path / "port.sock"
    lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    lsock.bind(str(port))
    lsock.listen(1)
    lsock.settimeout(10)
    procs = []
    try:
        procs.append(subprocess.Popen([str(BRIDGE), "--dir", str(hdir), "--connect", str(port)],
                                      stderr=subprocess.PIPE))
        conn, _ = lsock.accept()
        procs.append(subprocess.Popen([str(BRIDGE), "--guest", "--dir", str(gdir), "--port-fd", str(conn.fileno())],
                                      pass_fds=(conn.fileno(),), stderr=subprocess.PIPE))
        conn.close()
        yield hdir, gdir, procs
    finally:
        for p in procs:
            p.kill()
            p.wait()
        lsock.close()


def transfer(server_dir, client_dir, server_sends, procs):
    """A server in server_dir, a client through the proxy in client_dir; the side that
    receives pauses now and then. Returns the bytes received."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(server_dir / NAME))
    srv.listen(1)
    assert wait_path(client_dir / NAME), "the listener was never announced to the other side"
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.connect(str(client_dir / NAME))
    srv.settimeout(10)
    peer, _ = srv.accept()
    writer, reader = (peer, cli) if server_sends else (cli, peer)
    data = os.urandom(1 << 20) * (SIZE >> 20)
    t = threading.Thread(target=lambda: (writer.sendall(data), writer.shutdown(socket.SHUT_WR)), daemon=True)
    t.start()
    # the reader is slow: it pauses before the first byte and after every MiB, so the
    # bridge's writes to it find its socket full (EAGAIN) again and again
    reader.settimeout(5)
    got = bytearray()
    try:
        while True:
            if len(got) % (1 << 20) < 65536:
                time.sleep(0.3)
            b = reader.recv(1 << 16)
            if not b:
                break
            got += b
    except socket.timeout:
        pass
    for s in (writer, reader, srv):
        s.close()
    for p in procs:
        assert p.poll() is None, p.stderr.read().decode()
    return bytes(got), data


@pytest.mark.parametrize("guest_sends", [True, False], ids=["guest-to-host", "host-to-guest"])
def test_slow_reader_gets_everything(bridges, guest_sends):
    hdir, gdir, procs = bridges
    # guest_sends: the server is in the guest's directory and writes (a VM qube's
    # qfile-agent to an ns qube); otherwise the server is on the host and writes
    got, data = transfer(gdir if guest_sends else hdir, hdir if guest_sends else gdir, True, procs)
    assert len(got) == len(data), f"the stream stopped after {len(got)} of {len(data)} bytes"
    assert got == data


def test_control_fast_reader(bridges):
    """Positive control: the same path with a reader that never waits moves all the data
    (so a failure above is the slow reader, not the set-up)."""
    hdir, gdir, procs = bridges
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(gdir / NAME))
    srv.listen(1)
    assert wait_path(hdir / NAME)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli.connect(str(hdir / NAME))
    peer, _ = srv.accept()
    peer.sendall(b"x" * 100000)
    peer.shutdown(socket.SHUT_WR)
    cli.settimeout(10)
    got = b""
    while len(got) < 100000:
        b = cli.recv(65536)
        if not b:
            break
        got += b
    assert got == b"x" * 100000
