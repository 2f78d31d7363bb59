"""A qube's qrexec calls run without root on the host: the call process the daemon's
root monitor forks (policy, bulkheadd, the target's daemon and vchan dir) and every dom0
service it runs for the qube are the qube's call identity (host UID 2^19 + 2^16 + qid,
group "dom0 qrexec" 2^19 + 2^17, no capability in any set, no_new_privs, filtered).

A dom0 service stands in for one that a qube's call has taken over (it runs whatever the
qube feeds it): from there, reading another qube's private volume or its mounted
private, bulkheadd's state dir, writing the host's /etc, or signalling another qube's
qrexec-daemon must fail; each has a positive control that the same probe succeeds on
something it may reach, or that root reaches the target."""
import os
import pathlib
import re
import shutil
import sys
import tempfile

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "integration"))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from admin_fixtures import engine_daemon, qvm_run  # noqa: E402,F401
from test_qrexec_privsep import CALL_GID, CALL_ID_BASE, daemon_pid, descendants, status  # noqa: E402

# One line per attempt, "NAME: STATUS", and an end marker: the probe ran to its end.
PROBE = r"""#!/bin/sh
try() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "$name: ok"; else echo "$name: denied"; fi; }
echo "uid: $(id -u) gid: $(id -g) groups: $(id -G)"
grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status
try state-dir-list ls "$BH_ROOT"
try state-db-read head -c 16 "$BH_ROOT/qubes.db"
try policy-read cat "$BH_ROOT/policy.d/10-test.policy"
try other-private-img head -c 16 "$BH_OTHER_IMG"
try other-private-mount ls "/proc/$BH_OTHER_INIT/root/rw"
try other-root-fs cat "/proc/$BH_OTHER_INIT/root/etc/hostname"
try etc-write touch /etc/bh-call-probe
try control-read cat "$BH_CONTROL/readable"
try control-write touch "$BH_CONTROL/w/written-$$"
try kill-other-monitor kill -0 "$BH_OTHER_MON"
try kill-other-reader kill -0 "$BH_OTHER_READER"
try kill-own-caller kill -0 "$PPID"
echo probe-end
"""


@pytest.fixture
def dom0_service(monkeypatch):
    """A dom0 service dir the daemons of this test use (bulkheadd passes
    $BULKHEAD_DOM0_SERVICE_PATH on), outside pytest's 0700 tmp dirs, like /etc/qubes-rpc."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="bh-dom0rpc-"))
    d.chmod(0o755)
    (d / "w").mkdir()
    (d / "w").chmod(0o777)
    (d / "readable").write_text("control\n")
    (d / "readable").chmod(0o644)
    svc = d / "test.Probe"
    svc.write_text(PROBE)
    svc.chmod(0o755)
    monkeypatch.setenv("BULKHEAD_DOM0_SERVICE_PATH", str(d))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def reader_of(d, name):
    kids = [p for p in descendants(daemon_pid(d, name)) if (status(p) or {}).get("Name") == "qrexec-unpriv"]
    assert len(kids) == 1, kids
    return kids[0]


def test_a_dom0_service_run_for_a_qube_has_no_root(dom0_service, engine_daemon):
    d = engine_daemon
    pol = d.root / "policy.d"
    pol.mkdir(exist_ok=True)
    (pol / "10-test.policy").write_text("test.Probe  *  a  @adminvm  allow\n")
    for q in ("a", "b"):
        assert qvm_run(d, q, "true").returncode == 0
    qid_a = status(reader_of(d, "a"))["Uid"].split()[0]
    qid_a = int(qid_a) - (1 << 19)
    other_init = (d.runtime / "qubes" / "b" / "init.pid").read_text().split()[0]
    imgs = [p for p in d.root.rglob("private.img") if p.parent.name == "b"]
    assert len(imgs) == 1, list(d.root.rglob("private.img"))
    env = {"BH_ROOT": str(d.root), "BH_OTHER_IMG": str(imgs[0]), "BH_OTHER_INIT": other_init,
           "BH_CONTROL": str(dom0_service), "BH_OTHER_MON": str(daemon_pid(d, "b")),
           "BH_OTHER_READER": str(reader_of(d, "b"))}
    # the targets are written into the probe (a dom0 service gets the daemon's
    # environment, not the test's)
    pre = "".join(f"export {k}={v}; " for k, v in env.items())
    (dom0_service / "test.Probe").write_text(PROBE.replace("#!/bin/sh\n", "#!/bin/sh\n" + pre + "\n", 1))
    try:
        r = qvm_run(d, "-p", "--user", "root", "a", "/usr/lib/bulkhead/qrexec-client-vm @adminvm test.Probe")
    finally:
        etc_written = os.path.exists("/etc/bh-call-probe")
        if etc_written:  # a failing build wrote the host's /etc: leave nothing behind
            os.unlink("/etc/bh-call-probe")
    out = r.stdout.decode()
    assert "probe-end" in out, (r.returncode, out, r.stderr, d.log.read_text()[-2000:])
    res = dict(re.split(r":\s+", line, maxsplit=1) for line in out.splitlines()
               if ":" in line and not line.startswith("uid"))

    # the identity: the qube's call UID in every slot, the dom0 qrexec group only
    assert f"uid: {CALL_ID_BASE + qid_a} gid: {CALL_GID} groups: {CALL_GID}" in out, out
    for cap in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"):
        assert int(res[cap].strip(), 16) == 0, (cap, res[cap])
    assert res["NoNewPrivs"].strip() == "1" and res["Seccomp"].strip() == "2", out

    # positive controls: the probe reads and writes where it may, signals its own caller
    assert res["control-read"] == "ok" and res["control-write"] == "ok", out
    assert res["kill-own-caller"] == "ok", out
    # ... and root reaches every target below (they exist and are readable)
    assert os.listdir(d.root) and open(d.root / "qubes.db", "rb").read(16)
    assert open(imgs[0], "rb").read(16) is not None
    assert os.listdir(f"/proc/{other_init}/root/rw")
    os.kill(daemon_pid(d, "b"), 0)
    os.kill(reader_of(d, "b"), 0)

    # the attacks
    for what in ("state-dir-list", "state-db-read", "policy-read", "other-private-img", "other-private-mount",
                 "other-root-fs", "etc-write", "kill-other-monitor", "kill-other-reader"):
        assert res[what] == "denied", (what, out)
    assert not etc_written
