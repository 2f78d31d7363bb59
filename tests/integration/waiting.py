"""Waiting for something to happen in a test: poll a condition until it holds or a
generous deadline passes. No test may depend on how fast the machine is (CI runs some
tests in a TCG VM, ~10x slower, and this machine is shared): never sleep a fixed time
and then assert what should have happened meanwhile. The deadline only bounds a failing
test; a passing one returns as soon as the condition holds.

A check that something did NOT happen (a paused qube's file unchanged) may still sleep
a short fixed time first: a slow machine can only make that check easier to pass."""
import time

DEADLINE = 60  # seconds: long enough for a loaded TCG guest, short enough to fail a run


def wait_for(pred, timeout=DEADLINE, step=0.05):
    """pred()'s first true value, polled every `step` s; its last (false) value once
    `timeout` s have passed."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)
