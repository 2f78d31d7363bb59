"""The documented bound on a qube's pending calls (docs/qrexec.md: at most 64 per qube,
more are refused at once), with calls that really stay pending: policy allows them and
the target's agent (hostile, or just slow) never answers. The flood test elsewhere only
sends calls that policy denies at once, which never occupy a slot."""
import os
import pathlib
import sys
import time

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from qrexec_fixtures import MSG, trigger3, world  # noqa: E402,F401
from test_qrexec_daemon import FakeAgent, start_daemon  # noqa: E402

CAP = 64


def fake_qube(world, name, qid):
    from qrexec_fixtures import Qube
    q = Qube(world, name, qid)
    world.qubes[name] = q
    fa = FakeAgent(q)
    d, ready = start_daemon(world, q, "--call-timeout", "8")
    fa.accept()
    assert os.read(ready, 1) == b"1"
    os.close(ready)
    return q, fa, d


def answers(fa, within):
    """Every message the daemon sends the agent in the next `within` seconds."""
    got, end = [], time.monotonic() + within
    while time.monotonic() < end:
        try:
            got.append(fa.recv_msg(timeout=max(0.05, end - time.monotonic())))
        except (TimeoutError, OSError):
            break
    return got


@pytest.mark.parametrize("cap", [CAP, 16])
def test_pending_calls_are_capped_per_qube(world, monkeypatch, cap):
    # The call-rate bucket (another bound, test_qrexec_dos.py) would refuse a burst of 70
    # first: lift it for these daemons so the pending-call cap is what is measured.
    monkeypatch.setenv("BULKHEAD_QREXEC_CALL_RATE", "10000")
    if cap != CAP:  # the runtime knob (docs/ns-engine.md's threat table)
        monkeypatch.setenv("BULKHEAD_QREXEC_MAX_PENDING", str(cap))
    world.allow_call("test.Slow", "evil", "sink")
    sink_q, sink, sink_d = fake_qube(world, "sink", 8)   # accepts calls, never runs them
    evil_q, evil, evil_d = fake_qube(world, "evil", 7)
    extra = 6
    evil.conn.sendall(b"".join(trigger3("sink", f"P{i}", "test.Slow") for i in range(cap + extra)))
    got = answers(evil, 3)
    ident = lambda body, off=0: body[off:off + 32].rstrip(b"\0").decode()  # noqa: E731
    refused = [ident(body) for t, body in got if t == MSG["REFUSED"]]
    connect = sorted((ident(body, 8) for t, body in got if t == MSG["SERVICE_CONNECT"]), key=lambda x: int(x[1:]))
    # exactly the calls over the cap are refused at once; the first 64 are under way
    # (policy allowed them, the daemon waits for their data connection)
    assert refused == [f"P{i}" for i in range(cap, cap + extra)], [(hex(t), b[:40]) for t, b in got]
    assert connect == [f"P{i}" for i in range(cap)], connect
    # they are really pending on the target side too: its agent was asked to run each
    asked = answers(sink, 2)
    assert len(asked) == cap and all(t == MSG["EXEC"] for t, _ in asked), [hex(t) for t, _ in asked]
    assert "too many pending calls" in world.log_text("daemon-evil")
    # the cap is per qube and frees with the calls: once the pending ones have timed out
    # (--call-timeout 8), a new call is taken (pending again) instead of refused at once
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        evil.conn.sendall(trigger3("sink", "LATE", "test.Slow"))
        late = answers(evil, 1)
        if not any(body.rstrip(b"\0") == b"LATE" for t, body in late if t == MSG["REFUSED"]):
            break
        time.sleep(1)
    else:
        pytest.fail("pending calls never freed their slots")
    assert evil_d.poll() is None and sink_d.poll() is None
