#!/usr/bin/env bash
# Qube start, memory and scale, on real ns qubes of a private bulkheadd (figures beside a
# peer measured in the same run, never pass/fail):
#  (a) a halted qube to its first command's output: `qvm-run -p a true` from Halted
#      (killed with admin.vm.Kill between rounds), median of N, beside bubblewrap running
#      `true` in every namespace with host /usr (median of N); aim: within 1.5x;
#  (b) memory per idle running qube including its agent: cgroup memory usage of IDLE
#      idle qubes (after each answered a qvm-run), mean MiB; aim: under 2 MiB;
#  (c) starting MANY app qubes one after another through admin.vm.Start: total and per
#      qube, how many then run at once, RSS of all their processes and the daemon's.
# Usage: bench/qube_start.sh [BUILD_DIR]     env: BENCH_ROUNDS=20 BENCH_IDLE=10 BENCH_QUBES=500
# Needs root (the ns engine). Every qube is killed and the daemon stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export BULKHEAD_BUILD=$(realpath "${1:-${BULKHEAD_BUILD:-build}}")
exec /usr/bin/python3 - <<'PY'
import os, sys, time
sys.path.insert(0, "bench")
from bhbench import BWRAP, Bench, median_ms, pss_kib, ratio, rss_kib, timed
rounds = int(os.environ.get("BENCH_ROUNDS", "20"))
idle = int(os.environ.get("BENCH_IDLE", "10"))
many = int(os.environ.get("BENCH_QUBES", "500"))
b = Bench()
try:
    # (a) halted -> first output
    b.create_app("a")
    b.qvm_run("-p", "a", "true")  # first start: warms caches
    timed(BWRAP)
    # Rounds interleave the qube and its peer so that background load hits both alike;
    # each round then repeats the start split in two: admin.vm.Start alone (until the
    # qube's qrexec daemon is ready), then qvm-run into the running qube.
    t_q, t_b, t_st, t_run = [], [], [], []
    for _ in range(rounds):
        b.call("admin.vm.Kill", "a"); b.wait_state("a", "Halted")
        t_q.append(b.qvm_run("-p", "a", "true"))
        t_b.append(timed(BWRAP))
        b.call("admin.vm.Kill", "a"); b.wait_state("a", "Halted")
        t0 = time.perf_counter(); b.call("admin.vm.Start", "a"); t_st.append(time.perf_counter() - t0)
        t_run.append(b.qvm_run("-p", "a", "true"))
    b.call("admin.vm.Kill", "a"); b.wait_state("a", "Halted")
    mq, mb = median_ms(t_q), median_ms(t_b)
    print(f"(a) halted qube to first output  qvm-run -p a true      median of {rounds}: {mq:8.1f} ms  "
          f"(min {min(t_q)*1000:.1f}, max {max(t_q)*1000:.1f})")
    print(f"    peer: bwrap --unshare-all ... true                median of {rounds}: {mb:8.1f} ms  "
          f"(min {min(t_b)*1000:.1f}, max {max(t_b)*1000:.1f})")
    print(f"    ratio qube / bwrap: {ratio(mq, mb)}  (aim: within 1.5x)")
    print(f"    split: admin.vm.Start alone {median_ms(t_st):.1f} ms + qvm-run -p a true into the running qube "
          f"{median_ms(t_run):.1f} ms (medians)")
    # one row of the summary table scripts/bench.sh prints at the end
    print(f"ROW\thalted qube -> first output (qvm-run -p a true; Start {median_ms(t_st):.1f} + run "
          f"{median_ms(t_run):.1f} ms)\t{mq:.1f} ms\tbwrap {mb:.1f} ms\t{ratio(mq, mb)}\t<= 1.5x")

    # (b) memory per idle qube, agent included
    names = [f"idle{i}" for i in range(idle)]
    for n in names:
        b.create_app(n)
        b.qvm_run(n, "true")  # autostarts it and waits for its agent
    time.sleep(2)
    usage = rss = procs = 0
    for n in names:
        u, r, p = b.memory_of(n)
        usage += u; rss += r; procs += p
    pss = sum(pss_kib(p) for n in names for p in b.procs_of(n)) * 1024
    print(f"(b) idle qube memory (cgroup memory usage, incl. init + agent), mean of {idle}: "
          f"{usage / idle / 2**20:.2f} MiB  (aim: under 2 MiB)")
    print(f"    RSS of its processes: {rss / idle / 2**20:.2f} MiB over {procs / idle:.1f} processes "
          f"(RSS counts shared library pages in every qube); PSS {pss / idle / 2**20:.2f} MiB")
    for n in names:
        b.call("admin.vm.Kill", n)

    # (c) many qubes
    if many > 0:
        t0 = time.perf_counter()
        for i in range(many):
            b.create_app(f"m{i}")
        tc = time.perf_counter() - t0
        print(f"(c) created {many} app qubes (admin.vm.Create.AppVM) in {tc:.1f} s ({tc / many * 1000:.1f} ms each)")
        started = 0; err = ""
        t0 = time.perf_counter()
        for i in range(many):
            try:
                b.call("admin.vm.Start", f"m{i}")
                started += 1
            except Exception as e:  # noqa: BLE001 -- report where it stops
                err = f" (stopped at m{i}: {e})"
                break
        ts = time.perf_counter() - t0
        time.sleep(2)
        lst = b.call("admin.vm.List")
        running = sum(1 for l in lst.splitlines() if " class=AppVM state=Running" in l)
        urss = qrss = 0
        for i in range(started):
            u, r, _ = b.memory_of(f"m{i}")
            urss += u; qrss += r
        drss = rss_kib(b.d.proc.pid) * 1024
        # the per-qube qrexec daemons run on the host, outside the qubes' cgroups
        hrss = hpss = nh = 0
        for p in os.listdir("/proc"):
            if p.isdigit():
                try:
                    exe = os.readlink(f"/proc/{p}/exe")
                except OSError:
                    continue
                if exe.startswith(os.environ["BULKHEAD_BUILD"] + "/"):
                    if int(p) != b.d.proc.pid:
                        hrss += rss_kib(p) * 1024; hpss += pss_kib(p) * 1024; nh += 1
        mem = dict(l.split(":", 1) for l in open("/proc/meminfo"))
        print(f"    started {started} through admin.vm.Start in {ts:.1f} s ({ts / max(started, 1) * 1000:.1f} ms per qube){err}")
        print(f"    running at once: {running}; cgroup usage total {urss / 2**20:.0f} MiB, RSS inside qubes "
              f"{qrss / 2**20:.0f} MiB, host-side helpers ({nh} processes run from the build dir: the qubes' qrexec daemons...) RSS {hrss / 2**20:.0f} MiB / PSS {hpss / 2**20:.0f} MiB, bulkheadd RSS {drss / 2**20:.1f} MiB; "
              f"host MemAvailable {int(mem['MemAvailable'].split()[0]) // 1024} MiB")
        t0 = time.perf_counter()
        for i in range(started):
            b.call("admin.vm.Kill", f"m{i}")
        print(f"    killed them in {time.perf_counter() - t0:.1f} s")
finally:
    b.close()
PY
