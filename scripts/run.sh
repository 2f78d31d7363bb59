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
# One directory with every dom0 command of the build tree, for PATH.
mkdir -p "$build/bin"
for t in "$bin"/tools/qvm-* "$bin"/tools/qubes-prefs "$bin"/qrexec/qvm-run "$bin"/qrexec/qvm-console \
         "$bin"/qrexec/qrexec-client "$bin"/qrexec/policy/qrexec-policy-lint "$bin"/qrexec/policy/qrexec-policy-test \
         "$bin"/storage/qvm-template "$bin"/agent/qvm-copy-to-vm "$bin"/agent/qvm-move-to-vm; do
  if [ -x "$t" ]; then ln -sf "$t" "$build/bin/"; fi
done
if ! "$bin/tools/qvm-ls" --raw-list >/dev/null 2>&1; then
  # UPLINK=host|none|netns:NAME (make run UPLINK=host): where sys-net's traffic goes
  nohup "$bin/admin/bulkheadd" --root "$root" --runtime-dir "$runtime" --uplink "${UPLINK:-none}" \
    >>"$runtime/bulkheadd.log" 2>&1 </dev/null &
  echo $! >"$runtime/bulkheadd.pid"
  for _ in $(seq 100); do [ -S "$sock" ] && break; sleep 0.1; done
fi
echo "bulkheadd is running (root $root, socket $sock, log $runtime/bulkheadd.log)"
echo "try: export PATH=$PWD/$build/bin:\$PATH BULKHEAD_SOCKET=$sock BULKHEAD_ROOT=$root"
echo
"$bin/tools/qvm-ls"
