"""Hostile qubes.Filecopy streams against qfile-unpacker: every traversal trick. The
invariant after each: the unpacker failed (or refused the entry) and nothing exists outside
the incoming directory. Streams are built byte for byte as a hostile sender would."""
import errno
import os
import stat
import struct
import subprocess
import sys
import pathlib

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from qrexec_fixtures import bin_path  # noqa: E402

REG, DIR, LNK = stat.S_IFREG | 0o644, stat.S_IFDIR | 0o755, stat.S_IFLNK | 0o777


def entry(name, mode, data=b"", namelen=None, filelen=None):
    n = name.encode() + b"\0" if isinstance(name, str) else name
    return struct.pack("<IIQIIII", len(n) if namelen is None else namelen, mode,
                       len(data) if filelen is None else filelen, 0, 0, 0, 0) + n + data


END = bytes(32)


@pytest.fixture
def box(tmp_path):
    inc = tmp_path / "home" / "QubesIncoming" / "src"
    inc.mkdir(parents=True)
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "secret").write_text("secret")
    return tmp_path, inc


def snapshot(root, inc):
    out = set()
    for dp, dns, fns in os.walk(root):
        for n in dns + fns:
            p = os.path.join(dp, n)
            if not p.startswith(str(inc)):
                out.add(p)
    return out


def unpack(box, stream, *args):
    root, inc = box
    before = snapshot(root, inc)
    r = subprocess.run([bin_path("qfile-unpacker"), "--dir", str(inc), *args], input=stream, capture_output=True,
                       timeout=30)
    assert snapshot(root, inc) == before, "something was created outside the incoming dir"
    assert (root / "outside" / "secret").read_text() == "secret"
    return r


def answer(r):
    err, _, crc = struct.unpack("<IIQ", r.stdout[:16])
    return err, crc


def refused(r, code=None):
    """As Qubes' receiver: the status it sends is non-zero, and it exits with it."""
    err = answer(r)[0]
    assert err != 0 and r.returncode == err & 0xff, (err, r.returncode, r.stderr)
    assert code is None or err == code, (err, code, r.stderr)
    return True


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil-abs", "a/../../evil", "..", ".", "a/./b", "a//b", "a/",
                                  "", "../../outside/secret"])
def test_bad_names_refused(box, name):
    r = unpack(box, entry(name, REG, b"x") + END)
    assert refused(r, errno.EILSEQ)


def test_name_through_symlink(box):
    _, inc = box
    s = entry("d", DIR) + entry("d/l", LNK, b"..") + END  # refused link first
    assert refused(unpack(box, s))
    s = entry("d", DIR) + entry("d/l", LNK, b"e") + entry("d/l/evil", REG, b"x") + END  # accepted link, then through it
    r = unpack(box, s)
    assert refused(r)
    assert os.readlink(inc / "d" / "l") == "e" and not os.path.exists(inc / "d" / "e")


def test_name_through_preexisting_symlink(box):
    root, inc = box
    os.symlink(str(root / "outside"), inc / "planted")
    r = unpack(box, entry("planted/evil", REG, b"x") + END)
    assert refused(r)
    assert not (root / "outside" / "evil").exists()


@pytest.mark.parametrize("target", ["/etc/passwd", "../outside", "../../outside/secret", "a/../../x", "..", ""])
def test_symlinks_pointing_outside_refused(box, target):
    r = unpack(box, entry("l", LNK, target.encode()) + END)
    assert refused(r)
    assert not os.path.lexists(box[1] / "l")


def test_nested_symlink_escaping_its_copy(box):
    s = entry("d", DIR) + entry("d/e", DIR) + entry("d/e/l", LNK, b"../../../outside") + END
    assert refused(unpack(box, s))


def test_symlink_inside_copy_accepted(box):
    s = entry("d", DIR) + entry("d/f", REG, b"hi") + entry("d/l", LNK, b"f") + entry("d", DIR) + END
    r = unpack(box, s)
    assert r.returncode == 0, r.stderr
    assert os.readlink(box[1] / "d" / "l") == "f"


def test_overwrite_through_existing_symlink(box):
    root, inc = box
    os.symlink(str(root / "outside" / "secret"), inc / "victim")
    r = unpack(box, entry("victim", REG, b"pwned") + END)
    assert refused(r)


