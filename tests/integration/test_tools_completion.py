"""The bash completion (data/bash-completion/qvm) against a real bulkheadd."""
import os
import subprocess

from tools_fixtures import qd, ROOT, TOOLS  # noqa: F401

COMPLETION = ROOT / "data/bash-completion/qvm"


def complete(qd, *words):
    """Runs the completion function for a command line whose last word is being typed."""
    line = " ".join(f"'{w}'" for w in words)
    script = f"""
source '{COMPLETION}'
COMP_WORDS=({line})
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_qvm_tool
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    env = dict(qd.env, PATH=f"{TOOLS}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    p = subprocess.run(["bash", "--norc", "-c", script], env=env, capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 0, p.stderr
    return sorted(w for w in p.stdout.splitlines() if w)


def test_qube_names(qd):
    assert complete(qd, "qvm-prefs", "wo") == ["work"]
    assert complete(qd, "qvm-ls", "sys-") == ["sys-firewall", "sys-net"]
    assert complete(qd, "qvm-start", "d") == ["default-dvm"]   # dom0 runs already
    assert complete(qd, "qvm-kill", "") == qd.running()


def test_options_and_values(qd):
    assert "--raw-list" in complete(qd, "qvm-ls", "--raw")
    assert complete(qd, "qvm-create", "-l", "bl") == ["black", "blue"]
    assert complete(qd, "qvm-create", "-t", "") == ["host"]
    assert complete(qd, "qvm-prefs", "work", "mem") == ["memory"]
    assert complete(qd, "qvm-prefs", "work", "label", "gr") == ["gray", "green"]
    assert complete(qd, "qvm-tags", "work", "") == sorted(
        ["list", "ls", "l", "add", "a", "set", "del", "d", "unset", "u"])
    assert complete(qd, "qvm-firewall", "work", "r") == ["reset"]
    assert complete(qd, "qubes-prefs", "default_n") == ["default_netvm"]
