"""Every tool answers --help and has a man page that renders without warnings."""
import os
import shutil
import subprocess

import pytest

from tools_fixtures import ROOT, TOOLS

NAMES = ["qvm-ls", "qvm-create", "qvm-prefs", "qubes-prefs", "qvm-remove", "qvm-clone",
         "qvm-tags", "qvm-features", "qvm-service", "qvm-check", "qvm-firewall", "qvm-volume",
         "qvm-label", "qvm-start", "qvm-shutdown", "qvm-kill", "qvm-pause", "qvm-unpause"]


@pytest.mark.parametrize("name", NAMES)
def test_help_and_man_page(name):
    # --help needs no daemon.
    env = dict(os.environ, BULKHEAD_SOCKET="/nonexistent/qubesd.sock")
    p = subprocess.run([str(TOOLS / name), "--help"], env=env, capture_output=True, text=True,
                       timeout=30)
    assert p.returncode == 0 and p.stdout.startswith(f"usage: {name} ") and p.stderr == ""
    p = subprocess.run([str(TOOLS / name), "--version"], env=env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith(name)
    page = ROOT / "docs/man" / f"{name}.1"
    assert page.is_file()
    text = page.read_text()
    for section in (".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", ".SH EXIT STATUS"):
        assert section in text


@pytest.mark.parametrize("name", NAMES)
def test_man_page_renders_without_warnings(name):
    # man-db and groff-base come with `make test` (scripts/deps.d/tools.txt); a machine
    # without them says so instead of passing silently.
    if not shutil.which("man") or not shutil.which("groff"):
        pytest.skip("man (man-db) or groff (groff-base) not installed: cannot render the page")
    page = ROOT / "docs/man" / f"{name}.1"
    r = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat"),
                       timeout=60)
    assert r.returncode == 0 and r.stderr == "" and name in r.stdout
    assert "NAME" in r.stdout and "SYNOPSIS" in r.stdout  # rendered, not echoed


def test_completion_covers_every_tool():
    text = (ROOT / "data/bash-completion/qvm").read_text()
    complete_line = text[text.rindex("complete -F _qvm_tool"):]
    for name in NAMES:
        assert name in complete_line
