#!/usr/bin/env bash
# Builds every libFuzzer harness (clang, ASan+UBSan) and runs each for FUZZ_SECONDS
# (default 60). Corpora grow in fuzz/corpus-<name>/ (not committed), seeded from
# fuzz/seeds/<name>/, with fuzz/<name>.dict as a libFuzzer dictionary if present.
# Crashes are left as fuzz/crash-* and fail the run.
#   scripts/fuzz.sh              all harnesses
#   scripts/fuzz.sh admin_props  one (name without the fuzz- prefix, '-' or '_')
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/deps.sh --test
build=build-fuzz
if [ ! -f $build/build.ninja ]; then
  CC=clang meson setup $build -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false \
    -Dc_args=-fsanitize=fuzzer-no-link >/dev/null
fi
ninja -C $build >/tmp/bulkhead-fuzz-build.log || { cat /tmp/bulkhead-fuzz-build.log; exit 1; }
secs=${FUZZ_SECONDS:-60}
rc=0 passed=0 failed=0
for exe in $(find $build -type f \( -name 'fuzz-*' -o -name 'fuzz_*' \) -perm -u+x | sort); do
  name=$(basename "$exe"); name=${name#fuzz[-_]}; name=${name//-/_}
  [ $# -gt 0 ] && [[ " $* " != *" $name "* ]] && continue
  corpus=fuzz/corpus-$name; mkdir -p "$corpus"
  seeds=(); [ -d fuzz/seeds/$name ] && seeds=(fuzz/seeds/$name)
  dict=(); [ -f fuzz/$name.dict ] && dict=(-dict=fuzz/$name.dict)
  if [ "${FUZZ_SMOKE:-0}" = 1 ]; then
    echo "== fuzz $name: replaying seeds"
    smoke=$(mktemp -d); [ -d fuzz/seeds/$name ] && cp -r fuzz/seeds/$name/. "$smoke"/
    if ! "$exe" -runs=0 "${dict[@]}" "$smoke" >fuzz/last-$name.log 2>&1; then
      echo "FAIL: $name"; tail -30 fuzz/last-$name.log; rc=1; failed=$((failed + 1))
    else
      passed=$((passed + 1))
    fi
    rm -rf "$smoke"
    continue
  fi
  echo "== fuzz $name for ${secs}s"
  if ! "$exe" -max_total_time="$secs" -max_len=70000 -artifact_prefix=fuzz/crash-$name- \
      -print_final_stats=1 "${dict[@]}" "$corpus" "${seeds[@]}" 2>fuzz/last-$name.log; then
    echo "FAIL: $name (see fuzz/last-$name.log)"; tail -30 fuzz/last-$name.log; rc=1; failed=$((failed + 1))
  else
    passed=$((passed + 1))
    grep -E 'stat::number_of_executed_units|cov:' fuzz/last-$name.log | tail -2
  fi
done
echo "fuzz: $passed passed, $failed failed"
exit $rc
