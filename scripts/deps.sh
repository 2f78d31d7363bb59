#!/usr/bin/env bash
# Installs the Debian packages Bulkhead needs to build and test, only those missing.
# Used by `make run` and `make test`; safe to run again.
set -euo pipefail
build_pkgs=(meson ninja-build pkg-config gcc clang libseccomp-dev libsqlite3-dev
  libjson-c-dev zlib1g-dev libcap-dev libmnl-dev libnftables-dev libsodium-dev)
run_pkgs=(sqlite3 iproute2 nftables e2fsprogs util-linux uidmap)
test_pkgs=(python3 python3-pytest bubblewrap libclang-rt-14-dev hyperfine)
want=("${build_pkgs[@]}" "${run_pkgs[@]}")
[ "${1:-}" = "--test" ] && want+=("${test_pkgs[@]}")
# Each area lists extra packages in scripts/deps.d/<area>.txt (one a line; "test:" prefix
# for test-only ones), so areas never edit the same line.
for f in "$(dirname "$0")"/deps.d/*.txt; do
  [ -f "$f" ] || continue
  while read -r p; do
    case "$p" in ''|'#'*) ;; test:*) [ "${1:-}" = "--test" ] && want+=("${p#test:}") ;; *) want+=("$p") ;; esac
  done <"$f"
done
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "deps: installing ${missing[*]}" >&2
if [ "$(id -u)" -ne 0 ]; then echo "deps: need root to install packages" >&2; exit 1; fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}"
