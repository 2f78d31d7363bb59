"""QA regression: the qube's qrexec agent must not inherit init's blocked SIGTERM.
It did (the engine execs init with SIGTERM/SIGINT blocked): the agent ignored the
shutdown TERM and every qvm-shutdown waited init's whole 5 s grace, then SIGKILL."""
import signal
import subprocess

from admin_fixtures import engine_daemon  # noqa: F401
from qrexec_fixtures import bin_path


def test_agent_takes_sigterm(engine_daemon):
    d = engine_daemon
    r = subprocess.run([bin_path("qvm-run"), "-p", "--user", "root", "a",
                        "for c in $(cat /proc/1/task/1/children); do "
                        "  [ \"$(cat /proc/$c/comm)\" = qrexec-agent ] && grep SigBlk /proc/$c/status; done"],
                       env=d.env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.split()
    assert lines and lines[0] == "SigBlk:", r.stdout
    blocked = int(lines[1], 16)
    for sig in (signal.SIGTERM, signal.SIGINT):
        assert not blocked & (1 << (sig - 1)), f"{sig.name} blocked in the agent: {r.stdout}"
