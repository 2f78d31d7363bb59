"""A qube attacks the dom0 terminal of `qvm-run -p`: escape sequences and TIOCSTI.
The qube never holds a dom0 terminal fd, so TIOCSTI fails inside it, and nothing is
queued as input on the dom0 terminal; escapes are replaced before they reach it."""
import fcntl
import os
import pathlib
import pty
import subprocess
import sys
import termios

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from qrexec_fixtures import bin_path, world  # noqa: E402,F401


def test_tiocsti_and_escapes_do_not_reach_dom0_terminal(world):
    world.qube("work", 5)
    attack = ("/usr/bin/python3 -c 'import fcntl,termios,sys\n"
              "for fd in (0,1,2):\n"
              "    try:\n"
              "        fcntl.ioctl(fd, termios.TIOCSTI, b\"X\"); print(\"TIOCSTI-OK\", fd)\n"
              "    except OSError as e: print(\"TIOCSTI-FAIL\", fd, e.errno)\n"
              "sys.stdout.write(\"\\033[6n\\033]52;c;cm0gLXJmIH4=\\007\\033P+q\\033\\\\\\n\")'")
    master, slave = pty.openpty()
    try:
        r = subprocess.run([bin_path("qvm-run"), "--no-autostart", "-p", "work", attack], env=world.dom0_env(),
                           stdin=slave, stdout=slave, stderr=slave, timeout=30)
        # nothing may be waiting as *input* on the dom0 terminal
        fl = fcntl.fcntl(slave, fcntl.F_GETFL)
        fcntl.fcntl(slave, fcntl.F_SETFL, fl | os.O_NONBLOCK)
        with pytest.raises(BlockingIOError):
            os.read(slave, 100)
        os.close(slave)
        slave = -1
        out = b""
        while True:
            try:
                c = os.read(master, 4096)
            except OSError:
                break
            if not c:
                break
            out += c
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert r.returncode == 0
    assert b"TIOCSTI-OK" not in out
    assert out.count(b"TIOCSTI-FAIL") == 3
    assert b"\x1b" not in out and b"\x07" in out  # bell is allowed, as in Qubes
