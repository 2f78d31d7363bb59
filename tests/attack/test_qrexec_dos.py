"""One qube's qrexec calls must not cut another qube off or load the host at will: what
a call holds in the target's vchan dir is released when the call ends or times out,
and calls are rate-limited per source qube before any host work (fork, policy, Admin
API). The caller is a hostile agent speaking raw protocol to the real qrexec-daemon."""
import os
import pathlib
import re
import struct
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from qrexec_fixtures import MSG, bin_path, trigger3, world  # noqa: E402,F401
from test_qrexec_daemon import FakeAgent  # noqa: E402


def evil(world, *extra, name="evil", qid=7):
    from qrexec_fixtures import Qube
    q = Qube(world, name, qid)
    world.qubes[name] = q
    fa = FakeAgent(q, 3)
    r, w = os.pipe()
    d = world.spawn([bin_path("qrexec-daemon"), "--name", name, "--domid", str(q.qid), "--runtime",
                     str(world.runtime), "--ready-fd", str(w), "--startup-timeout", "5", "--test-allow",
                     str(world.allow), *extra], pass_fds=(w,), log=f"daemon-{name}")
    os.close(w)
    fa.accept()
    assert os.read(r, 1) == b"1"
    os.close(r)
    return q, fa, d


def test_calls_the_caller_never_joins_leave_nothing_in_the_target(world):
    world.service("test.Wait", "#!/bin/sh\ncat >/dev/null\n")
    world.allow_call("test.Wait", "evil", "work")
    work = world.qube("work", 5)
    before = set(os.listdir(work.vchan))
    q, fa, d = evil(world, "--call-timeout", "2")
    n = 10
    fa.conn.sendall(b"".join(trigger3("work", f"H{i}", "test.Wait") for i in range(n)))
    # The daemon binds each call's name in work's dir and asks us (the caller) to join;
    # we never do.
    got = [fa.recv_msg(timeout=20)[0] for _ in range(n)]
    assert got == [MSG["SERVICE_CONNECT"]] * n  # positive control: every call reached the target
    deadline = time.time() + 60
    while time.time() < deadline:
        left = set(os.listdir(work.vchan)) - before
        if not left:
            break
        time.sleep(0.2)
    assert not left, f"names left in the target's vchan dir: {sorted(left)}"
    # dom0's calls into work still work
    assert world.client("work", "user:echo served").stdout == b"served\n"


def test_calls_are_rate_limited_per_source(world):
    world.qube("work", 5)
    q, fa, d = evil(world)
    n = 300
    fa.conn.sendall(b"".join(trigger3("work", f"R{i}", "test.NoRule") for i in range(n)))
    got = [fa.recv_msg(timeout=60)[0] for _ in range(n)]
    assert set(got) == {MSG["REFUSED"]}
    time.sleep(1)
    log = world.log_text("daemon-evil")
    evaluated = len(re.findall(r"call evil -> work test\.NoRule denied", log))
    # positive control: the first calls were evaluated (and denied by policy) ...
    assert evaluated >= 10, log[-2000:]
    # ... the rest refused before any host work: a burst of 3 s at 10 calls/s, plus
    # what refilled while they were handled
    assert evaluated <= 45, evaluated
    assert "over the call rate" in log
    # another qube's calls are unaffected (its own daemon, its own bucket)
    assert world.client("work", "user:echo served").stdout == b"served\n"
