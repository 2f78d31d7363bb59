/* Links between qubes' namespaces and the uplink; see net.h. */
#include "net.h"
#include "cleanup.h"
#include "netns.h"
#include "nft.h"
#include "nl.h"
#include "log.h"
#include <stdlib.h>
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

void bh_net_vif_name(uint32_t qid, char out[16]) { snprintf(out, 16, "vif%u.0", qid % 100000000u); }

static int open_ns(const char *path, bh_error *err)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_fail_errno(err, "open network namespace %s", path);
    return fd;
}

/* Connection counting (`ct count`, nft_connlimit) is missing from some kernels: probed
 * once, at the first namespace; without it the limits are skipped (logged once) rather
 * than failing every start. BULKHEAD_NET_CT_COUNT=0 forces that fallback (tests). */
static int ct_count_state; /* 0 not probed, 1 present, -1 missing */

bool bh_net_ct_count_ok(void) { return ct_count_state >= 0; }

static int ct_count_missing(bh_error *err)
{
    ct_count_state = -1;
    bh_warn("nftables connection counting (ct count) is not available: qubes run without per-qube and "
            "uplink connection limits");
    (void)err;
    return 0;
}

/* defer: where the script goes instead of being loaded, once probing has shown that
 * it loads (the caller loads it in the namespace's first firewall transaction). */
static int cap_table(int ns, unsigned conn_max, char **defer, bh_error *err)
{
    if (ct_count_state == 0) {
        const char *knob = getenv("BULKHEAD_NET_CT_COUNT");
        if (knob && !strcmp(knob, "0"))
            return ct_count_missing(err);
    }
    if (ct_count_state < 0)
        return 0;
    char script[2560];
    snprintf(script, sizeof script,
             "table inet " BH_NET_CAP_TABLE " {\n"
             "  set per_source { type ipv4_addr; size 65536; flags dynamic; }\n"
             "  set per_source6 { type ipv6_addr; size 65536; flags dynamic; }\n"
             "  set exempt { type ipv4_addr; }\n"
             "  set exempt6 { type ipv6_addr; }\n"
             "  chain lo_pre {\n    type filter hook prerouting priority raw - 1; policy accept;\n"
             "    iif lo notrack\n  }\n"
             "  chain lo_out {\n    type filter hook output priority raw - 1; policy accept;\n"
             "    oif lo notrack\n  }\n"
             "  chain cap_output {\n    type filter hook output priority filter - 1; policy accept;\n"
             "    ct state new ct count over %1$u reject with icmpx type admin-prohibited\n  }\n"
             "  chain cap_forward {\n    type filter hook forward priority filter - 1; policy accept;\n"
             "    iifname \"vif*\" ip saddr != @exempt ct state new "
             "add @per_source { ip saddr ct count over %1$u } reject with icmpx type admin-prohibited\n"
             "    iifname \"vif*\" ip6 saddr != @exempt6 ct state new "
             "add @per_source6 { ip6 saddr ct count over %1$u } reject with icmpx type admin-prohibited\n  }\n"
             "}\n",
             conn_max ? conn_max : BH_NET_CONN_MAX_DEFAULT);
    if (defer && ct_count_state == 1) {
        if (!(*defer = strdup(script)))
            return bh_fail(err, ENOMEM, "connection-limit table");
        return 0;
    }
    bh_error first = { 0 };
    if (bh_nft_run(ns, script, &first) == 0) {
        ct_count_state = 1;
        return 0;
    }
    if (ct_count_state == 0) {
        /* Is it connection counting that is missing? The same hook without it loads. */
        static const char probe[] = "table inet bulkhead_ctprobe {\n  chain c {\n"
                                    "    type filter hook output priority filter - 1; policy accept;\n"
                                    "    ct state new accept\n  }\n}\ndelete table inet bulkhead_ctprobe\n";
        static const char probe_ct[] = "table inet bulkhead_ctprobe {\n  chain c {\n"
                                       "    type filter hook output priority filter - 1; policy accept;\n"
                                       "    ct state new ct count over 1 accept\n  }\n}\n"
                                       "delete table inet bulkhead_ctprobe\n";
        if (bh_nft_run(ns, probe, NULL) == 0 && bh_nft_run(ns, probe_ct, NULL) < 0)
            return ct_count_missing(err);
    }
    if (err)
        *err = first;
    return -1;
}

