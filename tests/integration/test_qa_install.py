"""QA regression: `make install PREFIX=DIR` installs under DIR, even into a build dir
that was configured (or installed) with another prefix before; the systemd unit starts
the bulkheadd of that prefix. DESTDIR keeps every byte inside tmp_path even if broken."""
import os
import pathlib
import subprocess

REPO = pathlib.Path(__file__).resolve().parents[2]


def make_install(build, prefix, dest):
    env = dict(os.environ, DESTDIR=str(dest))
    r = subprocess.run(["make", "-C", str(REPO), "install", f"BUILD={build}", f"PREFIX={prefix}"],
                       env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr


def test_install_follows_prefix(tmp_path):
    build, dest = tmp_path / "build", tmp_path / "dest"
    first, second = tmp_path / "p1", tmp_path / "p2"
    make_install(build, first, dest)
    make_install(build, second, dest)
    root = pathlib.Path(str(dest) + str(second))
    for prog in ("bulkheadd", "qvm-ls", "qvm-run", "qvm-template", "qrexec-policy-test"):
        assert (root / "bin" / prog).exists(), prog
    assert (root / "share/man/man1/qvm-ls.1").exists()
    assert (root / "share/bash-completion/completions/qvm-ls").exists()
    unit = (root / "lib/systemd/system/bulkheadd.service").read_text()
    assert f"ExecStart={second}/bin/bulkheadd " in unit
