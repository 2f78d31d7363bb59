"""qids for the daemons and engines a test starts, apart from every other test run on
this host (docs/architecture.md, "Host identities").

A qid is a qube's host identity: its UID range, its qrexec and procfs UIDs. bulkheadd
claims each qid it holds on the host (src/admin/qid_claim.h: a lock on byte <qid> of
/run/bulkhead-qids) and skips qids held elsewhere, so two daemons never share one. What
is left to the tests:

- Each Daemon gets a base of its own (--qid-base) in a slot of SLOT qids: the daemons of
  one pytest process take successive slots from a random start, so two runs side by side
  (separate pytest processes) practically never meet, and a daemon that stops and starts
  again finds its stored qids free (a daemon refuses to start when another holds one).
- An engine or qrexec-daemon a test starts directly (bulkhead-ns --qid, qrexec-daemon
  --domid) is given a qid that this process claims with the same lock (take, claim), so
  that no daemon hands it to a qube meanwhile and no other run uses it. The qrexec test
  world (qrexec_fixtures.World) claims 256 qids and maps the small numbers its tests
  name (world.qube("work", 5)) into them: world.qid(5).
"""
import fcntl
import os
import random
import struct

CLAIMS = "/run/bulkhead-qids"
SLOT = 64            # qids per slot: far more than the qubes one test's daemon makes (defaults: 9)
FIRST_SLOT = 16      # qids below 1024 stay for daemons started without a base (make run)
QID_MAX = 65518      # BH_QID_MAX (src/lib/host_ids.h)
LAST_SLOT = (QID_MAX + 1) // SLOT - 1   # the last whole slot below it

_next = random.Random(os.getpid() ^ int.from_bytes(os.urandom(4), "little")).randrange(FIRST_SLOT, LAST_SLOT + 1)
_fd = None


def next_base():
    """The first qid of a fresh slot, for one daemon: slot * 64 + 1, so that the slot's
    first 62 qids give addresses 10.137.x.y with y neither 0 nor 255 (Qubes' rule puts
    qids above 255 in the third byte; a qube at .0 works, but no test needs to find out)."""
    global _next
    base = _next * SLOT + 1
    _next = _next + 1 if _next < LAST_SLOT else FIRST_SLOT
    return base


def _flock(kind, start, n):
    """struct flock (x86-64 and arm64 layout) for bytes [start, start + n)."""
    return struct.pack("hh4xqqi4x", kind, os.SEEK_SET, start, n, 0)


def _claims_fd():
    global _fd
    if _fd is None:
        _fd = os.open(CLAIMS, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    return _fd


def held_elsewhere(qid):
    """True when a daemon or another process holds qid (this process's claims excepted).
    Open file description locks throughout: a classic POSIX lock would be dropped with
    every claim of this process as soon as any fd of the file is closed."""
    r = fcntl.fcntl(_claims_fd(), fcntl.F_OFD_GETLK, _flock(fcntl.F_WRLCK, qid, 1))
    return struct.unpack("hh4xqqi4x", r)[0] != fcntl.F_UNLCK


def claim(n):
    """n consecutive qids of a fresh slot, claimed for this process until it ends (the
    lock goes with it): for bulkhead-ns --qid / qrexec-daemon --domid. Returns the first."""
    fd = _claims_fd()
    for _ in range(LAST_SLOT - FIRST_SLOT + 1):
        base = next_base()
        if base + n - 1 > QID_MAX:
            continue
        try:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _flock(fcntl.F_WRLCK, base, n))
            return base
        except OSError:
            continue
    raise RuntimeError("no free qid slot on this host")


def release(first, n):
    """Gives back a claim(n) that returned first."""
    fcntl.fcntl(_claims_fd(), fcntl.F_OFD_SETLK, _flock(fcntl.F_UNLCK, first, n))


QUBE_UID_FIRST = 1 << 20   # src/lib/host_ids.h: qube qid's UIDs start at 2^20 + 2^16 * qid
QUBE_UID_RANGE = 1 << 16
_pool = []   # [next, end) of this process's claimed slot for take()


def take():
    """One qid of this process's own claimed slot, for one engine qube or qrexec-daemon
    a test starts directly. Handed out in turn, round the slot (62 qids: more than one
    test keeps alive at once); a fresh slot is claimed the first time."""
    if not _pool:
        first = claim(SLOT - 2)
        _pool[:] = [first, first, first + SLOT - 2]
    qid = _pool[1]
    _pool[1] = qid + 1 if qid + 1 < _pool[2] else _pool[0]
    return qid


def uid_base(qid):
    """The host UID range bulkheadd gives qube qid (engine_glue.c)."""
    return QUBE_UID_FIRST + qid * QUBE_UID_RANGE