int bh_net_qube_init(const char *netns, gid_t gid_lo, gid_t gid_hi, bool forwarding, unsigned conn_max,
                     char **cap_script, bh_error *err)
{
    if (cap_script)
        *cap_script = NULL;
    _cleanup_close_ int ns = open_ns(netns, err);
    if (ns < 0)
        return -1;
    char range[64];
    snprintf(range, sizeof range, "%u %u", (unsigned)gid_lo, (unsigned)gid_hi);
    /* IPv6 off on every link but loopback until a link with routed IPv6 turns it
     * on for itself: an address the firewall does not know of must not exist. */
    if (bh_netns_sysctl(ns, "ipv6/conf/default/disable_ipv6", "1", NULL, 0, err) < 0 ||
        /* where a link turns IPv6 on: no router advertisements, no autoconfiguration,
         * no duplicate-address wait (bulkheadd sets every address and neighbour) */
        bh_netns_sysctl(ns, "ipv6/conf/default/accept_ra", "0", NULL, 0, err) < 0 ||
        bh_netns_sysctl(ns, "ipv6/conf/default/autoconf", "0", NULL, 0, err) < 0 ||
        bh_netns_sysctl(ns, "ipv6/conf/default/dad_transmits", "0", NULL, 0, err) < 0 ||
        bh_netns_sysctl(ns, "ipv6/conf/all/forwarding", forwarding ? "1" : "0", NULL, 0, err) < 0 ||
        bh_netns_sysctl(ns, "ipv4/ping_group_range", range, NULL, 0, err) < 0 ||
        bh_netns_sysctl(ns, "ipv4/conf/default/rp_filter", "1", NULL, 0, err) < 0 ||
        bh_netns_sysctl(ns, "ipv4/conf/all/rp_filter", "1", NULL, 0, err) < 0 ||
        bh_netns_sysctl(ns, "ipv4/ip_forward", forwarding ? "1" : "0", NULL, 0, err) < 0)
        return bh_prefix(err, "network of the qube");
    if (cap_table(ns, conn_max, cap_script, err) < 0)
        return bh_prefix(err, "connection limits of the qube");
    struct bh_nl nl;
    if (bh_nl_open(&nl, ns, err) < 0)
        return -1;
    int r = bh_nl_link_up(&nl, 1, err); /* lo is always index 1 in a new namespace */
    bh_nl_close(&nl);
    return r;
}

static int inaddr_host(struct bh_nl *nl, const char *ifname, struct in_addr addr, unsigned prefix,
                       struct in_addr route_to, unsigned route_prefix, const struct in_addr *gw_default, bh_error *err)
{
    int idx = bh_nl_ifindex(nl, ifname);
    if (idx <= 0)
        return bh_fail(err, ENODEV, "link %s vanished", ifname);
    if (bh_nl_link_up(nl, idx, err) < 0)
        return -1;
    if (bh_nl_addr_add(nl, idx, addr, prefix, err) < 0)
        return -1;
    if (route_prefix && bh_nl_route_add(nl, route_to, route_prefix, NULL, idx, err) < 0)
        return -1;
    if (gw_default && bh_nl_route_add(nl, (struct in_addr){ 0 }, 0, gw_default, idx, err) < 0)
        return -1;
    return 0;
}

/* IPv6 on one end of a link: turned on for this link only, its address, a route to
 * the other end (and a default route through it), the other end's MAC as a permanent
 * neighbour (as Qubes does for the gateway), so no neighbour discovery is needed. */
struct v6_end {
    const char *ifname;
    const struct in6_addr *addr, *other;
    unsigned prefix;      /* of addr; 128: the other end gets a host route */
    bool default_route;   /* through the other end */
    const uint8_t *other_mac;
};

static int inaddr6(int ns, struct bh_nl *nl, const struct v6_end *e, bh_error *err)
{
    char key[64];
    snprintf(key, sizeof key, "ipv6/conf/%s/disable_ipv6", e->ifname);
    if (bh_netns_sysctl(ns, key, "0", NULL, 0, err) < 0)
        return -1;
    snprintf(key, sizeof key, "ipv6/conf/%s/accept_ra", e->ifname);
    if (bh_netns_sysctl(ns, key, "0", NULL, 0, err) < 0)
        return -1;
    int idx = bh_nl_ifindex(nl, e->ifname);
    if (idx <= 0)
        return bh_fail(err, ENODEV, "link %s vanished", e->ifname);
    if (bh_nl_addr_add6(nl, idx, e->addr, e->prefix, err) < 0)
        return -1;
    if (e->prefix == 128 && bh_nl_route_add6(nl, e->other, 128, NULL, idx, err) < 0)
        return -1;
    if (e->default_route && bh_nl_route_add6(nl, &in6addr_any, 0, e->other, idx, err) < 0)
        return -1;
    return bh_nl_neigh_add6(nl, idx, e->other, e->other_mac, err);
}

