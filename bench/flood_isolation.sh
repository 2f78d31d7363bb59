#!/usr/bin/env bash
# A quiet qube's latency while another qube floods: qrexec calls into the quiet qube
# (`qrexec-client -d quiet user:true`) and `qvm-ls` (admin.vm.List), median of N, first
# with nothing else running, then while qube `flood` runs, from inside, CONC loops of
# denied calls (no policy rule) and DISP loops of calls into new disposables (allowed,
# bounded per caller: alive at once, and new ones per second). Rounds are interleaved (a call, then a qvm-ls). Also prints how
# many calls the flood made and how many were refused. Aim: within 2x of quiet.
# Usage: bench/flood_isolation.sh [BUILD_DIR] [N] [FLOOD_SECONDS]   (root, real qubes)
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-build}")
N=${2:-40}
SECS=${3:-20}
CONC=${BENCH_FLOOD_LOOPS:-4}
DISP=${BENCH_DISP_LOOPS:-1}
exec /usr/bin/python3 - "$N" "$SECS" "$CONC" "$DISP" <<'PY'
import os, shutil, statistics, subprocess, sys, tempfile, threading, time
sys.path.insert(0, "tests/integration")
from admin_fixtures import Daemon, kill_all
from qrexec_fixtures import BIN
n, secs, conc, ndisp = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
tmp = tempfile.mkdtemp(prefix="bh-bench-")
d = Daemon(tmp, defaults=False).start()
try:
    d.call("admin.vm.Create.TemplateVM", payload="name=host label=black")
    d.call("admin.property.Set+default_template", payload="host")
    for name in ("quiet", "flood", "dvmt"):
        d.call("admin.vm.Create.AppVM+host", payload=f"name={name} label=red")
    d.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    (d.root / "policy.d").mkdir(exist_ok=True)
    (d.root / "policy.d" / "10-bench.policy").write_text("qubes.VMShell  *  flood  @dispvm:dvmt  allow\n")
    d.call("admin.vm.Start", "quiet")
    d.call("admin.vm.Start", "flood")
    env = dict(os.environ, BULKHEAD_RUNTIME=str(d.runtime))
    call = [str(BIN / "qrexec-client"), "-d", "quiet", "user:true"]
    ls_bin = os.path.join(os.environ["BULKHEAD_BUILD"], "src/tools/qvm-ls")
    ls_env = dict(d.env)

    def measure():
        t_c, t_l = [], []
        for _ in range(n):
            t0 = time.perf_counter(); subprocess.run(call, check=True, env=env); t_c.append(time.perf_counter() - t0)
            t0 = time.perf_counter(); subprocess.run([ls_bin], check=True, env=ls_env, stdout=subprocess.DEVNULL)
            t_l.append(time.perf_counter() - t0)
        return statistics.median(t_c) * 1000, statistics.median(t_l) * 1000

    for _ in range(5):
        subprocess.run(call, check=True, env=env)
    quiet_c, quiet_l = measure()
    cvm = "/usr/lib/bulkhead/qrexec-client-vm"
    denied = f"end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do {cvm} quiet qubes.Nope </dev/null >/dev/null 2>&1; echo x; done | wc -l"
    disp = f"end=$(( $(date +%s) + {secs} )); while [ $(date +%s) -lt $end ]; do echo true | {cvm} @dispvm:dvmt qubes.VMShell >/dev/null 2>&1 && echo ok || echo no; done | sort | uniq -c | tr '\\n' ' '"
    script = " & ".join([f"( {denied} )"] * conc + [f"( {disp} )"] * ndisp) + "; wait"
    res = {}
    flooder = threading.Thread(target=lambda: res.update(r=subprocess.run(
        [str(BIN / "qrexec-client"), "-d", "flood", "root:" + script], env=env, capture_output=True, timeout=secs + 120)))
    flooder.start()
    time.sleep(2)
    t0 = time.time()
    flood_c, flood_l = measure()
    busy = time.time() - t0
    flooder.join()
    out = res["r"].stdout.decode().split()
    print(f"quiet qube, median of {n}: qrexec call {quiet_c:.2f} ms, qvm-ls {quiet_l:.2f} ms")
    print(f"while `flood` floods ({conc} denied-call loops + {ndisp} disposable loops, {secs} s; measured over {busy:.1f} s):"
          f" qrexec call {flood_c:.2f} ms, qvm-ls {flood_l:.2f} ms")
    print(f"ratio under flood: qrexec call {flood_c / quiet_c:.2f}x, qvm-ls {flood_l / quiet_l:.2f}x (aim: under 2x)")
    print(f"flood output (denied calls per loop, then disposable calls ok/no): {' '.join(out)}")
    if busy > secs:
        print("note: the measurement outlasted the flood; raise FLOOD_SECONDS for a fair figure")
finally:
    kill_all(d)
    d.stop()
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
PY
