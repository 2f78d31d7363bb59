"""qubes.OpenInVM: qvm-open-in-vm / qvm-open-in-dvm; an edit in the target comes back."""
import os
import subprocess

from qrexec_fixtures import world, bin_path  # noqa: F401


def test_edit_comes_back(world):
    world.agent_env["BULKHEAD_OPEN_COMMAND"] = 'printf " edited by $(basename "$1")" >> "$1"'
    world.allow_call("qubes.OpenInVM", "work", "personal")
    work = world.qube("work", 5)
    world.qube("personal", 6)
    f = work.home / "doc.txt"
    f.write_text("original")
    os.chmod(f, 0o640)
    r = work.run(["qvm-open-in-vm", "personal", str(f)])
    assert r.returncode == 0, r.stderr
    assert f.read_text() == "original edited by doc.txt"
    assert os.stat(f).st_mode & 0o777 == 0o640
    assert [p for p in os.listdir(work.home) if "qopen" in p] == []
    assert [p for p in os.listdir(world.tmp) if p.startswith("qopen-")] == []  # target cleaned up


def test_unchanged_file_is_left_alone(world):
    world.agent_env["BULKHEAD_OPEN_COMMAND"] = 'cat "$1" > /dev/null'
    world.allow_call("qubes.OpenInVM", "work", "@dispvm", "personal")
    work = world.qube("work", 5)
    world.qube("personal", 6)
    f = work.home / "doc.txt"
    f.write_text("keep")
    ino = os.stat(f).st_ino
    r = work.run(["qvm-open-in-dvm", str(f)])
    assert r.returncode == 0, r.stderr
    assert f.read_text() == "keep" and os.stat(f).st_ino == ino


def test_open_that_fails_in_the_target_fails(world):
    """As Qubes' qrexec-client-vm: the remote service's exit code is the call's."""
    world.agent_env["BULKHEAD_OPEN_COMMAND"] = "exit 3"
    world.allow_call("qubes.OpenInVM", "work", "personal")
    work = world.qube("work", 5)
    world.qube("personal", 6)
    f = work.home / "doc.txt"
    f.write_text("keep")
    r = work.run(["qvm-open-in-vm", "personal", str(f)])
    assert r.returncode != 0, r.stderr
    assert f.read_text() == "keep"


def test_denied_open(world):
    work = world.qube("work", 5)
    world.qube("personal", 6)
    f = work.home / "doc.txt"
    f.write_text("x")
    assert work.run(["qvm-open-in-vm", "personal", str(f)]).returncode == 126


def test_opener_refuses_hostile_names(world, tmp_path):
    for name in (b"../escape", b"a/b", b"..", b"", b"x\x1b[2J", b"A" * 256):
        r = subprocess.run([bin_path("qfile-opener")], input=name.ljust(256, b"\0")[:256] + b"data",
                           env=dict(os.environ, TMPDIR=str(tmp_path), BULKHEAD_OPEN_COMMAND="true"),
                           capture_output=True, timeout=10)
        assert r.returncode == 1, name
    assert list(tmp_path.iterdir()) == []
