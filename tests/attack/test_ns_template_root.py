"""A template qube writes its root in place on a host filesystem. Every root layer the
ns engine mounts (a template's own root, the template root under an app qube, the
overlay) is nosuid and nodev, locked so: the qube's root cannot remount it suid, so a
setuid file a template writes never works from it, even without no_new_privs.
(What a template's root may cost in disk space, and the host's own mount of it:
test_template_root_limits.py.)"""
import pathlib as _pl
import sys as _sys

_sys.path.insert(0, str(_pl.Path(__file__).resolve().parents[1] / "integration"))
from ns_fixtures import ns_env, make_root  # noqa: E402,F401


def root_mount_options(q):
    line = next(ln for ln in q.sh("cat /proc/self/mountinfo", check=True).stdout.splitlines()
                if ln.split()[4] == "/")
    return set(line.split()[5].split(","))


def test_template_root_is_nosuid_and_stays_so(ns_env):
    root = make_root(ns_env.base / "tmpl-nosuid")
    t = ns_env.qube("tr1", root_rw=root, private=False)
    t.start()
    # positive control: this is the template's writable root, stored on the host
    t.sh("echo from-template > /written", check=True)
    assert (root / "written").read_text() == "from-template\n"
    opts = root_mount_options(t)
    assert {"nosuid", "nodev", "rw"} <= opts, opts
    # the qube's root cannot lift the flag (it is locked in the qube's mount namespace)
    r = t.sh("mount -o remount,bind,suid / 2>&1; mount -o remount,suid / 2>&1; echo done")
    assert "done" in r.stdout
    assert "nosuid" in root_mount_options(t)
    t.kill()
    app = ns_env.qube("tr2", private=False)
    app.args[app.args.index("--root-lower") + 1] = str(root)
    app.start()
    assert "from-template" in app.sh("cat /written", check=True).stdout  # control: that template
    assert "nosuid" in root_mount_options(app)
