"""Shared bits of the ns attack tests: the fixtures, and a qube ready to attack from."""
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, make_root, BUILD  # noqa: E402,F401

# Python inside the qube (host /usr): run attack code as the qube's root.
PRELUDE = """
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def sc(nr, *a):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    return r, ctypes.get_errno()
"""


def attack(q, code, **kw):
    r = q.py(PRELUDE + code, **kw)
    return r
