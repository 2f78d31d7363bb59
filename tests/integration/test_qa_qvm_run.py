"""QA regressions: dom0 tools used the way the README says (only BULKHEAD_SOCKET set)."""
import os
import subprocess

from admin_fixtures import engine_daemon  # noqa: F401
from qrexec_fixtures import bin_path


def user_env(d):
    """What a user following the README has: BULKHEAD_SOCKET, no BULKHEAD_RUNTIME."""
    e = dict(d.env)
    e.pop("BULKHEAD_RUNTIME", None)
    return e


def test_qvm_run_finds_qubes_next_to_the_admin_socket(engine_daemon):
    d = engine_daemon
    r = subprocess.run([bin_path("qvm-run"), "-p", "a", "echo hi; exit 4"], env=user_env(d),
                       capture_output=True, timeout=60)
    assert r.returncode == 4, r.stderr
    assert r.stdout == b"hi\n"


def test_qvm_run_all_pass_io_shows_every_qube(engine_daemon):
    """Each call used to hand stdout back as /dev/null: only the first qube's output showed."""
    d = engine_daemon
    e = user_env(d)
    for q in ("a", "b"):
        assert subprocess.run([bin_path("qvm-run"), q, "true"], env=e, capture_output=True,
                              timeout=60).returncode == 0
    r = subprocess.run([bin_path("qvm-run"), "--all", "-p", "hostname"], env=e,
                       capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert sorted(r.stdout.split()) == [b"a", b"b"]


def test_qvm_run_unknown_qube_is_a_usage_error(engine_daemon):
    """Qubes' qvm-run (VmNameAction): 'qvm-run: error: no such domain', exit 2."""
    d = engine_daemon
    for extra in ([], ["--no-autostart"]):
        r = subprocess.run([bin_path("qvm-run"), *extra, "-p", "nosuch", "true"], env=user_env(d),
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r.stderr
        assert "qvm-run: error: no such domain: 'nosuch'" in r.stderr
    r = subprocess.run([bin_path("qvm-run"), "--no-autostart", "-p", "a", "true"], env=user_env(d),
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "not running" in r.stderr
