"""Shared pytest fixtures: where the build is, and a private bulkheadd per test.

Each area may add fixtures in its own tests/integration/<area>_fixtures.py and import
them from its test files; this file stays small so that areas don't collide in it."""
import os
import pathlib
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
BUILD = pathlib.Path(os.environ.get("BULKHEAD_BUILD", ROOT / "build"))


@pytest.fixture(scope="session")
def build_dir():
    return BUILD
