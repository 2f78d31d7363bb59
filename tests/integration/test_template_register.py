"""qvm-template build registers the new template with the bulkheadd that uses its pool."""
import subprocess

from admin_fixtures import BUILD, Daemon  # noqa: F401


def test_build_host_registers_template(tmp_path):
    d = Daemon(tmp_path, defaults=False, extra_args=["--no-autostart"]).start()
    try:
        env = dict(d.env, BULKHEAD_ROOT=str(d.root))
        r = subprocess.run([str(BUILD / "src/storage/qvm-template"), "build", "host", "tpl2"], env=env,
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "registered template tpl2" in r.stdout
        assert d.call("admin.vm.List", "tpl2").startswith("tpl2 class=TemplateVM")
        # built elsewhere (another root): only a hint, nothing registered
        other = tmp_path / "other-root"
        r = subprocess.run([str(BUILD / "src/storage/qvm-template"), "--root", str(other), "build", "host", "tpl3"],
                           env=env, capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "register it with: qvm-create" in r.stdout
        assert "tpl3" not in d.call("admin.vm.List")
    finally:
        d.stop()
        d.cleanup()
