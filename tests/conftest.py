"""Suite-wide hygiene for tests/integration and tests/attack: a bulkheadd that a test body
started itself (not a fixture) is stopped when the test ends, also when an assertion
failed half-way and the test's own stop was never reached."""
import sys

import pytest


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    fixtures = sys.modules.get("admin_fixtures")
    before = {id(d) for d in fixtures.LIVE} if fixtures else set()
    yield
    fixtures = sys.modules.get("admin_fixtures")
    if not fixtures:
        return
    for d in [d for d in fixtures.LIVE if id(d) not in before]:
        d.stop()
