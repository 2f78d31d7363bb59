"""dom0's qrexec-client with Qubes' command line (qubes-core-qrexec daemon/qrexec-client.c):
-E/--no-exit-code, -p/--prefix-data, --socket-dir, -h, and the QUBESRPC form."""
import subprocess

from qrexec_fixtures import world, bin_path  # noqa: F401


def test_prefix_data_and_no_exit_code(world):
    world.qube("work", 5)
    r = world.client("work", "user:cat; exit 3", input=b"world\n", args=("-p", "hello "))
    assert r.returncode == 3 and r.stdout == b"hello world\n", r
    r = world.client("work", "user:cat; exit 3", input=b"x", args=("--prefix-data=pre-",))
    assert r.stdout == b"pre-x"
    r = world.client("work", "user:exit 3", args=("-E",))
    assert r.returncode == 0                      # control above: 3 without -E
    r = world.client("work", "user:exit 4", args=("--no-exit-code",))
    assert r.returncode == 0
    r = world.client("work", "user:true", args=("-p", "a", "-p", "b"))
    assert r.returncode == 1 and b"only be used once" in r.stderr


def test_socket_dir_and_help(world):
    world.qube("work", 5)
    r = subprocess.run([bin_path("qrexec-client"), f"--socket-dir={world.runtime}", "-d", "work", "user:echo ok"],
                       capture_output=True, timeout=30)
    assert r.returncode == 0 and r.stdout == b"ok\n", r
    r = subprocess.run([bin_path("qrexec-client"), "--help"], capture_output=True, timeout=10)
    assert b"-E, --no-exit-code" in r.stderr and b"--prefix-data" in r.stderr


def test_dom0_copy_to_halted_qube(tmp_path):
    """dom0's qvm-copy-to-vm starts a halted qube first, as Qubes' (qvm-run --service)."""
    from admin_fixtures import Daemon, kill_all, state_of
    d = Daemon(tmp_path / "d", defaults=False).start()
    try:
        d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
        d.call("admin.vm.Create.AppVM+host", payload="name=b label=blue")
        f = tmp_path / "note.txt"
        f.write_text("from dom0\n")
        assert state_of(d, "b") == "Halted"                      # control
        r = subprocess.run([bin_path("qvm-copy-to-vm"), "b", str(f)], env=d.env, capture_output=True,
                           text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        r = subprocess.run([bin_path("qvm-run"), "-p", "b", "cat ~/QubesIncoming/dom0/note.txt"], env=d.env,
                           capture_output=True, text=True, timeout=60)
        assert r.stdout == "from dom0\n", r.stderr
    finally:
        kill_all(d)
        d.stop()
        d.cleanup()
