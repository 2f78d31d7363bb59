#!/bin/bash
# Second stage of scripts/test-cgroup2-vm.sh, run as PID 1 inside the test VM on the
# host's root filesystem (read-only, under a tmpfs layer): mounts what a Debian 12 host
# with systemd would have — cgroup2 alone at /sys/fs/cgroup, every controller enabled —
# then runs pytest and prints its exit status for the host side to read.
set -u
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
result() {
  echo "BH-CGROUP2-VM-RESULT rc=$1"
  sync
  echo 1 >/proc/sys/kernel/printk 2>/dev/null # the shared root going away at power-off is no news
  echo o >/proc/sysrq-trigger
  sleep 10
  exit "$1"
}
mount -t proc proc /proc
mount -t sysfs sys /sys
env=$(sed -n 's/.*bh.env=\([^ ]*\).*/\1/p' /proc/cmdline)
# shellcheck disable=SC1090
. "$env" || result 90
mount -t cgroup2 -o nsdelegate cgroup2 /sys/fs/cgroup || result 91
for c in $(cat /sys/fs/cgroup/cgroup.controllers); do
  echo "+$c" >/sys/fs/cgroup/cgroup.subtree_control 2>/dev/null || echo "cgroup2-vm: controller $c not enabled"
done
echo "cgroup2-vm: controllers: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
disk() { for d in /sys/block/vd*; do [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && echo "/dev/${d##*/}"; done; }
mount -t ext4 -o ro "$(disk bhusr)" /usr || result 94
mkdir -p /scratch
mount -t ext4 "$(disk bhscratch)" /scratch || result 93
mkdir -p /scratch/tmp /scratch/vartmp
chmod 1777 /scratch/tmp /scratch/vartmp
mount --bind /scratch/tmp /tmp
mount --bind /scratch/vartmp /var/tmp
mount -t tmpfs -o mode=755 run /run
mkdir -p /dev/pts /dev/shm /run/netns
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
ln -sf pts/ptmx /dev/ptmx 2>/dev/null || true
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t configfs none /sys/kernel/config 2>/dev/null || true
# The guest kernel's own modules, from its package's tree (scripts/vm-kernel.sh): the
# host's /lib/modules is for the host's kernel. The kernel loads modules on demand
# (nftables expressions, conntrack...) through a modprobe that looks there.
printf '#!/bin/sh\nexec /usr/sbin/modprobe -d %q "$@"\n' "$BH_KDIR" >/run/bh-modprobe
chmod 755 /run/bh-modprobe
echo /run/bh-modprobe >/proc/sys/kernel/modprobe
for m in loop overlay veth nf_tables nft_chain_nat nft_ct nft_masq nft_reject_inet nft_fib_inet erofs; do
  modprobe -d "$BH_KDIR" "$m" 2>/dev/null || echo "cgroup2-vm: module $m not loaded"
done
ip link set lo up
hostname bh-cgroup2-vm
echo 1 >/proc/sys/kernel/sysrq
cd "$BH_REPO" || result 92
export BULKHEAD_BUILD=$BH_BUILD HOME=/root TMPDIR=/tmp
/usr/bin/python3 -m pytest -q -rs -p no:cacheprovider "${BH_PYTEST[@]}" </dev/null
result $?
