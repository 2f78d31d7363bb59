#!/usr/bin/env bash
# Admin API calls per second (1, 8 and 64 concurrent clients) against a private
# bulkheadd holding 200 qubes, beside a bare connect-write-read ceiling measured in the
# same run (see bench/admin_load.c for the call mix).
#   bench/admin_api.sh                     3 s per cell
#   BENCH_SECONDS=5 BENCH_CLIENTS=1,8,64 BENCH_QUBES=200 bench/admin_api.sh
set -euo pipefail
cd "$(dirname "$0")/.."
build=${BULKHEAD_BUILD:-build}
[ -f "$build/build.ninja" ] || meson setup "$build" >/dev/null
ninja -C "$build" src/admin/bulkheadd bench/admin_load >/dev/null

tmp=$(mktemp -d /tmp/bulkhead-bench.XXXXXX)
pid=
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  # template roots are images mounted in the pool until their qube is removed
  awk -v d="$tmp/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l
  rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT   # so that the EXIT trap runs on Ctrl-C and kill too
trap 'exit 143' TERM

BULKHEAD_LOG=warn "$build/src/admin/bulkheadd" --root "$tmp/root" --runtime-dir "$tmp/run" \
  --no-default-qubes 2>"$tmp/bulkheadd.log" &
pid=$!
for _ in $(seq 200); do
  [ -S "$tmp/run/qubesd.sock" ] && break
  kill -0 "$pid" 2>/dev/null || { cat "$tmp/bulkheadd.log"; exit 1; }
  sleep 0.05
done
[ -S "$tmp/run/qubesd.sock" ] || { echo "bulkheadd did not come up" >&2; cat "$tmp/bulkheadd.log"; exit 1; }

"$build/bench/admin_load" --socket "$tmp/run/qubesd.sock" --bare "$tmp/bare.sock" \
  --qubes "${BENCH_QUBES:-200}" --seconds "${BENCH_SECONDS:-3}" --clients "${BENCH_CLIENTS:-1,8,64}"
