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
