#!/usr/bin/env bash
# Builds Bulkhead and runs every test: C unit tests (meson test), then the integration
# and attack tests (pytest) against real daemons and qubes on private state directories.
# BULKHEAD_SANITIZE=1 builds with ASan+UBSan instead.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
scripts/deps.sh --test
if [ ! -f "$build/build.ninja" ]; then
  if [ "${BULKHEAD_SANITIZE:-0}" = 1 ]; then
    # clang warns about libseccomp's own macros (missing field initializers): not ours to fix.
    CC=clang meson setup "$build" -Db_sanitize=address,undefined -Db_lundef=false \
      -Dc_args=-Wno-missing-field-initializers >/dev/null
  else
    meson setup "$build" >/dev/null
  fi
fi
ninja -C "$build"
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
meson test -C "$build" --print-errorlogs --num-processes 2
export BULKHEAD_BUILD=$PWD/$build
# Integration tests run in parallel only where they are independent; each has its own root.
/usr/bin/python3 -m pytest -q -p no:cacheprovider tests/integration tests/attack "${@:2}"
