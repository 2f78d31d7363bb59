#!/usr/bin/env bash
# Bench for the ns engine (figures, not pass/fail). Run as root after building:
#   bench/ns_start.sh [build-dir]          env: ITER=20 IDLE=10 MANY=100
# 1. a halted qube to its first command's output (start + exec true), vs bwrap running
#    true with a comparable sandbox (same run, rounds interleaved; ratio printed);
# 2. memory per idle qube (its cgroup's memory usage: init, page tables, tmpfs);
# 3. starting MANY qubes one after another, and how many then run at once.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
NS=$(realpath "$build")/src/driver/bulkhead-ns
ITER=${ITER:-20}; IDLE=${IDLE:-10}; MANY=${MANY:-100}
work=$(mktemp -d /tmp/bh-bench-XXXXXX)
export BULKHEAD_RUNTIME=$work/rt
names=()
cleanup() {
  for n in "${names[@]}"; do "$NS" kill "$n" >/dev/null 2>&1 || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# a minimal root: fresh /etc, host /usr, merged-usr links
t=$work/tmpl
mkdir -p $t/{etc,usr,proc,sys,dev,run,tmp,rw,home,root}
ln -s usr/bin $t/bin; ln -s usr/lib $t/lib; ln -s usr/lib64 $t/lib64; ln -s usr/sbin $t/sbin
printf 'root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n' > $t/etc/passwd
printf 'root:x:0:\nuser:x:1000:\n' > $t/etc/group
truncate -s 32M $work/private.img && mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 $work/private.img

now() { date +%s%N; }
ms() { awk -v ns="$1" -v n="$2" 'BEGIN { printf "%.2f", ns / n / 1e6 }'; }
base=$((3000 * 65536))

# 1. start-to-first-output, interleaved: a qube round, then a bwrap round, so that
#    background load on a shared machine hits both alike
names+=(bench1)
total=0; tstart=0; btotal=0
for i in $(seq "$ITER"); do
  s=$(now)
  "$NS" start bench1 --uid-base $base --root-lower $t --throwaway --host-usr /usr --private-img $work/private.img
  m=$(now)
  "$NS" exec bench1 -- true
  total=$((total + $(now) - s)); tstart=$((tstart + m - s))
  "$NS" kill bench1
  s=$(now)
  bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib \
        --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp --hostname q true
  btotal=$((btotal + $(now) - s))
done
q_ms=$(ms $total "$ITER"); b_ms=$(ms $btotal "$ITER")
echo "start+first command: ns ${q_ms} ms, bwrap ${b_ms} ms, ratio $(awk -v a=$q_ms -v b=$b_ms 'BEGIN{printf "%.2f", a/b}')x  (mean of $ITER)"
echo "  of which start $(ms $tstart "$ITER") ms (incl. private ext4 mount), exec $(ms $((total - tstart)) "$ITER") ms; (bulkhead-ns processes; the daemon starts in-process and qvm-run goes through qrexec)"

# 2. memory per idle qube
tag=""
sum=0
for i in $(seq "$IDLE"); do
  n=idle$i; names+=($n)
  "$NS" start $n --uid-base $((base + i * 65536)) --root-lower $t --throwaway --host-usr /usr
done
sleep 1
# The qube's memory cgroup, from /proc/<init>/cgroup: v1 (a "memory" hierarchy,
# memory.usage_in_bytes) or v2 (the unified "0::" line, memory.current).
cgroup_mount() {  # $1: cgroup (the v1 memory hierarchy) or cgroup2
  awk -v t="$1" '{ for (i = 7; i <= NF && $i != "-"; i++) ;
                   if ($(i+1) == t && (t == "cgroup2" || $(i+3) ~ /(^|,)memory(,|$)/)) { print $5; exit } }' /proc/self/mountinfo
}
qube_memory() {
  local pid=$1 line path
  line=$(grep -E '^[0-9]+:([^:]*,)?memory(,[^:]*)?:' /proc/$pid/cgroup || true)
  if [ -n "$line" ]; then
    path=${line#*:*:}
    mnt=$(cgroup_mount cgroup)
    cat "$mnt$path/memory.usage_in_bytes"
  else
    path=$(sed -n 's/^0:://p' /proc/$pid/cgroup)
    mnt=$(cgroup_mount cgroup2)
    cat "$mnt$path/memory.current"
  fi
}
for i in $(seq "$IDLE"); do
  m=$(qube_memory "$(cut -d' ' -f1 $BULKHEAD_RUNTIME/qubes/idle$i/init.pid)")
  sum=$((sum + m))
done
rss=$(awk '/VmRSS/ {print $2}' /proc/$(cut -d' ' -f1 $BULKHEAD_RUNTIME/qubes/idle1/init.pid)/status)
echo "idle qube memory (cgroup usage, mean of $IDLE): $(awk -v s=$sum -v n=$IDLE 'BEGIN{printf "%.2f", s/n/1048576}') MiB; init RSS ${rss} KiB (no agent in this run)"
for i in $(seq "$IDLE"); do "$NS" kill idle$i; done

# 3. many qubes
[ "$MANY" -gt 0 ] || exit 0
s=$(now)
started=0
for i in $(seq "$MANY"); do
  n=many$i; names+=($n)
  if "$NS" start $n --uid-base $((base + (100 + i) * 65536)) --root-lower $t --throwaway --host-usr /usr; then
    started=$((started + 1))
  else
    echo "start $n failed"; break
  fi
done
el=$(( $(now) - s ))
running=0
for i in $(seq "$started"); do
  [ "$("$NS" state many$i | cut -d' ' -f1)" = Running ] && running=$((running + 1))
done
echo "started $started qubes in $(ms $el 1) ms ($(ms $el $started) ms each); $running running at once; host free: $(awk '/MemAvailable/ {printf "%.0f MiB", $2/1024}' /proc/meminfo)"
s=$(now)
for i in $(seq "$started"); do "$NS" kill many$i; done
echo "killed them in $(ms $(( $(now) - s )) 1) ms"
