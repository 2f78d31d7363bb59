/* A guest's network card in a qube's namespace (engines that run a kernel of their
 * own: the vm engine). See net.h (BH_NET_GUEST_NIC).
 *
 * The qube's namespace is prepared exactly as for an `ns` qube: `eth0` is its end of
 * the veth link to its netvm, where the netvm's anti-spoofing, firewall chain and NAT
 * apply. A tap device `guest0` is added beside it, and the two are joined by a wire:
 * a `netdev` table whose ingress chains pass every frame that arrives on one device
 * straight out of the other (nftables `fwd`). Nothing is bridged, routed or rewritten
 * in between; the namespace's own IP stack never sees a frame of the guest. So the
 * guest's frames reach the netvm's `vif<qid>.0` exactly as an `ns` qube's would, and
 * whatever the netvm enforces on that interface (source address, source MAC, the
 * qube's firewall rules, connection limits) applies to the guest unchanged.
 *
 * The tap is made by the host (root, in the host-owned namespace) and only its fd goes
 * to QEMU, which never holds CAP_NET_ADMIN. It is not persistent: it disappears when
 * the last fd (QEMU's) closes, and with the namespace at the latest. */
#include "net.h"
#include "cleanup.h"
#include "netns.h"
#include "nft.h"
#include "nl.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#define WIRE_TABLE "bulkhead_wire"

int bh_net_guest_wire(int nsfd, bh_error *err)
{
    struct bh_nl nl;
    if (bh_nl_open(&nl, nsfd, err) < 0)
        return -1;
    bool nic = bh_nl_ifindex(&nl, BH_NET_GUEST_NIC) > 0;
    bool link = bh_nl_ifindex(&nl, "eth0") > 0;
    bh_nl_close(&nl);
    if (!nic)
        return 0;
    /* Replaced whole: after a re-plug `eth0` is a new device (new index), and with no
     * link at all the guest's frames are dropped here, not handed to this namespace's
     * own stack. */
    char script[1024];
    if (link)
        snprintf(script, sizeof script,
                 "table netdev " WIRE_TABLE "\ndelete table netdev " WIRE_TABLE "\n"
                 "table netdev " WIRE_TABLE " {\n"
                 "  chain from_link {\n    type filter hook ingress device \"eth0\" priority 0; policy drop;\n"
                 "    fwd to \"" BH_NET_GUEST_NIC "\"\n  }\n"
                 "  chain from_guest {\n    type filter hook ingress device \"" BH_NET_GUEST_NIC
                 "\" priority 0; policy drop;\n    fwd to \"eth0\"\n  }\n}\n");
    else
        snprintf(script, sizeof script,
                 "table netdev " WIRE_TABLE "\ndelete table netdev " WIRE_TABLE "\n"
                 "table netdev " WIRE_TABLE " {\n"
                 "  chain from_guest {\n    type filter hook ingress device \"" BH_NET_GUEST_NIC
                 "\" priority 0; policy drop;\n  }\n}\n");
    if (bh_nft_run(nsfd, script, err) < 0)
        return bh_prefix(err, "wiring the guest's network card");
    return 0;
}

int bh_net_guest_nic_open(const char *netns, bh_error *err)
{
    _cleanup_close_ int ns = open(netns, O_RDONLY | O_CLOEXEC);
    if (ns < 0)
        return bh_fail_errno(err, "open network namespace %s", netns);
    int saved = -1;
    if (bh_netns_enter(ns, &saved, err) < 0)
        return -1;
    /* /dev/net/tun makes the device in the namespace of whoever opens it */
    _cleanup_close_ int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
    int e = errno;
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", BH_NET_GUEST_NIC);
    /* virtio-net headers: the guest may hand over unchecksummed and large (GSO)
     * frames, which the kernel finishes on the way; far less work per byte */
    ifr.ifr_flags = IFF_TAP | IFF_NO_PI | IFF_VNET_HDR;
    if (fd >= 0 && ioctl(fd, TUNSETIFF, &ifr) < 0)
        e = errno, close(fd), fd = -1;
    bh_netns_leave(saved);
    if (fd < 0) {
        errno = e;
        return bh_fail_errno(err, "creating the guest's network card (tap) in %s", netns);
    }
    struct bh_nl nl;
    if (bh_nl_open(&nl, ns, err) < 0)
        return -1;
    int idx = bh_nl_ifindex(&nl, BH_NET_GUEST_NIC);
    int r = idx > 0 ? bh_nl_link_up(&nl, idx, err) : bh_fail(err, ENODEV, "the guest's tap vanished");
    bh_nl_close(&nl);
    if (r < 0 || bh_net_guest_wire(ns, err) < 0)
        return -1;
    int out = fd;
    fd = -1;
    return out;
}