int bh_net_link_plug(const struct bh_net_link *l, bh_error *err)
{
    _cleanup_close_ int cns = open_ns(l->client_netns, err);
    if (cns < 0)
        return -1;
    _cleanup_close_ int nns = open_ns(l->netvm_netns, err);
    if (nns < 0)
        return -1;
    char vif[16];
    bh_net_vif_name(l->client_qid, vif);
    uint8_t nmac[6];
    bh_mac_parse(BH_NET_NETVM_MAC, nmac);
    struct bh_nl cnl, nnl, host;
    if (bh_nl_open(&cnl, cns, err) < 0)
        return -1;
    int r = -1;
    if (bh_nl_open(&nnl, nns, err) < 0)
        goto out_c;
    if (bh_nl_open(&host, -1, err) < 0)
        goto out_n;
    /* A previous link of this client (another netvm, or a lost daemon's) goes first. */
    if (bh_nl_link_del(&cnl, "eth0", err) < 0 || bh_nl_link_del(&nnl, vif, err) < 0)
        goto out;
    struct bh_veth_end a = { "eth0", cns, l->client_mac }, b = { vif, nns, nmac };
    if (bh_nl_veth_create(&host, &a, &b, err) < 0)
        goto out;
    /* client: its address, the gateway on-link, default route through it */
    if (inaddr_host(&cnl, "eth0", l->client_ip, 32, l->gateway, 32, &l->gateway, err) < 0)
        goto out;
    /* netvm: the gateway address on the vif, a host route to the client */
    if (inaddr_host(&nnl, vif, l->gateway, 32, l->client_ip, 32, NULL, err) < 0)
        goto out;
    if (l->v6) {
        struct v6_end c = { "eth0", &l->client_ip6, &l->gateway6, 128, true, nmac };
        struct v6_end n = { vif, &l->gateway6, &l->client_ip6, 128, false, l->client_mac };
        if (inaddr6(cns, &cnl, &c, err) < 0 || inaddr6(nns, &nnl, &n, err) < 0) {
            bh_prefix(err, "IPv6 of the link");
            goto out;
        }
    }
    /* a guest's card in the client's namespace now ends on the new link */
    if (bh_net_guest_wire(cns, err) < 0)
        goto out;
    r = 0;
out:
    if (r < 0)
        (void)bh_nl_link_del(&nnl, vif, NULL);
    bh_nl_close(&host);
out_n:
    bh_nl_close(&nnl);
out_c:
    bh_nl_close(&cnl);
    return r;
}

int bh_net_link_unplug(const char *netvm_netns, uint32_t client_qid, bh_error *err)
{
    _cleanup_close_ int nns = open_ns(netvm_netns, err);
    if (nns < 0)
        return -1;
    char vif[16];
    bh_net_vif_name(client_qid, vif);
    struct bh_nl nl;
    if (bh_nl_open(&nl, nns, err) < 0)
        return -1;
    int r = bh_nl_link_del(&nl, vif, err);
    bh_nl_close(&nl);
    return r;
}

static int peer_table(const struct bh_net_uplink *u, bh_error *err)
{
    char qa[INET6_ADDRSTRLEN], cap[256] = "";
    inet_ntop(AF_INET, &u->qube_addr, qa, sizeof qa);
    if (bh_net_ct_count_ok())
        snprintf(cap, sizeof cap,
                 "  chain cap_forward {\n    type filter hook forward priority filter - 1; policy accept;\n"
                 "    iifname \"%s\" ct state new ct count over %u reject\n  }\n",
                 u->peer_ifname, u->conn_max ? u->conn_max : 65536u);
    char script[3072];
    /* The qube's traffic leaves masqueraded; nothing from it reaches the peer's own
     * services (the host, or the test's stand-in for it); it cannot claim another
     * source address. Only these tables are ours: the peer's other rules are untouched.
     * IPv6 gets a table of its own (and its own connection count) when it is carried;
     * otherwise that table drops all IPv6 from the qube. */
    int n = snprintf(script, sizeof script,
                     "table ip %1$s\ndelete table ip %1$s\ntable ip6 %1$s\ndelete table ip6 %1$s\n"
                     "table ip %1$s {\n"
                     "  chain pre {\n    type filter hook prerouting priority raw; policy accept;\n"
                     "    iifname \"%2$s\" ip saddr != %3$s drop\n  }\n"
                     "  chain input {\n    type filter hook input priority filter; policy accept;\n"
                     "    iifname \"%2$s\" ct state established,related accept\n"
                     "    iifname \"%2$s\" drop\n  }\n"
                     "%4$s"
                     "  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n"
                     "    ip saddr %3$s oifname != \"%2$s\" masquerade\n  }\n"
                     "}\n",
                     u->table, u->peer_ifname, qa, cap);
    if (u->v6) {
        inet_ntop(AF_INET6, &u->qube_addr6, qa, sizeof qa);
        snprintf(script + n, sizeof script - (size_t)n,
                 "table ip6 %1$s {\n"
                 "  chain pre {\n    type filter hook prerouting priority raw; policy accept;\n"
                 "    iifname \"%2$s\" ip6 saddr != %3$s drop\n  }\n"
                 "  chain input {\n    type filter hook input priority filter; policy accept;\n"
                 "    iifname \"%2$s\" ct state established,related accept\n"
                 "    iifname \"%2$s\" drop\n  }\n"
                 "%4$s"
                 "  chain post {\n    type nat hook postrouting priority srcnat; policy accept;\n"
                 "    ip6 saddr %3$s oifname != \"%2$s\" masquerade\n  }\n"
                 "}\n",
                 u->table, u->peer_ifname, qa, cap);
    } else {
        snprintf(script + n, sizeof script - (size_t)n,
                 "table ip6 %1$s {\n"
                 "  chain pre {\n    type filter hook prerouting priority raw; policy accept;\n"
                 "    iifname \"%2$s\" drop\n  }\n"
                 "}\n",
                 u->table, u->peer_ifname);
    }
    return bh_nft_run(u->peer_nsfd, script, err);
}

