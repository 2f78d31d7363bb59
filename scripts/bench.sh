#!/usr/bin/env bash
# Runs every bench/*.sh with small default sizes (the whole run takes a few minutes),
# each under a header. Figures are ratios against a peer measured in the same run;
# nothing here passes or fails on speed. A bench that errors is reported and the run
# goes on; the exit status is non-zero if any bench errored.
#   scripts/bench.sh [BUILD_DIR]          (make bench calls it; needs root for real qubes)
# Full sizes: run a bench directly (e.g. bench/qube_start.sh starts 500 qubes).
set -uo pipefail
cd "$(dirname "$0")/.."
build=$(realpath -m "${1:-${BULKHEAD_BUILD:-build}}")
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null || exit 1
ninja -C "$build" >/dev/null || exit 1
export BULKHEAD_BUILD=$build
# The benches measure namespace qubes (and VM qubes where they say pvh by name), also
# where KVM would make new qubes VMs by default.
export BULKHEAD_DEFAULT_VIRT_MODE=${BULKHEAD_DEFAULT_VIRT_MODE:-ns}

failed=()
log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() {  # name, command...
  local name=$1; shift
  printf '\n=== %s  (%s)\n' "$name" "$*"
  local t0=$SECONDS
  if "$@" | tee -a "$log"; then
    printf -- '--- %s: %ss\n' "$name" $((SECONDS - t0))
  else
    printf -- '--- %s: FAILED to run (exit %s)\n' "$name" "$?"
    failed+=("$name")
  fi
}

echo "Bulkhead benchmarks, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, kernel $(uname -r), build $build"
echo "load average at start: $(cut -d" " -f1-3 /proc/loadavg)"
for f in bench/*.sh; do
  n=$(basename "$f" .sh)
  case $n in
    admin_api)             run "$n" env BENCH_SECONDS=2 "$f" ;;
    ns_start)              run "$n" env ITER=10 IDLE=5 MANY=20 "$f" "$build" ;;
    policy_eval)           run "$n" "$f" "$build" 10 1000 100000 ;;
    qrexec_call)           run "$n" "$f" "$build" 200 ;;
    qrexec_call_qube)      run "$n" "$f" "$build" 200 ;;
    qrexec_filecopy)       run "$n" "$f" "$build" 256 ;;
    qrexec_filecopy_qubes) run "$n" env BENCH_COPY_MIB=1024 BENCH_ROUNDS=3 "$f" "$build" ;;
    qube_start)            run "$n" env BENCH_ROUNDS=20 BENCH_IDLE=10 BENCH_QUBES=100 "$f" "$build" ;;
    dispvm)                run "$n" env BENCH_ROUNDS=20 "$f" "$build" ;;
    storage_clone)         run "$n" "$f" "$build" 3 128 ;;
    flood_isolation)       run "$n" "$f" "$build" 20 15 ;;
    *)                     run "$n" "$f" "$build" ;;
  esac
done
# The vm engine's benches (python; they skip with the reason where VM qubes cannot run):
# small sizes here, the issue's 1 GiB copy with COPY_MB=1024 bench/vm_start.py
run vm_start env ROUNDS=2 RUNS=3 COPY_MB=64 bench/vm_start.py "$build"
run vm_net env BENCH_VMNET_MB=16 BENCH_VMNET_ROUNDS=2 bench/vm_net.py "$build"
# The benches' ROW lines (what, ours, peer, ratio, aim): one table of the figures that
# have aims (docs/bench.md keeps their history).
echo; echo "=== summary ($(date -u '+%Y-%m-%d %H:%M UTC'), load average now: $(cut -d" " -f1-3 /proc/loadavg))"
echo "| what | Bulkhead | peer (same run) | ratio | aim |"
echo "|---|---|---|---|---|"
grep '^ROW' "$log" | cut -f2- | awk -F'\t' '{ printf "| %s | %s | %s | %s | %s |\n", $1, $2, $3, $4, $5 }'
if [ ${#failed[@]} -gt 0 ]; then
  echo; echo "benches that failed to run: ${failed[*]}"; exit 1
fi
