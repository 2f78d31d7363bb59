#!/usr/bin/env bash
# Starts bulkheadd from the build tree (unless one already answers on the socket),
# waits for it, and shows the qubes. `--stop` stops a daemon started this way.
set -euo pipefail
cd "$(dirname "$0")/.."
stop=0
[ "${1:-}" = "--stop" ] && { stop=1; shift; }
build=$1 root=$2 runtime=$3
sock=$runtime/qubesd.sock
export BULKHEAD_SOCKET=$sock
bin=$PWD/$build/src
if [ $stop = 1 ]; then
  [ -f "$runtime/bulkheadd.pid" ] && kill "$(cat "$runtime/bulkheadd.pid")" && echo "bulkheadd stopped"
  exit 0
fi
mkdir -p "$root" "$runtime"
if ! "$bin/tools/qvm-ls" --raw-list >/dev/null 2>&1; then
  nohup "$bin/admin/bulkheadd" --root "$root" --runtime-dir "$runtime" \
    >>"$runtime/bulkheadd.log" 2>&1 </dev/null &
  echo $! >"$runtime/bulkheadd.pid"
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
fi
echo "bulkheadd is running (root $root, socket $sock, log $runtime/bulkheadd.log)"
echo "tools are in $bin/tools; try: export PATH=$bin/tools:\$PATH BULKHEAD_SOCKET=$sock"
echo
"$bin/tools/qvm-ls"
