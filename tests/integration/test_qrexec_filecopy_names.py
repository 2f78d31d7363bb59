"""The file-copy receiver refuses exactly the names Qubes' receiver refuses, with Qubes'
status and exit code (qubes-linux-utils qrexec-lib/unpack.c + unicode.c; Qubes 4.2+):
a name with a tab, a control character, a bidi override (U+202E) or anything else not
safe to display is EILSEQ (84) unless the receiver opts in (qubes.Filecopy+allow-all-names,
which policy must allow); an existing name is EEXIST (17). qvm-copy asks for the opt-in
only when a name needs it."""
import errno
import os
import stat
import struct
import subprocess
import zlib

import pytest

from qrexec_fixtures import bin_path, world  # noqa: F401

REG, DIR, LNK = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777
END = bytes(32)


def entry(name, mode, data=b""):
    n = (name.encode() if isinstance(name, str) else name) + b"\0"
    return struct.pack("<IIQIIII", len(n), mode, len(data), 0, 0, 0, 0) + n + data


def unpack(tmp_path, stream, *args):
    inc = tmp_path / "in"
    inc.mkdir(exist_ok=True)
    return subprocess.run([bin_path("qfile-unpacker"), "--dir", str(inc), *args], input=stream,
                          capture_output=True, timeout=30), inc


def status(r):
    return struct.unpack("<I", r.stdout[:4])[0]


UNSAFE = {
    "tab": "a\tb", "newline": "a\nb", "escape": "\x1b[2Jx", "del": "a\x7f", "rlo": "invoice\u202egpj.exe",
    "rlm": "a\u200f", "hebrew": "\u05d0", "nbsp": "a\u00a0b", "combining": "e\u0301", "emoji": "\U0001f600",
    "zero-width": "a\u200bb", "line-sep": "a\u2028b",
}


@pytest.mark.parametrize("name", UNSAFE.values(), ids=UNSAFE.keys())
def test_unsafe_name_is_eilseq_unless_opted_in(tmp_path, name):
    r, inc = unpack(tmp_path, entry(name, REG, b"x") + END)
    assert (status(r), r.returncode) == (errno.EILSEQ, errno.EILSEQ), r.stderr
    assert os.listdir(inc) == []
    assert r.stdout[20:] == name.encode()  # Qubes' answer names the refused entry
    r, inc = unpack(tmp_path, entry(name, REG, b"x") + END, "--allow-all-names")
    assert (status(r), r.returncode) == (0, 0), r.stderr
    assert (inc / name).read_bytes() == b"x"


@pytest.mark.parametrize("name", ["caf\u00e9", "\u6587\u4ef6", "\u0434\u0430", "a b (1) [x] {y} $z #%&'+,;=@^`~.txt",
                                  "\u00bd\u20ac"])
def test_safe_names_arrive(tmp_path, name):
    r, inc = unpack(tmp_path, entry(name, REG, b"x") + END)
    assert (status(r), r.returncode) == (0, 0), r.stderr
    assert (inc / name).exists()


def test_unsafe_directory_and_symlink_names(tmp_path):
    r, inc = unpack(tmp_path, entry("d\t", DIR) + END)
    assert (status(r), r.returncode) == (errno.EILSEQ, errno.EILSEQ)
    r, inc = unpack(tmp_path, entry("d", DIR) + entry("d/l", LNK, "x\u202e".encode()) + END)
    assert (status(r), r.returncode) == (errno.EILSEQ, errno.EILSEQ)
    assert not os.path.lexists(inc / "d" / "l")


def test_existing_name_is_eexist(tmp_path):
    r, inc = unpack(tmp_path, entry("f", REG, b"first") + END)
    assert r.returncode == 0
    r, inc = unpack(tmp_path, entry("f", REG, b"second") + END)
    assert (status(r), r.returncode) == (errno.EEXIST, errno.EEXIST)
    assert (inc / "f").read_bytes() == b"first"


