"""Suite-wide hygiene for tests/integration and tests/attack: a bulkheadd that a test body
started itself (not a fixture) is stopped when the test ends, also when an assertion
failed half-way and the test's own stop was never reached. And the one fixture both
share, build_dir.

Each area adds its fixtures in its own tests/integration/<area>_fixtures.py and imports
them from its test files; this file stays small so that areas don't collide in it."""
import os
import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent / "integration"))
import mount_cleanup  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))

# Where KVM works, new qubes would be VMs by default (default_virt_mode pvh); the
# suite's hundreds of qubes stay namespaces, and its VM tests ask for pvh by name.
# test_vm_default_mode.py starts its daemons without this to check the real default.
os.environ["BULKHEAD_DEFAULT_VIRT_MODE"] = "ns"


@pytest.fixture(scope="session")
def build_dir():
    return BUILD


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    """A daemon the test body started is stopped, its qubes killed; one it made is cleaned
    up, which fails the test if the daemon left what it made in its runtime dir
    (Daemon.cleanup)."""
    fixtures = sys.modules.get("admin_fixtures")
    before = {id(d) for d in fixtures.LIVE} if fixtures else set()
    made_before = {id(d) for d in fixtures.MADE} if fixtures else set()
    yield
    fixtures = sys.modules.get("admin_fixtures")
    if not fixtures:
        return
    for d in [d for d in fixtures.LIVE if id(d) not in before]:
        try:
            fixtures.kill_all(d)  # its qubes too: a stopped bulkheadd leaves them running
        except Exception:  # noqa: BLE001 (a daemon that no longer answers is stopped all the same)
            pass
        d.stop()
    for d in [d for d in fixtures.MADE if id(d) not in made_before and d.proc is None]:
        d.cleanup()


def pytest_sessionfinish(session, exitstatus):
    """The last word on runtime dirs: every daemon made and stopped has its runtime dir
    removed, also where a fixture did not clean up; a leftover a clean stop left that no
    cleanup checked fails the run."""
    fixtures = sys.modules.get("admin_fixtures")
    if not fixtures:
        return
    unchecked = [(str(d.runtime), d.leftovers) for d in fixtures.MADE if d.leftovers]
    for d in fixtures.MADE:
        if d.proc is None:
            d.cleanup(check=False)
    if unchecked:
        print(f"\nbulkheadd left what it made in its runtime dirs: {unchecked}", file=sys.stderr)
        session.exitstatus = 1


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Template roots stay mounted until their qube is removed: after the test's own
    teardown, what is still mounted below its private roots goes (mount_cleanup.py)."""
    yield
    extra = []
    tmp = getattr(item, "funcargs", {}).get("tmp_path")
    if tmp is not None:
        extra.append(tmp)
    mount_cleanup.unmount_registered(extra)
