#!/usr/bin/env bash
# Runs the ns engine's cgroup tests on cgroup v2 for real, inside a VM.
#
# Stock Debian 12 hosts run cgroup v2 only; the machines this project is tested on run a
# v1 hierarchy and cannot switch. A VM can: it boots Debian's cloud kernel (the vm
# engine's guest kernel, scripts/vm-kernel.sh), mounts cgroup2 alone at /sys/fs/cgroup
# with every controller enabled, and runs pytest on the given test files there, against
# this build. The VM sees the host's root filesystem read-only (virtiofsd on a read-only
# bind of /, no submounts) under a throwaway tmpfs layer, so it runs the very binaries and
# tests of this tree and writes nothing to the host but its own scratch disk (a sparse
# ext4 image, deleted at the end, for /tmp: the tests' state directories, images and
# idmapped mounts need a disk filesystem, as a Debian host's /tmp is). Its /usr is an ext4
# copy of the host's (built once and kept in BUILD/cgroup2-vm until the installed packages
# change; big trees no test uses are left out): the ns engine idmaps the host's /usr into
# qubes, which the guest kernel (6.1) cannot do on overlayfs or virtiofs but can on ext4,
# as on a Debian host. It has no network device.
#
#   scripts/test-cgroup2-vm.sh BUILD TEST_FILE... [-- PYTEST_ARGS]
#
# Exit status: pytest's inside the VM; 0 with "skipped: <reason>" where the premise (QEMU,
# virtiofsd, a static busybox, the guest kernel) is missing. KVM is used where /dev/kvm
# opens, TCG otherwise (slower: BULKHEAD_CGROUP2_VM_TIMEOUT, default 1800 s).
set -euo pipefail
cd "$(dirname "$0")/.."
build=$(realpath "${1:?usage: $0 BUILD TEST_FILE...}")
shift
skip() { echo "cgroup2-vm: skipped: $*"; exit 0; }
[ -x /usr/bin/qemu-system-x86_64 ] || skip "qemu-system-x86_64 is not installed"
vfsd=/usr/lib/qemu/virtiofsd
[ -x "$vfsd" ] || skip "$vfsd is not installed"
bb=/bin/busybox
{ [ -x $bb ] && ! ldd $bb >/dev/null 2>&1; } || skip "no static busybox (Debian's busybox-static)"
[ "$(id -u)" -eq 0 ] || skip "needs root (virtiofsd, the tests themselves)"
kdir=$build/vm-kernel
scripts/vm-kernel.sh "$kdir" >/dev/null || skip "guest kernel unavailable (scripts/vm-kernel.sh failed)"
kver=$(sed 's/^linux-image-//' "$kdir/version")