@pytest.mark.parametrize("link,target,code", [("l", "x", errno.ENOLINK), ("d/l", "../x", errno.ENOLINK),
                                              ("d/l", "/etc/passwd", errno.ENOLINK), ("d/l", "e/../../x", errno.ENOLINK),
                                              ("d/l", "./e//f", 0), ("d/l", "e", 0), ("d/l", "", errno.ENOENT),
                                              ("d/e/u", "..", 0), ("d/l", "e/", 0)])
def test_symlink_rules(tmp_path, link, target, code):
    pre = (entry("d", DIR) if "/" in link else b"") + (entry("d/e", DIR) if link.count("/") == 2 else b"")
    r, inc = unpack(tmp_path, pre + entry(link, LNK, target.encode()) + END)
    assert (status(r), r.returncode) == (code, code), r.stderr
    assert os.path.lexists(inc / link) == (code == 0)


def test_stream_endings(tmp_path):
    s = entry("f", REG, b"x")
    r, _ = unpack(tmp_path, s)  # no end marker
    assert (status(r), r.returncode) == (errno.EREMOTEIO, errno.EREMOTEIO)
    (tmp_path / "again").mkdir()
    r, _ = unpack(tmp_path / "again", s[:-1])  # ends inside the file's data
    assert (status(r), r.returncode) == (31415926, 31415926 & 0xFF)  # Qubes' LEGAL_EOF
    assert r.stdout[8:16] == struct.pack("<Q", zlib.crc32(s[:-1]))


def names_world(world, allow_all):
    world.allow_call("qubes.Filecopy", "work", "personal")
    if allow_all:
        world.allow_call("qubes.Filecopy+allow-all-names", "work", "personal")
    work = world.qube("work", 5)
    personal = world.qube("personal", 6)
    return work, personal


def test_qvm_copy_asks_for_the_opt_in_only_when_needed(world):
    work, personal = names_world(world, allow_all=False)
    (work.home / "plain.txt").write_text("plain")
    r = work.run(["qvm-copy-to-vm", "personal", str(work.home / "plain.txt")])
    assert r.returncode == 0, r.stderr
    evil = work.home / "invoice\u202egpj.exe"
    evil.write_text("x")
    r = work.run(["qvm-copy-to-vm", "personal", str(evil)])
    assert r.returncode == 126  # qubes.Filecopy+allow-all-names: no rule for it
    assert sorted(os.listdir(personal.home / "QubesIncoming" / "work")) == ["plain.txt"]
    assert "qubes.Filecopy+allow-all-names" in world.log_text("daemon-work")


def test_qvm_copy_with_the_opt_in_delivers_the_name(world):
    work, personal = names_world(world, allow_all=True)
    d = work.home / "dir"
    d.mkdir()
    (d / "tab\there").write_text("t")
    (d / "\u202eright").write_text("r")
    r = work.run(["qvm-copy-to-vm", "personal", str(d)])
    assert r.returncode == 0, r.stderr
    got = personal.home / "QubesIncoming" / "work" / "dir"
    assert (got / "tab\there").read_text() == "t" and (got / "\u202eright").read_text() == "r"


def test_a_lying_sender_without_the_opt_in_is_refused(world):
    """The opt-in is the receiver's: a sender that calls plain qubes.Filecopy with an
    unsafe name gets EILSEQ from the real unpacker in the real target."""
    work, personal = names_world(world, allow_all=False)
    (work.home / "s.py").write_text(
        "import sys,struct\n"
        "n='a\\tb'.encode()+b'\\0'\n"
        "sys.stdout.buffer.write(struct.pack('<IIQIIII',len(n),0o100644,1,0,0,0,0)+n+b'x'+bytes(32))\n"
        "sys.stdout.flush()\n"
        "a=sys.stdin.buffer.read(16)\n"
        "sys.exit(struct.unpack('<I',a[:4])[0] & 0xff)\n")
    r = work.run(["qrexec-client-vm", "personal", "qubes.Filecopy", "/usr/bin/python3", str(work.home / "s.py")])
    assert r.returncode == errno.EILSEQ, r.stderr
    assert not os.path.exists(personal.home / "QubesIncoming" / "work" / "a\tb")
