#!/usr/bin/env bash
# Builds every libFuzzer harness (clang, ASan+UBSan) and runs each one: first over its
# committed inputs (fuzz/seeds/<name>/ and the minimised fuzz/corpus/<name>/), then for
# a fixed time. New inputs go to build-fuzz/work/<name>/ (not committed); a crash, leak,
# sanitizer report or an input slower than FUZZ_TIMEOUT seconds is left as
# fuzz/crash-<name>-* and fails the run. See fuzz/README.md.
#
#   scripts/fuzz.sh [NAME...]            fuzz each for FUZZ_SECONDS (default 60)
#   FUZZ_BUDGET=300 scripts/fuzz.sh      split 300 s evenly over all harnesses (CI)
#   FUZZ_SMOKE=1 scripts/fuzz.sh         replay the committed inputs only
#   FUZZ_RUNS=10050000 scripts/fuzz.sh   also stop each after that many executions (for
#                                        the 10^7 runs of fuzz/README.md's table)
#   scripts/fuzz.sh --minimise [NAME...] rewrite fuzz/corpus/<name>/ as the smallest set
#                                        of inputs that keeps the coverage of seeds,
#                                        corpus and work inputs together
# NAME is the harness source's name without .c (admin_props); '-' and '_' are equal.
#
# Harnesses are found, not listed: every executable named fuzz-* or fuzz_* in the build
# is one, named by what follows the prefix. Every fuzz/*.c must be built and every
# harness must have seeds, or the run fails (so a new harness cannot be forgotten).
set -euo pipefail
cd "$(dirname "$0")/.."
minimise=0
if [ "${1:-}" = "--minimise" ]; then minimise=1; shift; fi
scripts/deps.sh --test
build=build-fuzz
if [ ! -f $build/build.ninja ]; then
  CC=clang meson setup $build -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi
# Only the harnesses (and what they link): the rest of the tree is built by make test.
# Regenerate first, so that harnesses added to a meson.build since the last run are listed.
ninja -C $build build.ninja >/dev/null
targets=$(ninja -C $build -t targets all | sed -n 's/^\(\([^:]*\/\)\?fuzz[-_][^:/]*\): .*/\1/p' | grep -v '\.p/' || true)
# shellcheck disable=SC2086
ninja -C $build $targets >/tmp/bulkhead-fuzz-build.$$.log 2>&1 || { cat /tmp/bulkhead-fuzz-build.$$.log; exit 1; }
rm -f /tmp/bulkhead-fuzz-build.$$.log

declare -A exe_of=()
for exe in $(find $build -type f \( -name 'fuzz-*' -o -name 'fuzz_*' \) -perm -u+x | sort); do
  name=$(basename "$exe"); name=${name#fuzz[-_]}; name=${name//-/_}
  exe_of[$name]=$exe
done
rc=0
for src in fuzz/*.c; do
  name=$(basename "$src" .c)
  if [ -z "${exe_of[$name]:-}" ]; then
    echo "FAIL: $src is not built: add executable('fuzz-${name//_/-}', ...) to its area's meson.build"
    rc=1
  fi
done

names=()
for name in $(printf '%s\n' "${!exe_of[@]}" | sort); do
  if [ $# -gt 0 ]; then
    want=" ${*//-/_} "
    [[ "$want" != *" $name "* ]] && continue
  fi
  if [ -z "$(ls -A fuzz/seeds/$name 2>/dev/null)" ]; then
    echo "FAIL: $name has no seeds: add inputs that reach its deep paths to fuzz/seeds/$name/"
    rc=1
    continue
  fi
  names+=("$name")
done
[ ${#names[@]} -gt 0 ] || { echo "fuzz: no harness selected"; exit 1; }

secs=${FUZZ_SECONDS:-60}
if [ -n "${FUZZ_BUDGET:-}" ]; then
  secs=$((FUZZ_BUDGET / ${#names[@]}))
  [ "$secs" -ge 10 ] || secs=10
fi
timeout=${FUZZ_TIMEOUT:-10}
passed=0 failed=0 summary=()
for name in "${names[@]}"; do
  exe=${exe_of[$name]}
  inputs=(fuzz/seeds/$name); [ -d fuzz/corpus/$name ] && inputs+=(fuzz/corpus/$name)
  dict=(); [ -f fuzz/$name.dict ] && dict=(-dict=fuzz/$name.dict)
  work=$build/work/$name; mkdir -p "$work"
  log=fuzz/last-$name.log
  common=(-timeout="$timeout" -max_len=70000 -artifact_prefix=fuzz/crash-$name- "${dict[@]}")
  if [ $minimise = 1 ]; then
    echo "== minimise $name"
    fresh=$(mktemp -d)
    if ! "$exe" -merge=1 "${common[@]}" "$fresh" "${inputs[@]}" "$work" >"$log" 2>&1; then
      echo "FAIL: $name (see $log)"; tail -30 "$log"; rc=1; failed=$((failed + 1)); rm -rf "$fresh"; continue
    fi
    rm -rf fuzz/corpus/$name; mkdir -p fuzz/corpus; mv "$fresh" fuzz/corpus/$name; chmod 755 fuzz/corpus/$name
    echo "   $(ls fuzz/corpus/$name | wc -l) inputs, $(du -sk fuzz/corpus/$name | cut -f1) KiB"
    passed=$((passed + 1))
    continue
  fi
  # 1. Replay every committed input (-runs=0: run the inputs, no mutation).
  echo "== fuzz $name: replaying $(find "${inputs[@]}" -type f | wc -l) committed inputs"
  if ! "$exe" -runs=0 "${common[@]}" "${inputs[@]}" >"$log" 2>&1; then
    echo "FAIL: $name on a committed input (see $log)"; tail -30 "$log"; rc=1; failed=$((failed + 1)); continue
  fi
  if [ "${FUZZ_SMOKE:-0}" = 1 ]; then passed=$((passed + 1)); continue; fi
  # 2. Fuzz for a fixed time, starting from all of them.
  echo "== fuzz $name for ${secs}s"
  runs=(); [ -n "${FUZZ_RUNS:-}" ] && runs=(-runs="$FUZZ_RUNS")
  t0=$SECONDS
  if ! "$exe" -max_total_time="$secs" "${runs[@]}" -print_final_stats=1 "${common[@]}" "$work" "${inputs[@]}" >"$log" 2>&1; then
    echo "FAIL: $name (see $log)"; tail -30 "$log"; rc=1; failed=$((failed + 1)); continue
  fi
  passed=$((passed + 1))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | cut -d' ' -f2)
  took=$((SECONDS - t0)); [ "$took" -gt 0 ] || took=1 # less than $secs when FUZZ_RUNS stopped it
  summary+=("$(printf '%-16s %4ss %12s execs %9s/s  cov %s' "$name" "$took" "$execs" "$((execs / took))" "$cov")")
done
[ ${#summary[@]} -gt 0 ] && printf '%s\n' "${summary[@]}"
echo "fuzz: $passed passed, $failed failed"
exit $rc
