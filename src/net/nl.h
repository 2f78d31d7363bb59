/* rtnetlink through libmnl: the few link, address and route operations a routed
 * point-to-point topology needs. No `ip` binary is run. Each bh_nl is a NETLINK_ROUTE
 * socket bound to the namespace it was opened in; a veth pair is created with each
 * end placed straight into its namespace, so no host-side name is ever needed. */
#pragma once
#include "err.h"
#include <netinet/in.h>
#include <stdint.h>

struct mnl_socket;
struct bh_nl {
    struct mnl_socket *sock;
    unsigned portid, seq;
};

/* Opens a socket in the namespace nsfd (-1: the caller's). */
int bh_nl_open(struct bh_nl *nl, int nsfd, bh_error *err);
void bh_nl_close(struct bh_nl *nl);

struct bh_veth_end {
    const char *name;    /* at most 15 characters */
    int nsfd;            /* namespace the end is created in */
    const uint8_t *mac;  /* 6 bytes, or NULL for a random one */
};
/* Creates a veth pair (both ends down). */
int bh_nl_veth_create(struct bh_nl *nl, const struct bh_veth_end *a, const struct bh_veth_end *b, bh_error *err);
/* Index of a link in nl's namespace, or 0 if there is none. */
int bh_nl_ifindex(struct bh_nl *nl, const char *name);
int bh_nl_link_up(struct bh_nl *nl, int ifindex, bh_error *err);
/* Deletes a link (and so a veth's peer); a missing link is fine. */
int bh_nl_link_del(struct bh_nl *nl, const char *name, bh_error *err);
int bh_nl_addr_add(struct bh_nl *nl, int ifindex, struct in_addr local, unsigned prefix, bh_error *err);
/* Route to dst/prefix through ifindex, via gw if gw is non-NULL (else on-link). */
int bh_nl_route_add(struct bh_nl *nl, struct in_addr dst, unsigned prefix, const struct in_addr *gw, int ifindex,
                    bh_error *err);

/* IPv6: the address is usable at once (no duplicate detection: both ends are ours). */
int bh_nl_addr_add6(struct bh_nl *nl, int ifindex, const struct in6_addr *local, unsigned prefix, bh_error *err);
int bh_nl_route_add6(struct bh_nl *nl, const struct in6_addr *dst, unsigned prefix, const struct in6_addr *gw,
                     int ifindex, bh_error *err);
/* A permanent neighbour entry (as Qubes sets for the gateway): no neighbour discovery
 * is needed across a link whose both ends bulkheadd made. */
int bh_nl_neigh_add6(struct bh_nl *nl, int ifindex, const struct in6_addr *addr, const uint8_t mac[6], bh_error *err);
/* The MAC of a link; -1 if it has none. */
int bh_nl_link_mac(struct bh_nl *nl, int ifindex, uint8_t mac[6]);

/* Parses "aa:bb:cc:dd:ee:ff". */
int bh_mac_parse(const char *s, uint8_t mac[6]);
