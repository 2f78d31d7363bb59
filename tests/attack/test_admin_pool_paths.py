"""A managing qube that policy lets call admin.pool.Add (as Qubes' admin-global-rwx
policy would) cannot make a pool where a pool would reach Bulkhead's own state or the
host's system directories: the pool's directory gets written (qubes/, revisions_to_keep)
and later holds volumes. Positive control: the same call with an ordinary path succeeds
and the pool appears."""
import pathlib as _pl
import subprocess
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import engine_daemon  # noqa: F401,E402
from qrexec_fixtures import bin_path  # noqa: E402

CVM = "/usr/lib/bulkhead/qrexec-client-vm"


def add_from_qube(d, payload):
    r = subprocess.run([bin_path("qvm-run"), "-p", "-u", "root", "a",
                        f"printf '{payload}' | {CVM} dom0 admin.pool.Add+file"],
                       env=d.env, capture_output=True, timeout=120)
    return r.stdout


def test_pool_paths_from_a_managing_qube(engine_daemon, tmp_path):
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-pool.policy").write_text("admin.pool.Add  +file  a  @adminvm  allow  target=dom0\n"
                                        "admin.pool.List  *  a  @adminvm  allow  target=dom0\n")
    # Symlinks made by someone in dom0 that lead into the state, the system, or nowhere yet
    # (mkdir would follow a dangling one): refused where they lead (review finding).
    (tmp_path / "to-state").symlink_to(d.root)
    (tmp_path / "to-etc").symlink_to("/etc")
    (tmp_path / "dangling").symlink_to(d.root / "pools" / "via-dangling")
    (tmp_path / "hop").symlink_to(tmp_path / "to-state")
    links = [f"{tmp_path}/to-state", f"{tmp_path}/to-state/pools/x", f"{tmp_path}/to-etc/bh-pool",
             f"{tmp_path}/dangling", f"{tmp_path}/hop/new/deeper"]
    for path in links:
        out = add_from_qube(d, f"name=evil\\ndir_path={path}\\n")
        assert out.startswith(b"2\0QubesValueError\0"), (path, out)
    assert not (d.root / "pools" / "x").exists() and not (d.root / "pools" / "via-dangling").exists()
    assert not (d.root / "new").exists() and not _pl.Path("/etc/bh-pool").exists()
    for path in ("/etc/bh-pool", "/proc/self", "/usr/local/bh-pool", f"{d.root}/pools/sneaky", str(d.root.parent),
                 f"{d.root}/../x", "relative", "/", f"{tmp_path}/a/../../x"):
        out = add_from_qube(d, f"name=evil\\ndir_path={path}\\n")
        assert out.startswith(b"2\0QubesValueError\0"), (path, out)
    assert not _pl.Path("/etc/bh-pool").exists() and not _pl.Path("/usr/local/bh-pool").exists()
    assert not (d.root / "pools" / "sneaky").exists()
    assert "evil" not in d.call("admin.pool.List")
    # control: the call ran through policy and an ordinary directory is taken
    ok = tmp_path / "pools" / "good"
    assert add_from_qube(d, f"name=good\\ndir_path={ok}\\n") == b"0\0"
    assert ok.is_dir() and d.call("admin.pool.List") == "default\ngood\n"
    # and a symlink to an ordinary place is taken, as the place it leads to
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "to-elsewhere").symlink_to(elsewhere)
    assert add_from_qube(d, f"name=good2\\ndir_path={tmp_path}/to-elsewhere/p\\n") == b"0\0"
    assert (elsewhere / "p").is_dir()
    assert f"dir_path={elsewhere}/p\n" in d.call("admin.pool.Info", "dom0", arg="good2")
