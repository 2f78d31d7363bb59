/* The qubes' network, Qubes' way: routed point-to-point veth links, never a bridge;
 * NAT at each hop; each qube's network namespace created and configured by the host
 * (see netns.h), so every address, route and nftables rule in it is out of reach of
 * the qube's own root — including the per-qube firewall rules, which live in the
 * netvm's namespace as in Qubes, but where the netvm's root cannot touch them.
 *
 * Names inside a qube's namespace: `eth0` leads to its netvm (or, for the qube that
 * holds the uplink, to the host side); `vif<qid>.0` leads to the client qube <qid>.
 * One nftables table, `inet bulkhead`, per namespace, replaced whole in one
 * transaction on every change. */
#pragma once
#include "buf.h"
#include "err.h"
#include "fwrule.h"
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <time.h>

#define BH_NET_NETVM_MAC "fe:ff:ff:ff:ff:ff" /* a netvm's end of every link, as Qubes */

/* Loopback up, IPv6 off (on every link made later, until a link with routed IPv6
 * turns it on for itself), ICMP echo sockets for the qube's GIDs (ping as a normal
 * user without raw sockets), reverse-path filtering, forwarding if it serves others,
 * and the connection limits (see BH_NET_CAP_TABLE). With cap_script, once a first
 * load has shown that the limits load here, their table is not loaded but returned in
 * *cap_script (malloc'd; NULL if loaded or skipped) for the caller to load as the
 * prelude of the namespace's first firewall transaction: one nftables transaction
 * (one libnftables context and cache fill) per start instead of two. */
int bh_net_qube_init(const char *netns, gid_t gid_lo, gid_t gid_hi, bool forwarding, unsigned conn_max,
                     char **cap_script, bh_error *err);

/* Connection limits live in a table of their own, `inet bulkhead_cap`, made once when
 * the namespace is made and never replaced: nftables keeps what `ct count` has counted
 * in the rule (or set element) itself, so a table replaced on every rule change would
 * forget every open connection and let a flooding qube start over (the first attempt
 * at this limit failed exactly so). It holds:
 *   - out: the qube's own new connections (not loopback's) beyond conn_max are refused,
 *     so a qube fills at most conn_max entries of its own conntrack table;
 *   - fwd: per source address, a client's new connections beyond conn_max are refused
 *     in its netvm (which the client's root cannot touch), except for clients that are
 *     netvms themselves (set `exempt`, kept current by the main table's transaction):
 *     they limit each of their own clients and themselves the same way;
 *   - loopback is not tracked at all (nothing filters it).
 * Conntrack tables are per namespace but nf_conntrack_max is one host-wide number that
 * only the host can set: a per-namespace count has to be enforced like this. */
#define BH_NET_CAP_TABLE "bulkhead_cap"
/* False once probing found no nftables connection counting (the limits are skipped). */
bool bh_net_ct_count_ok(void);
#define BH_NET_CONN_MAX_DEFAULT 4096u

struct bh_net_link {
    const char *client_netns, *netvm_netns; /* pinned namespaces */
    uint32_t client_qid;
    struct in_addr client_ip, gateway;      /* gateway: the netvm's address */
    uint8_t client_mac[6];
    /* Routed IPv6 (Qubes' `ipv6` feature): the client's ip6 and its netvm's gateway6.
     * Without it IPv6 stays disabled on both ends of the link. */
    bool v6;
    struct in6_addr client_ip6, gateway6;
};
/* Plugs a client into its netvm (an old link of the client is replaced). */
int bh_net_link_plug(const struct bh_net_link *l, bh_error *err);
/* Unplugs client_qid from the netvm whose namespace is netvm_netns (the client's
 * `eth0` goes with it; call bh_net_guest_wire on the client's namespace after). */
int bh_net_link_unplug(const char *netvm_netns, uint32_t client_qid, bh_error *err);
void bh_net_vif_name(uint32_t qid, char out[16]);

/* ---- a guest's network card (guestnic.c) ----
 * An engine that runs a kernel of its own (vm) gets a tap device named
 * BH_NET_GUEST_NIC in the qube's namespace, wired to that namespace's `eth0` frame for
 * frame (no bridge, no routing): the guest is then on the link exactly where an `ns`
 * qube's stack is, and the netvm's rules apply to it unchanged. */