int bh_net_uplink_plug(struct bh_net_uplink *u, bh_error *err)
{
    _cleanup_close_ int qns = open_ns(u->qube_netns, err);
    if (qns < 0)
        return -1;
    struct bh_nl qnl, pnl;
    if (bh_nl_open(&qnl, qns, err) < 0)
        return -1;
    int r = -1;
    if (bh_nl_open(&pnl, u->peer_nsfd, err) < 0)
        goto out_q;
    if (bh_nl_link_del(&pnl, u->peer_ifname, err) < 0 || bh_nl_link_del(&qnl, "eth0", err) < 0)
        goto out;
    struct bh_veth_end a = { "eth0", qns, u->qube_mac }, b = { u->peer_ifname, u->peer_nsfd, NULL };
    if (bh_nl_veth_create(&pnl, &a, &b, err) < 0)
        goto out;
    if (inaddr_host(&qnl, "eth0", u->qube_addr, 30, (struct in_addr){ 0 }, 0, &u->peer_addr, err) < 0 ||
        inaddr_host(&pnl, u->peer_ifname, u->peer_addr, 30, (struct in_addr){ 0 }, 0, NULL, err) < 0)
        goto out;
    /* Forwarding is per interface in IPv4: on for ours; the namespace-wide switch is
     * needed too for replies, and is left as found if it was on already. */
    char key[96];
    snprintf(key, sizeof key, "ipv4/conf/%s/forwarding", u->peer_ifname);
    if (bh_netns_sysctl(u->peer_nsfd, key, "1", NULL, 0, err) < 0 ||
        bh_netns_sysctl(u->peer_nsfd, "ipv4/ip_forward", "1", u->prev_ip_forward, sizeof u->prev_ip_forward, err) < 0)
        goto out;
    if (u->v6) {
        /* IPv6 forwarding is one switch per namespace (conf/all); turning it on makes
         * the namespace a router (it stops taking router advertisements), so it is only
         * turned on where the caller says so (a test's namespace, not the host). */
        uint8_t pmac[6];
        int pidx = bh_nl_ifindex(&pnl, u->peer_ifname);
        if (pidx <= 0 || bh_nl_link_mac(&pnl, pidx, pmac) < 0) {
            bh_fail(err, ENODEV, "no MAC on %s", u->peer_ifname);
            goto out;
        }
        struct v6_end q = { "eth0", &u->qube_addr6, &u->peer_addr6, 64, true, pmac };
        struct v6_end p = { u->peer_ifname, &u->peer_addr6, &u->qube_addr6, 64, false, u->qube_mac };
        if (inaddr6(qns, &qnl, &q, err) < 0 || inaddr6(u->peer_nsfd, &pnl, &p, err) < 0)
            goto out;
        if (u->v6_set_forwarding &&
            bh_netns_sysctl(u->peer_nsfd, "ipv6/conf/all/forwarding", "1", u->prev_ip6_forward,
                            sizeof u->prev_ip6_forward, err) < 0)
            goto out;
    }
    if (peer_table(u, err) < 0)
        goto out;
    r = 0;
out:
    if (r < 0)
        (void)bh_nl_link_del(&pnl, u->peer_ifname, NULL);
    bh_nl_close(&pnl);
out_q:
    bh_nl_close(&qnl);
    return r;
}

void bh_net_uplink_unplug(const struct bh_net_uplink *u)
{
    struct bh_nl pnl;
    if (bh_nl_open(&pnl, u->peer_nsfd, NULL) == 0) {
        (void)bh_nl_link_del(&pnl, u->peer_ifname, NULL);
        bh_nl_close(&pnl);
    }
    char script[256];
    snprintf(script, sizeof script, "table ip %1$s\ndelete table ip %1$s\ntable ip6 %1$s\ndelete table ip6 %1$s\n",
             u->table);
    (void)bh_nft_run(u->peer_nsfd, script, NULL);
}
