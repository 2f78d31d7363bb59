"""A disposable's private is a throwaway layer over its disposable template's private
(docs/storage.md "Disposables"): the base is shared read-only by every disposable of
that template, each disposable writes into an upper layer of its own. From inside two
concurrent disposables, writes must neither reach the template's private image (nor the
shared base) nor be seen by the other disposable, and nothing survives them."""
import hashlib
import pathlib
import subprocess
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import engine_daemon, state_of  # noqa: E402,F401
from qrexec_fixtures import bin_path  # noqa: E402


def run(d, vm, cmd, user=None):
    args = [bin_path("qvm-run"), "-p"] + (["-u", user] if user else []) + [vm, cmd]
    return subprocess.run(args, env=d.env, capture_output=True, text=True, timeout=60)


def sha(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def wait_unbound(img, timeout=30):
    """Until no loop device is backed by img (the qube's ext4 is unmounted and flushed)."""
    import glob
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        backing = []
        for f in glob.glob("/sys/block/loop*/loop/backing_file"):
            try:
                backing.append(open(f).read().strip())
            except OSError:
                pass
        if str(img) not in backing:
            return
        time.sleep(0.05)
    raise AssertionError(f"{img} still backs a loop device")


def test_disposable_writes_stay_in_the_disposable(engine_daemon):
    d = engine_daemon
    # `a` is the disposable template; something of its own in its private
    d.call("admin.vm.property.Set+template_for_dispvms", "a", "True")
    r = run(d, "a", "echo from-the-template > ~/tmpl-marker && sync && echo ok")
    assert r.stdout == "ok\n", r
    d.call("admin.vm.Shutdown", "a")
    from admin_fixtures import wait_state
    assert wait_state(d, "a", "Halted")
    qubes = next(d.root.glob("pools/*/qubes"))
    tmpl_img = qubes / "a/private.img"
    wait_unbound(tmpl_img)
    before = sha(tmpl_img)

    d1 = d.call("admin.vm.CreateDisposable", "a").strip()
    d2 = d.call("admin.vm.CreateDisposable", "a").strip()
    d.call("admin.vm.Start", d1)
    d.call("admin.vm.Start", d2)
    base = qubes / "a/dispvm-base.img"
    assert base.exists()
    base_before = sha(base)
    for disp in (d1, d2):
        # positive controls: the layered private is in use, and it starts as the template's
        mounts = run(d, disp, "awk '$5 == \"/rw\" { for (i = 7; $i != \"-\"; i++); print $(i+1) }' /proc/self/mountinfo")
        assert mounts.stdout.split() == ["overlay"], mounts
        assert run(d, disp, "cat ~/tmpl-marker").stdout == "from-the-template\n"

    # d1 writes as the user and as root, over the template's file too
    r = run(d, d1, "echo d1-secret > ~/d1-secret && echo changed > ~/tmpl-marker && sync && echo ok")
    assert r.stdout == "ok\n", r
    r = run(d, d1, "mkdir -p /rw/config && echo d1 > /rw/config/d1-root && sync && echo ok",
            user="root")
    assert r.stdout == "ok\n", r
    assert run(d, d1, "cat ~/d1-secret ~/tmpl-marker").stdout == "d1-secret\nchanged\n"
    # the other disposable of the same template sees none of it
    r = run(d, d2, "cat ~/tmpl-marker; ls -a ~ /rw/config 2>&1; echo d2-secret > ~/d2-secret && echo ok")
    assert "from-the-template\n" in r.stdout and "d1" not in r.stdout and r.stdout.endswith("ok\n"), r
    assert "d2-secret" not in run(d, d1, "ls -a ~").stdout
    # the base cannot be reached for writing from inside either (read-only, locked)
    r = run(d, d1, "mount -o remount,rw /rw 2>&1; grep ' /rw ' /proc/self/mountinfo", user="root")
    assert " overlay " in r.stdout and "ext4" not in r.stdout, r

    d.call("admin.vm.Kill", d1)
    d.call("admin.vm.Kill", d2)
    for disp in (d1, d2):
        for _ in range(3000):
            if disp not in d.call("admin.vm.List"):
                break
            __import__("time").sleep(0.02)
        assert disp not in d.call("admin.vm.List")
    # nothing reached the template's image or the shared base
    assert sha(tmpl_img) == before
    assert sha(base) == base_before
    r = run(d, "a", "cat ~/tmpl-marker; ls -a ~")
    assert r.stdout.startswith("from-the-template\n") and "secret" not in r.stdout, r
    d.call("admin.vm.Kill", "a")
    wait_unbound(tmpl_img)
    # and a new disposable starts from the template's state again, nothing of d1's
    r = subprocess.run([bin_path("qvm-run"), "-p", "--dispvm=a", "--", "cat ~/tmpl-marker; ls -a ~"],
                       env=d.env, capture_output=True, text=True, timeout=60)
    assert r.stdout.startswith("from-the-template\n") and "secret" not in r.stdout, r
