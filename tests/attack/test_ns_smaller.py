"""Smaller openings a qube's root should not have: READ_IMPLIES_EXEC, packet and raw
sockets outside a netvm. Each is tried inside a qube as its root, with a positive
control that the same call with a harmless argument (or in a netvm) goes through."""
import pathlib as _pl
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, attack  # noqa: E402,F401

EPERM, EAFNOSUPPORT = 1, 97
READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE = 0x0400000, 0x0040000

PERSONALITY = """
for v in %r:
    r, e = sc(135, v)
    q, _ = sc(135, 0xffffffff)
    print(hex(v), r, e, hex(q & 0xffffffff))
    sc(135, 0)
""" % ([READ_IMPLIES_EXEC, READ_IMPLIES_EXEC | 0x80000000, READ_IMPLIES_EXEC | (1 << 32), 0xfffffffe,
        0x7fffffff, ADDR_NO_RANDOMIZE, 0xffffffff, 0x1ffffffff],)


def test_read_implies_exec_denied(ns_env):
    q = ns_env.qube("pe", private=False)
    q.start()
    r = attack(q, PERSONALITY)
    assert r.returncode == 0, r.stderr
    res = {int(v, 16): (int(a), int(b), int(c, 16)) for v, a, b, c in (line.split() for line in r.stdout.splitlines())}
    for v in (READ_IMPLIES_EXEC, READ_IMPLIES_EXEC | 0x80000000, READ_IMPLIES_EXEC | (1 << 32), 0xfffffffe, 0x7fffffff):
        assert res[v][:2] == (-1, EPERM), (hex(v), res[v])
        assert not res[v][2] & READ_IMPLIES_EXEC, (hex(v), res[v])
    # Positive controls: other personas are set (the call ran), and the query works.
    assert res[ADDR_NO_RANDOMIZE][0] == 0 and res[ADDR_NO_RANDOMIZE][2] == ADDR_NO_RANDOMIZE
    assert res[0xffffffff][0] == 0 and res[0x1ffffffff][0] == 0
    # setarch -X (READ_IMPLIES_EXEC) fails; setarch -R (no randomisation) works.
    r = q.sh("setarch -X true; echo X=$?; setarch -R true; echo R=$?")
    assert "X=0" not in r.stdout and "R=0" in r.stdout, (r.stdout, r.stderr)


RAW = """
for fam, ty, proto in ((17, 3, 0x300), (17, 2, 0x300), (2, 3, 1), (10, 3 | 0x80000, 58), (2, 10, 0), (2, 3 | 0x800, 255)):
    r, e = sc(41, fam, ty, proto)
    print(fam, ty, "ok" if r >= 0 else "fail", e)
for fam, ty, proto in ((2, 2, 0), (10, 1, 0), (16, 3, 0), (16, 2, 0), (1, 5, 0)):
    r, e = sc(41, fam, ty, proto)
    print(fam, ty, "ok" if r >= 0 else "fail", e)
"""


def _raw(q):
    r = attack(q, RAW)
    assert r.returncode == 0, r.stderr
    return [line.split() for line in r.stdout.splitlines()]


def test_packet_and_raw_sockets_only_in_netvms(ns_env):
    app = ns_env.qube("rawapp", private=False)
    net = ns_env.qube("rawnet", private=False, extra=("--provides-network",))
    app.start()
    net.start()
    a, n = _raw(app), _raw(net)
    for fam, ty, res, err in a[:6]:
        want = EAFNOSUPPORT if fam == "17" else EPERM
        assert res == "fail" and int(err) == want, (fam, ty, res, err)
    # Positive controls: UDP, TCP, netlink (SOCK_RAW and SOCK_DGRAM) and Unix sockets
    # work in an app qube; a netvm opens the very sockets the app qube was refused.
    assert all(res == "ok" for _, _, res, _ in a[6:]), a
    assert all(res == "ok" for _, _, res, _ in n), n
