"""QA regression: qubes.OpenInVM in a qube without xdg-open/mimeopen/$EDITOR fails at once.
It fell back to vi with stdin on /dev/null: qvm-open-in-dvm and its disposable hung forever."""
import os
import subprocess

from qrexec_fixtures import bin_path


def test_opener_without_a_program_fails_instead_of_hanging(tmp_path):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    vi = bindir / "vi"  # an interactive editor: waits for a terminal that is not there
    vi.write_text("#!/bin/sh\nexec sleep 15\n")
    vi.chmod(0o755)
    work = tmp_path / "tmp"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("EDITOR", "BULKHEAD_OPEN_COMMAND")}
    env.update(PATH=str(bindir), TMPDIR=str(work))
    r = subprocess.run([bin_path("qfile-opener")], input=b"doc.txt".ljust(256, b"\0") + b"data",
                       env=env, capture_output=True, timeout=10)
    assert r.returncode == 1, r.stderr
    assert b"no program to open doc.txt" in r.stderr
    assert r.stdout == b""             # nothing comes back as an "edited" file
    assert list(work.iterdir()) == []
