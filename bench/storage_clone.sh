#!/usr/bin/env bash
# Storage speed, side by side with `cp --sparse=always` of the same image in the same run:
#  (1) creating an app qube's volume set (a new sparse 2 GiB ext4 private image) vs copying
#      an existing fresh 2 GiB image with cp;
#  (2) cloning a qube whose private holds DATA_MIB of data vs cp of that image;
#  (3) building the `host` template (qvm-template build host) vs `cp -a /etc` (the
#      naive template: a copy of the host's /etc, secrets included).
# The peer does the same durability work as ours: the image copies fsync the new file and
# its directory (`sync FILE DIR`, as volumes.c fsyncs its image and the pool directory),
# the /etc copy syncs the filesystem (as the template build does, syncfs). Rounds are
# interleaved (ours, then the peer's).
# Usage: bench/storage_clone.sh [BUILD_DIR] [RUNS] [DATA_MIB]
set -euo pipefail
build=${1:-build}
runs=${2:-5}
data_mib=${3:-256}
exe=$(realpath "$build/src/storage/bulkhead-storage")
root=$(mktemp -d /var/tmp/bh-bench-storage-XXXXXX)
# template roots are images mounted in the pool until their qube is removed
trap 'awk -v d="$root/" '"'"'index($5, d) == 1 {print $5}'"'"' /proc/self/mountinfo | sort -r | xargs -r -n1 umount -l; rm -rf "$root"' EXIT
S() { "$exe" --root "$root" "$@"; }
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

S --class TemplateVM create tpl
S --template tpl create base
img=$root/pools/default/qubes/base/private.img

t_create=0 t_cpnew=0
for i in $(seq "$runs"); do
  a=$(now); S --template tpl create "new$i"; b=$(now)
  cp --sparse=always "$img" "$root/cp-new$i.img"; sync "$root/cp-new$i.img" "$root"; c=$(now)
  t_create=$((t_create + b - a)); t_cpnew=$((t_cpnew + c - b))
done

# Real data in the image (written below the filesystem: only the bytes matter here).
dd if=/dev/urandom of="$img" bs=1M seek=64 count="$data_mib" conv=notrunc status=none
sync -f "$img"
t_clone=0 t_cp=0
for i in $(seq "$runs"); do
  a=$(now); S --template tpl clone base "clone$i"; b=$(now)
  cp --sparse=always "$img" "$root/cp$i.img"; sync "$root/cp$i.img" "$root"; c=$(now)
  t_clone=$((t_clone + b - a)); t_cp=$((t_cp + c - b))
done

qt=$(realpath "$build/src/storage/qvm-template")
t_tpl=0 t_cpetc=0
for i in $(seq "$runs"); do
  a=$(now); "$qt" --root "$root" build host "host$i" >/dev/null; b=$(now)
  cp -a /etc "$root/etc$i"; sync -f "$root"; c=$(now)
  t_tpl=$((t_tpl + b - a)); t_cpetc=$((t_cpetc + c - b))
done

fs=$(stat -f -c %T "$root")
printf 'storage bench on %s, %d runs, private with %d MiB of data\n' "$fs" "$runs" "$data_mib"
printf '%-44s %8s %8s %7s\n' "operation" "bulkhead" "cp" "ratio"
printf '%-44s %6dms %6dms %7s\n' "create app volumes vs cp of a fresh 2G image" \
  "$(ms 0 $((t_create / runs)))" "$(ms 0 $((t_cpnew / runs)))" \
  "$(awk -v a=$t_create -v b=$t_cpnew 'BEGIN{printf "%.2fx", a/b}')"
printf '%-44s %6dms %6dms %7s\n' "clone qube vs cp --sparse of its image" \
  "$(ms 0 $((t_clone / runs)))" "$(ms 0 $((t_cp / runs)))" \
  "$(awk -v a=$t_clone -v b=$t_cp 'BEGIN{printf "%.2fx", a/b}')"
printf '%-44s %6dms %6dms %7s\n' "build host template vs cp -a /etc" \
  "$(ms 0 $((t_tpl / runs)))" "$(ms 0 $((t_cpetc / runs)))" \
  "$(awk -v a=$t_tpl -v b=$t_cpetc 'BEGIN{printf "%.2fx", a/b}')"
printf 'disk used by one clone: %s (image size %s)\n' \
  "$(du -h "$root/pools/default/qubes/clone1/private.img" | cut -f1)" "$(du -h --apparent-size "$img" | cut -f1)"
