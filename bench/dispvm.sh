#!/usr/bin/env bash
# A disposable's whole life, `qvm-run --dispvm=dvmt -- true` (create, start, run, kill,
# remove), cold and preloaded, beside bubblewrap running `true` measured in the same run.
#  cold:      no preloaded disposable; aim within 3x of bwrap;
#  preloaded: feature preload-dispvm-max=1 on dvmt; before each round the bench waits
#             until the preloaded disposable is Running; aim within 1.5x of bwrap.
# Rounds are interleaved (ours, then bwrap's), and before every bwrap round the bench
# waits until the daemon and its qubes are idle (no CPU used for 50 ms: the used
# disposable removed, the next preloaded one started), so that our own leftover work
# never slows the peer.
# Usage: bench/dispvm.sh [BUILD_DIR]     env: BENCH_ROUNDS=20
# Needs root (the ns engine). Every qube is killed and the daemon stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-${BULKHEAD_BUILD:-build}}")
exec /usr/bin/python3 - <<'PY'
import os, sys, time
sys.path.insert(0, "bench")
from bhbench import BWRAP, Bench, median_ms, ratio, timed, wait_preloaded

rounds = int(os.environ.get("BENCH_ROUNDS", "20"))
b = Bench()


try:
    b.create_app("dvmt")
    b.call("admin.vm.property.Set+template_for_dispvms", "dvmt", "True")
    run = ["--dispvm=dvmt", "--", "true"]
    b.qvm_run(*run)  # warm-up
    timed(BWRAP)
    # Each measured round is followed by a bwrap round, so background load hits both;
    # the peer runs once our work is done.
    cold, peer, waits = [], [], []
    def peer_round():
        waits.append(b.wait_idle())
        peer.append(timed(BWRAP))
    for _ in range(rounds):
        cold.append(b.qvm_run(*run)); peer_round()
    # The cold life split by API call (the same steps qvm-run --dispvm takes), for the
    # record of where the time goes.
    split = {"CreateDisposable": [], "Start": [], "qvm-run true": [], "Kill (+ removal)": []}
    for _ in range(max(3, rounds // 2)):
        t0 = time.perf_counter(); name = b.call("admin.vm.CreateDisposable", "dvmt").split()[0]
        t1 = time.perf_counter(); b.call("admin.vm.Start", name)
        t2 = time.perf_counter(); b.qvm_run("-p", name, "true")
        t3 = time.perf_counter(); b.call("admin.vm.Kill", name)
        t4 = time.perf_counter()
        for k, v in zip(split, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            split[k].append(v)
    b.call("admin.vm.feature.Set+preload-dispvm-max", "dvmt", "1")
    pre, used = [], set()
    for _ in range(rounds):
        used.add(wait_preloaded(b))
        pre.append(b.qvm_run(*run)); peer_round()
    b.call("admin.vm.feature.Remove+preload-dispvm-max", "dvmt")
    mc, mp, mb = median_ms(cold), median_ms(pre), median_ms(peer)
    print(f"disposable whole life, qvm-run --dispvm=dvmt -- true, median of {rounds}:")
    print(f"  cold:      {mc:8.1f} ms  (min {min(cold)*1000:.1f}, max {max(cold)*1000:.1f})  ratio {ratio(mc, mb)}  (aim: within 3x)")
    print(f"  preloaded: {mp:8.1f} ms  (min {min(pre)*1000:.1f}, max {max(pre)*1000:.1f})  ratio {ratio(mp, mb)}  (aim: within 1.5x)"
          f"  [{len(used)} distinct preloaded disposables used]")
    print("  cold split (medians): " + ", ".join(f"{k} {median_ms(v):.1f} ms" for k, v in split.items()))
    print(f"ROW\tdisposable whole life, cold\t{mc:.1f} ms\tbwrap {mb:.1f} ms\t{ratio(mc, mb)}\t<= 3x")
    print(f"ROW\tdisposable whole life, preloaded\t{mp:.1f} ms\tbwrap {mb:.1f} ms\t{ratio(mp, mb)}\t<= 1.5x")
    print(f"  peer: bwrap --unshare-all ... true: {mb:8.1f} ms  (median of {len(peer)}, one after each round,"
          f" once the daemon was idle: waited {median_ms(waits):.0f} ms median for that)")
finally:
    b.close()
PY
