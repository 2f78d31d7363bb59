"""When qvm-run returns, as Qubes' qvm-run in dom0 (qubesadmin/tools/qvm_run.py and its
tests): a command is waited for, with or without --pass-io, and its exit code returned
(without -p its output goes to /dev/null); a --service call without --pass-io is only
started (run_service(wait=False), qrexec-client -e) and qvm-run returns 0 at once;
with --pass-io it is waited for. Real qube, real qrexec."""
import subprocess
import time

from admin_fixtures import engine_daemon  # noqa: F401
from qrexec_fixtures import bin_path

SLOW = "#!/bin/sh\nsleep 4\ntouch /tmp/slow-done\nexit 5\n"


def qvm_run(d, *args):
    return subprocess.run([bin_path("qvm-run"), *args], env=d.env, capture_output=True, timeout=60)


def done(d):
    return qvm_run(d, "-p", "a", "test -e /tmp/slow-done").returncode == 0


def test_service_without_pass_io_is_only_started(engine_daemon):
    d = engine_daemon
    r = qvm_run(d, "-p", "-u", "root", "a",
                f"mkdir -p /etc/qubes-rpc && printf '{SLOW}' > /etc/qubes-rpc/test.Slow && "
                "chmod 755 /etc/qubes-rpc/test.Slow")
    assert r.returncode == 0, r.stderr
    # started, not waited for: qvm-run is back (exit 0) before the service is done
    r = qvm_run(d, "--service", "a", "test.Slow")
    assert r.returncode == 0, r.stderr
    assert not done(d)
    deadline = time.time() + 30
    while not done(d) and time.time() < deadline:      # ... and it did run to its end
        time.sleep(0.2)
    assert done(d)
    # with --pass-io the same service is waited for: its exit code, the work done
    assert qvm_run(d, "-p", "a", "rm /tmp/slow-done").returncode == 0
    r = qvm_run(d, "-p", "--service", "a", "test.Slow")
    assert r.returncode == 5 and done(d)


def test_command_is_waited_for_with_and_without_pass_io(engine_daemon):
    d = engine_daemon
    for extra in ([], ["-p"]):
        assert qvm_run(d, "-p", "a", "rm -f /tmp/cmd-done").returncode == 0
        r = qvm_run(d, *extra, "a", "sleep 2; echo out; touch /tmp/cmd-done; exit 3")
        assert r.returncode == 3, (extra, r.stderr)
        assert r.stdout == (b"out\n" if extra else b"")
        assert qvm_run(d, "-p", "a", "test -e /tmp/cmd-done").returncode == 0, extra  # done when it returned
