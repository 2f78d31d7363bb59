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
# The whole suite (no test files named) also runs the ns engine's cgroup tests once more
# on cgroup v2, inside a VM (this project's machines run v1; most Debian hosts run v2):
# scripts/test-cgroup2-vm.sh. Not under the sanitizers (the same code, twice the time);
# BULKHEAD_CGROUP2_VM=0 leaves it out.
if [ $# -le 1 ] && [ "${BULKHEAD_SANITIZE:-0}" != 1 ] && [ "${BULKHEAD_CGROUP2_VM:-1}" != 0 ]; then
  scripts/test-cgroup2-vm.sh "$build" tests/integration/test_ns_lifecycle.py tests/integration/test_lifecycle.py \
    tests/integration/test_admin_qube_limits.py tests/attack/test_ns_limits.py \
    tests/attack/test_qube_limits.py tests/attack/test_ns_filesystem.py \
    tests/attack/test_ns_processes.py tests/attack/test_ns_kernel.py tests/attack/test_block_attach.py \
    tests/attack/test_ns_procfs.py tests/attack/test_ns_procfs_counters.py
fi
