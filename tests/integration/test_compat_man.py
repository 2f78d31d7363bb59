"""Man pages for the qrexec and template tools render without warnings."""
import os
import shutil
import subprocess

import pytest

from tools_fixtures import ROOT

PAGES = ["qvm-device", "qvm-run", "qvm-console", "qvm-template", "qrexec-policy-test", "qrexec-policy-lint", "bulkheadd"]


@pytest.mark.parametrize("name", PAGES)
def test_man_page(name):
    page = next((ROOT / "docs/man").glob(f"{name}.[18]"))
    text = page.read_text()
    for section in (".SH NAME", ".SH SYNOPSIS", ".SH DESCRIPTION", ".SH OPTIONS", ".SH EXIT STATUS"):
        assert section in text
    if not shutil.which("man") or not shutil.which("groff"):
        pytest.skip("man (man-db) or groff (groff-base) not installed: cannot render the page")
    r = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True,
                       env=dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8", MANPAGER="cat"), timeout=60)
    assert r.returncode == 0 and r.stderr == "" and name in r.stdout
