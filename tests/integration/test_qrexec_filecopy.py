"""qubes.Filecopy (docs/qrexec.md, "File copy"): qvm-copy / qvm-move / qvm-copy-to-vm through qrexec,
and the packer against a receiver that lies."""
import os
import struct
import subprocess
import zlib

from qrexec_fixtures import world, bin_path  # noqa: F401


def make_tree(base):
    (base / "dir" / "sub").mkdir(parents=True)
    (base / "dir" / "a.txt").write_bytes(b"alpha\n")
    (base / "dir" / "sub" / "b.bin").write_bytes(os.urandom(300000))
    (base / "dir" / "empty").write_bytes(b"")
    os.symlink("sub/b.bin", base / "dir" / "link")
    os.chmod(base / "dir" / "a.txt", 0o640)
    os.utime(base / "dir" / "a.txt", (1000000000, 1234567890))
    (base / "single").write_bytes(b"one file\n")


def test_qvm_copy_to_vm_between_qubes(world):
    world.allow_call("qubes.Filecopy", "work", "personal")
    work = world.qube("work", 5)
    personal = world.qube("personal", 6)
    make_tree(work.home)
    r = work.run(["qvm-copy-to-vm", "personal", str(work.home / "dir"), str(work.home / "single")])
    assert r.returncode == 0, r.stderr
    inc = personal.home / "QubesIncoming" / "work"
    assert (inc / "dir" / "a.txt").read_bytes() == b"alpha\n"
    assert (inc / "dir" / "sub" / "b.bin").read_bytes() == (work.home / "dir" / "sub" / "b.bin").read_bytes()
    assert (inc / "dir" / "empty").read_bytes() == b""
    assert os.readlink(inc / "dir" / "link") == "sub/b.bin"
    assert (inc / "single").read_bytes() == b"one file\n"
    st = os.stat(inc / "dir" / "a.txt")
    assert st.st_mode & 0o777 == 0o640 and int(st.st_mtime) == 1234567890
    assert (work.home / "dir").exists()  # copy keeps the source


def test_qvm_move_removes_source_only_after_success(world):
    world.allow_call("qubes.Filecopy", "work", "@default", "personal")
    work = world.qube("work", 5)
    personal = world.qube("personal", 6)
    make_tree(work.home)
    r = work.run(["qvm-move", str(work.home / "dir")])
    assert r.returncode == 0, r.stderr
    assert not (work.home / "dir").exists()
    assert (personal.home / "QubesIncoming" / "work" / "dir" / "a.txt").exists()


def test_denied_copy_keeps_files_and_creates_nothing(world):
    work = world.qube("work", 5)
    personal = world.qube("personal", 6)
    make_tree(work.home)
    r = work.run(["qvm-move-to-vm", "personal", str(work.home / "single")])
    assert r.returncode == 126
    assert (work.home / "single").exists()
    assert not (personal.home / "QubesIncoming").exists()


def test_dom0_copy_to_vm(world):
    personal = world.qube("personal", 6)
    src = world.tmp / "dom0file"
    src.write_bytes(b"from dom0\n")
    r = subprocess.run([bin_path("qvm-copy-to-vm"), "personal", str(src)], env=world.dom0_env(),
                       capture_output=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert (personal.home / "QubesIncoming" / "dom0" / "dom0file").read_bytes() == b"from dom0\n"


def test_same_name_twice_does_not_overwrite(world):
    world.allow_call("qubes.Filecopy", "work", "personal")
    work = world.qube("work", 5)
    personal = world.qube("personal", 6)
    (work.home / "f").write_text("first")
    assert work.run(["qvm-copy-to-vm", "personal", str(work.home / "f")]).returncode == 0
    (work.home / "f").write_text("second")
    r = work.run(["qvm-copy-to-vm", "personal", str(work.home / "f")])
    assert r.returncode != 0
    assert (personal.home / "QubesIncoming" / "work" / "f").read_text() == "first"


# ---- the packer against receivers that lie -------------------------------------------

def lying_receiver(tmp, answer_py):
    """A fake qfile-unpacker: reads the whole stream, then answers whatever answer_py builds."""
    p = tmp / "liar.py"
    p.write_text("import sys, struct, zlib\n"
                 "data = sys.stdin.buffer.read()\n"
                 "crc = zlib.crc32(data)\n"
                 f"out = {answer_py}\n"
                 "sys.stdout.buffer.write(out)\n")
    return p


def run_packer_against(tmp, answer_py, files):
    liar = lying_receiver(tmp, answer_py)
    # qfile-agent's stdout -> liar's stdin; liar's stdout -> qfile-agent's stdin
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    rx = subprocess.Popen(["/usr/bin/python3", str(liar)], stdin=r1, stdout=w2)
    tx = subprocess.Popen([bin_path("qfile-agent"), *map(str, files)], stdin=r2, stdout=w1, stderr=subprocess.PIPE)
    for fd in (r1, w1, r2, w2):
        os.close(fd)
    _, err = tx.communicate(timeout=30)
    rx.wait(10)
    return subprocess.CompletedProcess(tx.args, tx.returncode, b"", err)


def test_packer_accepts_an_honest_answer(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"data")
    r = run_packer_against(tmp_path, "struct.pack('<IIQI', 0, 0, crc, 1) + b'x'", [f])
    assert r.returncode == 0, r.stderr


def test_packer_rejects_wrong_crc(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"data")
    r = run_packer_against(tmp_path, "struct.pack('<IIQI', 0, 0, crc ^ 1, 1) + b'x'", [f])
    assert r.returncode == 1
    assert b"checksum" in r.stderr


def test_packer_rejects_truncated_and_oversized_answers(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"data")
    for answer in ["b''", "struct.pack('<II', 0, 0)", "struct.pack('<IIQI', 0, 0, crc, 0xffffffff)",
                   "struct.pack('<IIQ', 0, 0, crc | (1 << 40))"]:
        r = run_packer_against(tmp_path, answer, [f])
        assert r.returncode == 1, answer


def test_packer_filters_the_receivers_error_text(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"data")
    r = run_packer_against(tmp_path, "struct.pack('<IIQI', 13, 0, crc, 8) + b'\\x1b[2Jevil'", [f])
    assert r.returncode == 1
    assert b"\x1b" not in r.stderr and b"_[2Jevil" in r.stderr


def test_qvm_move_keeps_files_when_receiver_lies(world):
    world.allow_call("qubes.Filecopy", "work", "personal")
    world.service("qubes.Filecopy", "#!/bin/sh\n/usr/bin/python3 -c 'import sys,struct; sys.stdin.buffer.read();"
                  " sys.stdout.buffer.write(struct.pack(\"<IIQI\", 0, 0, 12345, 0))'\n")
    work = world.qube("work", 5)
    world.qube("personal", 6)
    (work.home / "keep").write_text("precious")
    r = work.run(["qvm-move-to-vm", "personal", str(work.home / "keep")])
    assert r.returncode != 0
    assert (work.home / "keep").read_text() == "precious"