def test_dir_header_on_a_symlink(box):
    root, inc = box
    os.chmod(root / "outside", 0o700)  # the header says 0755: a chmod through the link would show
    os.symlink(str(root / "outside"), inc / "dl")
    r = unpack(box, entry("dl", DIR) + entry("dl/new", REG, b"x") + END)
    assert refused(r)
    assert stat.S_IMODE(os.stat(root / "outside").st_mode) == 0o700
    assert os.listdir(root / "outside") == ["secret"]
    # control: the same header on a plain name makes a directory that gets the header's
    # mode (set when the directory's closing header comes, as in Qubes)
    r = unpack(box, entry("plain", DIR) + entry("plain", DIR) + END)
    assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(os.stat(inc / "plain").st_mode) == 0o755


def test_nul_inside_name(box):
    r = unpack(box, entry(b"ok\0../evil\0", REG, b"x") + END)
    assert refused(r)


def test_name_length_lies(box):
    for nl in (1, 5000, 0xFFFFFFFF):
        r = unpack(box, entry(b"abc\0", REG, b"x", namelen=nl) + END)
        assert refused(r)
    # namelen 0 is the end marker, as for Qubes' receiver: nothing after it is read
    r = unpack(box, entry(b"abc\0", REG, b"x", namelen=0) + END)
    assert r.returncode == 0 and not os.listdir(box[1])


def test_file_longer_than_stream(box):
    r = unpack(box, entry("big", REG, b"short", filelen=1 << 40))
    assert refused(r, 31415926)  # Qubes' LEGAL_EOF
    assert not (box[1] / "big").exists()  # as Qubes: an unfinished file does not stay
    r = unpack(box, entry("whole", REG, b"x") + entry("part", REG, b"short", filelen=10))
    assert refused(r, 31415926)
    assert os.listdir(box[1]) == ["whole"]


def test_truncated_stream_without_end(box):
    r = unpack(box, entry("f", REG, b"x"))
    assert refused(r)


def test_special_file_types_refused(box):
    for mode in (stat.S_IFCHR | 0o666, stat.S_IFIFO | 0o666, stat.S_IFSOCK | 0o666, stat.S_IFBLK | 0o666, 0):
        r = unpack(box, entry("dev", mode) + END)
        assert refused(r)


def test_setuid_bits_dropped(box):
    r = unpack(box, entry("suid", stat.S_IFREG | 0o6755, b"#!/bin/sh\n") + END)
    assert r.returncode == 0
    assert os.stat(box[1] / "suid").st_mode & 0o7000 == 0


def test_too_many_files(box):
    s = b"".join(entry(f"f{i}", REG, b"") for i in range(20)) + END
    r = unpack(box, s, "--max-files", "10")
    assert refused(r)


def test_size_limit(box):
    r = unpack(box, entry("f", REG, b"x" * 5000) + END, "--max-bytes", "1000")
    assert refused(r)


def test_name_limits(box):
    """As Qubes' receiver: names up to 16383 bytes at any depth; components up to
    NAME_MAX (the kernel's)."""
    s = b""
    name = ""
    for i in range(300):
        name = f"{name}/d" if name else "d"
        s += entry(name, DIR)
    r = unpack(box, s + END)
    assert r.returncode == 0, r.stderr
    assert (box[1] / name).is_dir()
    r = unpack(box, entry("x" * 256, REG, b"x") + END)
    assert refused(r, errno.ENAMETOOLONG)
    r = unpack(box, entry("x/" * 8191 + "x", REG, b"x") + END)
    assert refused(r, errno.ENAMETOOLONG)


def test_crc_covers_everything_read(box):
    s = entry("f", REG, b"hello") + END
    r = unpack(box, s)
    import zlib
    assert r.returncode == 0
    assert answer(r) == (0, zlib.crc32(s))
    namelen = struct.unpack("<I", r.stdout[16:20])[0]
    assert r.stdout[20:20 + namelen] == b"f"


@pytest.mark.parametrize("links", [
    # found by fuzz/qfile_unpack: each link alone stays inside d, but ".." after a name
    # climbs through the copy's own links (d/y is d, d/e/u is d) above the incoming dir
    [("d/y", "."), ("d/z", "y/y/../..")],
    [("d/e/u", ".."), ("d/z", "e/u/e/u/../../..")],
])
def test_symlink_chain_climbing_through_other_links(box, links):
    root, inc = box
    s = entry("d", DIR) + entry("d/e", DIR) + entry("d/ok", LNK, b"e") + b"".join(
        entry(n, LNK, t.encode()) for n, t in links) + END
    r = unpack(box, s)
    assert refused(r)
    # positive control: the stream ran up to the links (the harmless one was made)
    assert os.readlink(inc / "d" / "ok") == "e"
    for dp, dns, fns in os.walk(inc):
        for n in dns + fns:
            p = os.path.join(dp, n)
            assert os.path.realpath(p).startswith(str(inc) + os.sep), f"{p} resolves outside: {os.path.realpath(p)}"
