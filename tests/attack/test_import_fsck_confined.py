"""An imported volume image may come from a qube (admin.vm.volume.Import over qrexec),
and bulkheadd checks it with e2fsck before the host kernel ever mounts it: e2fsck, a
large parser of those bytes, must not run as host root. Here bulkheadd runs in a mount
namespace of the test's where /usr/sbin/e2fsck is a wrapper that records who runs it and
with which limits, then runs the real e2fsck; the import itself must still work."""
import os
import pathlib
import shutil
import stat
import subprocess
import sys
import tempfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
from admin_fixtures import Daemon, bind_over_in_private_mounts, kill_all  # noqa: E402
from test_compat_volume_import import make_ext4  # noqa: E402

E2FSCK = "/usr/sbin/e2fsck"


def test_e2fsck_on_imported_data_runs_unprivileged_and_bounded(tmp_path):
    if not os.path.exists(E2FSCK):
        pytest.skip("no e2fsck")
    box = pathlib.Path(tempfile.mkdtemp(prefix="bh-fsck-"))
    try:
        os.chmod(box, 0o755)
        real = box / "e2fsck.real"
        shutil.copy2(E2FSCK, real)
        log = box / "log"
        log.touch()
        os.chmod(log, 0o666)
        wrapper = box / "e2fsck"
        wrapper.write_text(f"#!/bin/sh\n"
                           f"echo \"uid=$(id -u) gid=$(id -g) as=$(ulimit -v) cpu=$(ulimit -t) "
                           f"netdevs=$(($(wc -l < /proc/net/dev) - 2)) "
                           f"nnp=$(grep NoNewPrivs /proc/self/status | tr -dc 0-9)\" >> {log}\n"
                           f"exec {real} \"$@\"\n")
        wrapper.chmod(0o755)
        d = Daemon(tmp_path, defaults=False)
        d.preexec = bind_over_in_private_mounts(E2FSCK, wrapper)
        d.start()
        try:
            d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
            d.call("admin.vm.Create.AppVM+host", payload="name=a label=red")
            img = make_ext4(tmp_path / "new.img", 24, {"marker": b"x\n"})
            r = d.tool("qvm-volume", "import", "a:private", str(img))
            assert (r.returncode, r.stderr) == (0, ""), r.stderr
            rec = log.read_text()
            # positive control: the check ran, through the wrapper
            assert rec.count("uid=") == 1, rec
            fields = dict(kv.split("=") for kv in rec.split())
            assert fields["uid"] != "0" and fields["gid"] != "0", rec
            assert int(fields["uid"]) < (1 << 20)  # not any qube's identity either
            assert fields["nnp"] == "1", rec
            assert fields["as"] != "unlimited" and fields["cpu"] != "unlimited", rec
            assert fields["netdevs"] == "1", rec  # loopback only
            # and the image is in place, still root's alone
            st = os.stat(d.root / "pools/default/qubes/a/private.img")
            assert stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
        finally:
            kill_all(d)
            d.stop()
            d.cleanup()
    finally:
        shutil.rmtree(box, ignore_errors=True)
