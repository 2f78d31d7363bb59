#!/usr/bin/env bash
# A quiet qube's latency while another qube floods: qrexec calls into the quiet qube
# (`qrexec-client -d quiet user:true`) and `qvm-ls` (admin.vm.List), median of N, first
# with nothing else running, then while qube `flood` runs, from inside, CONC loops of
# denied calls (no policy rule) and DISP loops of calls into new disposables (allowed,
# bounded per caller: alive at once, and new ones per second). Rounds are interleaved (a call, then a qvm-ls). Also prints how
# many calls the flood made and how many were refused, and the host CPU time the flood
# cost (bulkheadd and every host process under it, from /proc: user+system, own and of
# reaped children; processes inside a qube's PID namespace apart) per flooded call.
# Aim: within 2x of quiet.
# BENCH_QID_FROM=Q: the bench's bulkheadd gives qids from Q up (--qid-base); by default
# it takes a slot of its own, as the tests' daemons do (tests/integration/qid_slots.py).
# Either way no other bulkheadd on the host holds the same qids (src/admin/qid_claim.h).
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
d = Daemon(tmp, defaults=False, qid_base=int(os.environ.get("BENCH_QID_FROM", "0"))).start()
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

    hz = os.sysconf("SC_CLK_TCK")
    host_ns = os.readlink(f"/proc/{d.proc.pid}/ns/pid")

    def tree_cpu():
        """CPU seconds of bulkheadd's tree: {"bulkheadd": its own, "host": host processes
        (own + reaped children), "qube": processes in a qube's PID namespace}."""
        procs = {}
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                with open(f"/proc/{pid}/stat") as f:
                    st = f.read()
                ns = os.readlink(f"/proc/{pid}/ns/pid")
            except OSError:
                continue
            fl = st[st.rindex(")") + 2:].split()
            comm = st[st.index("(") + 1:st.rindex(")")]
            procs[int(pid)] = (int(fl[1]), [int(x) / hz for x in fl[11:15]], ns != host_ns, comm)
        kids = {}
        for pid, (pp, _, _, _) in procs.items():
            kids.setdefault(pp, []).append(pid)
        out = {"bulkheadd": sum(procs[d.proc.pid][1][:2]), "host": 0.0, "qube": 0.0}
        todo = [d.proc.pid]
        while todo:
            pid = todo.pop()
            _, t, in_qube, comm = procs[pid]
            out["qube" if in_qube else "host"] += sum(t)
            if not in_qube:
                out["by " + comm] = out.get("by " + comm, 0.0) + sum(t)
            todo += kids.get(pid, [])
        return out

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
    cpu0, w0 = tree_cpu(), time.time()
    flooder.start()
    time.sleep(2)
    t0 = time.time()
    flood_c, flood_l = measure()
    busy = time.time() - t0
    flooder.join()
    cpu1, w1 = tree_cpu(), time.time()
    out = res["r"].stdout.decode().split()
    print(f"quiet qube, median of {n}: qrexec call {quiet_c:.2f} ms, qvm-ls {quiet_l:.2f} ms")
    print(f"while `flood` floods ({conc} denied-call loops + {ndisp} disposable loops, {secs} s; measured over {busy:.1f} s):"
          f" qrexec call {flood_c:.2f} ms, qvm-ls {flood_l:.2f} ms")
    print(f"ratio under flood: qrexec call {flood_c / quiet_c:.2f}x, qvm-ls {flood_l / quiet_l:.2f}x (aim: under 2x)")
    print(f"flood output (denied calls per loop, then disposable calls ok/no): {' '.join(out)}")
    # the flood's calls: each denied loop prints its count, the disposable loop "N ok M no"
    calls = sum(int(w) for w in out if w.isdigit())
    dcpu = {k: cpu1.get(k, 0.0) - cpu0.get(k, 0.0) for k in set(cpu0) | set(cpu1)}
    print(f"host CPU over the flood ({w1 - w0:.1f} s, {calls} flooded calls; the quiet qube's measured rounds"
          f" included): bulkheadd {dcpu['bulkheadd'] * 1000:.0f} ms ({dcpu['bulkheadd'] * 1e3 / max(calls, 1):.2f} ms"
          f" per flooded call), all host processes {dcpu['host'] * 1000:.0f} ms"
          f" ({dcpu['host'] * 1e3 / max(calls, 1):.2f} ms per call), in qubes {dcpu['qube'] * 1000:.0f} ms")
    top = sorted((k for k in dcpu if k.startswith("by ")), key=lambda k: -dcpu[k])[:6]
    print("host CPU by process name (own and reaped children's, ms): "
          + ", ".join(f"{k[3:]} {dcpu[k] * 1000:.0f}" for k in top))
    if busy > secs:
        print("note: the measurement outlasted the flood; raise FLOOD_SECONDS for a fair figure")
finally:
    kill_all(d)
    d.stop()
    d.cleanup()
    shutil.rmtree(tmp, ignore_errors=True)
PY
