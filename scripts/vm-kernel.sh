#!/bin/bash
# Fetches the guest kernel of the vm engine into DIR (default: build/vm-kernel):
# Debian's linux-image-cloud-amd64 (the small kernel for virtual machines), downloaded
# with apt-get download and unpacked with dpkg-deb into DIR, never installed into the
# host's /boot. DIR gets vmlinuz, modules/*.ko (only those a Bulkhead guest loads) and
# modules/order (load order, dependencies first), and version; also the package's whole
# module tree with its depmod index in lib/modules/VERSION (scripts/test-cgroup2-vm.sh
# boots a test VM whose programs load modules with modprobe: loop, veth, nf_tables...).
# Runs again only when the package version changed. Needs network access to the
# Debian mirror the host's apt uses (apt-get update once on a fresh machine).
set -euo pipefail
dir=${1:-build/vm-kernel}
meta=linux-image-cloud-amd64
ver=$(apt-cache show --no-all-versions $meta 2>/dev/null | sed -n 's/^Depends: \(linux-image-[^ ,]*\).*/\1/p' | head -1)
[ -n "$ver" ] || { echo "vm-kernel: $meta unknown to apt (run apt-get update)" >&2; exit 1; }
# The modules a guest loads, dependencies first (the initramfs carries these only),
# in the order its init needs them: the root's disk and file systems first (its first
# step waits for them), then virtiofs (/usr), the console port, pvpanic, the network.
# virtio_net (with net_failover, failover) drives the network card of a qube with a
# netvm; the guest needs no netfilter (its rules live on the host, in the netvm's
# namespace); af_packet and IPv4 are built into the cloud kernel.
order=(kernel/drivers/virtio/virtio_ring.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_mmio.ko
       kernel/drivers/block/virtio_blk.ko kernel/lib/libcrc32c.ko kernel/fs/erofs/erofs.ko
       kernel/fs/overlayfs/overlay.ko kernel/fs/fuse/fuse.ko kernel/fs/fuse/virtiofs.ko
       kernel/drivers/char/virtio_console.ko kernel/drivers/misc/pvpanic/pvpanic.ko
       kernel/drivers/misc/pvpanic/pvpanic-mmio.ko
       kernel/net/core/failover.ko kernel/drivers/net/net_failover.ko kernel/drivers/net/virtio_net.ko)
want_order() { for m in "${order[@]}"; do basename "$m"; done; }
kver=${ver#linux-image-}
if [ -f "$dir/version" ] && [ "$(cat "$dir/version")" = "$ver" ] && [ -f "$dir/vmlinuz" ] &&
   [ -f "$dir/lib/modules/$kver/modules.dep" ]; then
  # the same kernel: only the list of modules may have changed (taken from its tree)
  if [ "$(cat "$dir/modules/order" 2>/dev/null)" != "$(want_order)" ]; then
    rm -rf "$dir/modules.new"; mkdir -p "$dir/modules.new"
    for m in "${order[@]}"; do cp "$dir/lib/modules/$kver/$m" "$dir/modules.new/"; done
    want_order > "$dir/modules.new/order"
    rm -rf "$dir/modules"; mv "$dir/modules.new" "$dir/modules"; chmod -R a+rX "$dir/modules"
  fi
  exit 0
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"   # apt-get download runs as _apt where it can
( cd "$tmp" && apt-get download "$ver" >/dev/null 2>&1 ) || { echo "vm-kernel: apt-get download $ver failed" >&2; exit 1; }
dpkg-deb -x "$tmp"/*.deb "$tmp/x"
mods=$(echo "$tmp"/x/lib/modules/*)
mkdir -p "$dir/modules.new"
: > "$dir/modules.new/order"
for m in "${order[@]}"; do
  cp "$mods/$m" "$dir/modules.new/"
  basename "$m" >> "$dir/modules.new/order"
done
cp "$tmp"/x/boot/vmlinuz-* "$dir/vmlinuz.new"
kver=$(basename "$mods")
depmod -b "$tmp/x" "$kver"
rm -rf "$dir/modules" "$dir/lib"; mv "$dir/modules.new" "$dir/modules"; mv "$dir/vmlinuz.new" "$dir/vmlinuz"
mkdir -p "$dir/lib/modules"; mv "$mods" "$dir/lib/modules/$kver"
chmod -R a+rX "$dir"
echo "$ver" > "$dir/version"
echo "vm-kernel: $ver in $dir"