work=$(mktemp -d "${TMPDIR:-/tmp}/bh-cgroup2-vm.XXXXXX")
vfs_pid='' qemu_pid=''
cleanup() {
  if [ -n "$qemu_pid" ]; then kill -9 "$qemu_pid" 2>/dev/null || true; fi
  if [ -n "$vfs_pid" ]; then kill -9 "$vfs_pid" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  umount "$work/hostroot" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The guest's first stage: load the modules virtiofs and overlayfs need, mount the host's
# root (read-only) under a tmpfs layer, switch to it and run the second stage as PID 1.
mkdir -p "$work/initrd/bin" "$work/initrd/modules"
cp $bb "$work/initrd/bin/busybox"
cp "$kdir"/modules/*.ko "$kdir/modules/order" "$work/initrd/modules/"
cat >"$work/initrd/init" <<'EOF'
#!/bin/busybox sh
b=/bin/busybox
$b mkdir -p /proc /dev /lower /upper /newroot
$b mount -t proc proc /proc
$b mount -t devtmpfs dev /dev
for m in $($b cat /modules/order); do $b insmod /modules/$m 2>/dev/null; done
$b mount -t virtiofs -o ro hostroot /lower || { echo "cgroup2-vm: no virtiofs root"; $b poweroff -f; }
$b mount -t tmpfs -o mode=755 upper /upper
$b mkdir /upper/u /upper/w
$b mount -t overlay -o lowerdir=/lower,upperdir=/upper/u,workdir=/upper/w root /newroot ||
  { echo "cgroup2-vm: overlay failed"; $b poweroff -f; }
stage2=$($b sed -n 's/.*bh.stage2=\([^ ]*\).*/\1/p' /proc/cmdline)
$b mount --move /dev /newroot/dev
$b umount /proc
exec $b switch_root /newroot /bin/bash "$stage2"
EOF
chmod 755 "$work/initrd/init"
(cd "$work/initrd" && find . | cpio -o -H newc --quiet) >"$work/initrd.img"

# What the second stage runs, read by it through the shared root.
{
  printf 'BH_REPO=%q\nBH_BUILD=%q\nBH_KVER=%q\nBH_KDIR=%q\n' "$PWD" "$build" "$kver" "$kdir"
  printf 'BH_PYTEST=('; printf '%q ' "$@"; printf ')\n'
} >"$work/env"
chmod 755 "$work"
truncate -s 16G "$work/scratch.img"
# The /usr image: a copy of the host's /usr without trees no test needs, made from a
# private bind of /usr with those trees hidden.
usrimg=$build/cgroup2-vm/usr.img
skip_trees="local lib/google-cloud-sdk lib/jvm lib/llvm-14 lib/postgresql share/doc"
stamp="$(stat -c '%Y %s' /var/lib/dpkg/status) $skip_trees"
if [ "$(cat "$usrimg.stamp" 2>/dev/null)" != "$stamp" ]; then
  echo "cgroup2-vm: making the guest's /usr (once per set of installed packages)"
  mkdir -p "$build/cgroup2-vm"
  rm -f "$usrimg" "$usrimg.stamp"
  truncate -s 32G "$usrimg.new"
  unshare -m --propagation private sh -c '
    src=$(mktemp -d) && mount --bind /usr "$src" || exit 1
    for t in $2; do [ -d "$src/$t" ] && mount -t tmpfs -o ro,size=64k none "$src/$t"; done
    mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 -d "$src" "$1"' sh "$usrimg.new" "$skip_trees"
  mv "$usrimg.new" "$usrimg"
  echo "$stamp" >"$usrimg.stamp"
fi
mkfs.ext4 -q -F -E lazy_itable_init=1,lazy_journal_init=1 "$work/scratch.img"

# virtiofsd serves a read-only, non-recursive bind of / (no /proc, /sys, /run/netns...)
# from a mount namespace of its own.
mkdir -p "$work/hostroot"
unshare -m --propagation private sh -c '
  mount --bind / "$1" && mount -o remount,bind,ro "$1" &&
  exec "$2" --socket-path="$3" -o source="$1" -o cache=auto -o no_posix_lock -o no_flock -o sandbox=chroot' \
  sh "$work/hostroot" "$vfsd" "$work/vfs.sock" >"$work/virtiofsd.log" 2>&1 &
vfs_pid=$!
for _ in $(seq 100); do [ -S "$work/vfs.sock" ] && break; sleep 0.1; done
[ -S "$work/vfs.sock" ] || { cat "$work/virtiofsd.log"; echo "cgroup2-vm: virtiofsd did not start"; exit 1; }

if [ -r /dev/kvm ] && [ -w /dev/kvm ]; then
  accel=(-accel kvm -cpu host); tsc=''
else
  # TCG: microvm has no PIT, so the guest cannot calibrate its TSC; give it the rate.
  mhz=$(awk -F: '/^cpu MHz/ {print int($2); exit}' /proc/cpuinfo)
  accel=(-accel tcg,thread=multi,tb-size=256 -cpu max); tsc=" tsc_early_khz=$(( ${mhz:-2000} * 1000 ))"
fi
mem=${BULKHEAD_CGROUP2_VM_MIB:-4096}
echo "cgroup2-vm: booting $kver (${accel[1]}) with ${mem} MiB, cgroup v2 only: ${*}"
/usr/bin/qemu-system-x86_64 -M microvm,x-option-roms=off,pit=off,pic=off,rtc=on,isa-serial=on,memory-backend=mem \
  "${accel[@]}" -m "${mem}M" -smp "$(nproc)" -nodefaults -no-user-config -display none -no-reboot \
  -global virtio-mmio.force-legacy=false \
  -object memory-backend-memfd,id=mem,size=${mem}M,share=on \
  -chardev socket,id=vfs,path="$work/vfs.sock" -device vhost-user-fs-device,chardev=vfs,tag=hostroot \
  -drive file="$work/scratch.img",if=none,id=scratch,format=raw,cache=unsafe,discard=unmap \
  -device virtio-blk-device,drive=scratch,serial=bhscratch \
  -drive file="$usrimg",if=none,id=usr,format=raw,readonly=on \
  -device virtio-blk-device,drive=usr,serial=bhusr \
  -kernel "$kdir/vmlinuz" -initrd "$work/initrd.img" \
  -append "console=ttyS0 quiet panic=-1 reboot=t$tsc bh.stage2=$PWD/scripts/cgroup2-vm-guest.sh bh.env=$work/env" \
  -serial file:"$work/console.log" &
qemu_pid=$!
# --pid: tail reads to the end of the log after QEMU ends, then stops by itself
tail --pid="$qemu_pid" -n +1 -F "$work/console.log" 2>/dev/null | sed -u 's/^/  vm| /' &
tail_pid=$!
deadline=$(( $(date +%s) + ${BULKHEAD_CGROUP2_VM_TIMEOUT:-1800} ))
while kill -0 "$qemu_pid" 2>/dev/null; do
  if [ "$(date +%s)" -gt "$deadline" ]; then echo "cgroup2-vm: timed out"; kill -9 "$qemu_pid"; break; fi
  sleep 1
done
wait "$tail_pid" 2>/dev/null || true
rc=$(sed -n 's/.*BH-CGROUP2-VM-RESULT rc=\([0-9]*\).*/\1/p' "$work/console.log" | tail -1)
[ -n "$rc" ] || { echo "cgroup2-vm: the VM ended without a result"; exit 1; }
echo "cgroup2-vm: pytest inside the cgroup-v2 VM exited $rc"
exit "$rc"