#define BH_NET_GUEST_NIC "guest0"
/* Makes the tap in the namespace pinned at netns, brings it up and wires it; returns
 * its fd (close-on-exec) for the engine to hand on (QEMU's -netdev tap,fd=N). The tap
 * lives as long as that fd (and the namespace). */
int bh_net_guest_nic_open(const char *netns, bh_error *err);
/* (Re)wires the tap of the namespace nsfd to its current `eth0`, or to nothing (every
 * frame of the guest dropped) when it has none; nothing to do without a tap. Called
 * whenever the namespace's link changes (bh_net_link_plug does it itself). */
int bh_net_guest_wire(int nsfd, bh_error *err);

struct bh_net_uplink {
    const char *qube_netns;  /* the qube that holds the uplink (sys-net) */
    int peer_nsfd;           /* the host's namespace, or the test's netns:NAME */
    const char *peer_ifname; /* unique per bulkheadd, at most 15 characters */
    const char *table;       /* nftables table in the peer namespace, unique per bulkheadd */
    struct in_addr qube_addr, peer_addr; /* a /30 between the two */
    uint8_t qube_mac[6];
    unsigned conn_max;       /* new connections the peer forwards for all qubes together; 0 none */
    char prev_ip_forward[8]; /* out: net.ipv4.ip_forward of the peer before the plug */
    /* IPv6 too (the qube has the `ipv6` feature): a /64 between the two, the qube's
     * address masqueraded by the peer (NAT66, as Qubes' netvms masquerade IPv6). */
    bool v6;
    bool v6_set_forwarding;   /* may turn the peer's IPv6 forwarding on (not the host's) */
    struct in6_addr qube_addr6, peer_addr6;
    char prev_ip6_forward[8]; /* out: net.ipv6.conf.all.forwarding of the peer before */
};
/* Plugs the uplink: veth, addresses, default route, and in the peer namespace
 * forwarding on our interface, masquerade of the qube's address, and no way in to
 * the peer's own services. */
int bh_net_uplink_plug(struct bh_net_uplink *u, bh_error *err);
/* Removes the peer side (interface, nftables table). The caller restores
 * net.ipv4.ip_forward from prev_ip_forward once no uplink of its needs it. */
void bh_net_uplink_unplug(const struct bh_net_uplink *u);

/* ---- the nftables table of one qube's namespace (ruleset.c) ---- */
struct bh_net_client {
    uint32_t qid;
    struct in_addr ip;
    bool v6;            /* routed IPv6 on its link, from ip6 only */
    struct in6_addr ip6;
    uint8_t mac[6];
    bool serves;       /* a netvm itself: exempt from the per-client limit (it has its own) */
    const char *rules; /* normalised qvm-firewall text; NULL = accept everything */
};
struct bh_net_table {
    bool serves;          /* provides network to the clients below */
    bool upstream;        /* eth0 exists and leads out */
    bool v6_up;           /* eth0 carries IPv6 (this qube has routed IPv6) */
    bool cap_table;       /* the namespace has the connection-limit table (see bh_net_ct_count_ok) */
    int ndns;             /* upstream resolvers for the DNS DNAT; 0: upstream is virtual */
    struct in_addr dns[2];
    const struct bh_net_client *clients;
    size_t nclients;
    time_t now;
    bh_fw_resolver resolve;
    void *resolve_ctx;
    const char *prelude;  /* applied first in the same transaction (bh_net_qube_init's cap_script), or NULL */
};
struct bh_net_table_result {
    time_t next_expire;   /* earliest rule expiry, 0 none */
    unsigned dsthosts;    /* rules naming hosts (re-resolved now and then) */
    unsigned blocked;     /* clients whose rules could not be applied (all refused) */
};
/* The whole `inet bulkhead` table for one namespace, as a script that replaces the
 * previous one atomically. */
int bh_net_table_script(const struct bh_net_table *t, bh_buf *out, struct bh_net_table_result *res);
/* Generates it (after t->prelude, in one transaction) and hands it to nftables in the
 * namespace pinned at netns without waiting: a ticket for bh_nft_collect (nft.h). */
int bh_net_table_submit(const char *netns, const struct bh_net_table *t, struct bh_net_table_result *res,
                        bh_error *err);
/* The same for an nftables script. */
int bh_net_script_submit(const char *netns, const char *script, bh_error *err);
