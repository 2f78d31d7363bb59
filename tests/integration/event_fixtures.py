"""admin.Events as a test reads it: a subscription to every qube's events (returned once
the daemon says the stream is established), reading until a marker, and the records
split into (subject, event, [key, value, ...])."""
import socket
import time


def subscribe(d):
    """admin.Events of every qube, once the daemon says the stream is established."""
    s = socket.socket(socket.AF_UNIX)
    s.connect(d.sock)
    s.sendall(b"admin.Events+ dom0 name dom0\0")
    s.shutdown(socket.SHUT_WR)
    s.settimeout(10)
    buf = b""
    while b"connection-established" not in buf:
        buf += s.recv(65536)
    return s


def drain(s, needle, count=1, timeout=10):
    """What the stream sends until `needle` was seen `count` times (or timeout)."""
    buf, deadline = b"", time.time() + timeout
    while buf.count(needle) < count and time.time() < deadline:
        buf += s.recv(65536)
    return buf


def records(buf, subject=None, prefix=b""):
    """(subject, event, [key, value, ...]) of each event record in buf whose event name
    starts with prefix (and of that subject, if given). A record is
    1 NUL SUBJECT NUL EVENT NUL (KEY NUL VALUE NUL)* NUL: read field by field, since the
    subject (b"" for the system) and values may be empty, keys never are."""
    out, f, i = [], buf.split(b"\0"), 0
    while i + 2 < len(f):
        if f[i] != b"1":
            i += 1
            continue
        subj, ev, kv, i = f[i + 1], f[i + 2], [], i + 3
        while i + 1 < len(f) and f[i]:
            kv += [f[i], f[i + 1]]
            i += 2
        i += 1
        if ev.startswith(prefix) and (subject is None or subj == subject):
            out.append((subj, ev, kv))
    return out
