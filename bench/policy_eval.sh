#!/usr/bin/env bash
# Policy evaluation time for policies of N rules, the deciding rule last (worst case
# for first-match), beside a plain linear strcmp scan over the same rules' "service
# source" strings in the same run. Two shapes: "distinct" (every rule its own service:
# the service index skips the rest) and "same" (every rule the same service, only the
# last source matches: each rule is really matched).
# Usage: bench/policy_eval.sh [BUILD_DIR] [N...]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-${BULKHEAD_BUILD:-build}}
shift || true
sizes=("$@")
[ ${#sizes[@]} -gt 0 ] || sizes=(10 100 1000 10000 100000)
bin=$build/src/qrexec/policy/bench-policy
[ -x "$bin" ] || ninja -C "$build" src/qrexec/policy/bench-policy >/dev/null
echo "# qrexec policy evaluation: per-call time (deciding rule last) vs a strcmp scan"
for n in "${sizes[@]}"; do
  "$bin" "$n" distinct
  "$bin" "$n" same
done
