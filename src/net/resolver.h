/* dsthost resolution off bulkheadd's event loop: a helper process that resolves one
 * name at a time through the uplink's resolvers, from the uplink's namespace, and
 * answers over a socket the loop watches; each name is asked for A and AAAA records. A resolver that never answers costs the
 * helper (at most BH_RESOLVER_BUDGET_S a name), never the daemon.
 *
 * The helper is forked once, joins the peer namespace, then is confined (the answers
 * it parses come from the network): an empty read-only root with only the uplink's
 * resolv.conf, nobody with no capabilities and no new privileges, a seccomp allowlist
 * (resolver_confine.c). It answers with fixed-size records that the daemon checks
 * (resolver.c). */
#pragma once
#include "err.h"
#include <netinet/in.h>
#include <stdint.h>
#include <sys/types.h>

#define BH_RESOLVER_MAX_ADDRS 32
#define BH_RESOLVER_HOST_MAX 253
#define BH_RESOLVER_BUDGET_S 8 /* A then AAAA: 1 s a try, one retry, two servers at most */

struct bh_resolver_req {
    uint32_t id;
    char host[BH_RESOLVER_HOST_MAX + 1]; /* NUL-terminated */
};
struct bh_resolver_ans {
    uint32_t id;
    int32_t n;  /* IPv4 (A): -1 none; else the count of addresses */
    int32_t n6; /* IPv6 (AAAA): the same */
    struct in_addr a[BH_RESOLVER_MAX_ADDRS];
    struct in6_addr a6[BH_RESOLVER_MAX_ADDRS];
};

struct bh_resolver {
    pid_t pid;
    int fd; /* SOCK_SEQPACKET, non-blocking, close-on-exec */
};

/* Forks the helper: resolution from inside peer_nsfd through servers[0..n);
 * resolv_conf (NULL: none) is the only file it sees, at /etc/resolv.conf. */
int bh_resolver_start(struct bh_resolver *r, int peer_nsfd, const char *resolv_conf, const struct in_addr *servers, int n,
                      bh_error *err);
/* The helper's confinement, applied to the calling process (root, single-threaded):
 * a new mount namespace whose root is an empty read-only tmpfs holding resolv_conf as
 * /etc/resolv.conf, then nobody without capabilities, no new privileges, and a seccomp
 * allowlist (kill on anything else; sanitizer builds log instead). */
int bh_resolver_confine(const char *resolv_conf, bh_error *err);
/* Stops and reaps it. */
void bh_resolver_stop(struct bh_resolver *r);
/* Queues a name; -1 (EAGAIN) when the socket is full: ask again later. */
int bh_resolver_send(struct bh_resolver *r, uint32_t id, const char *host);
/* Reads one answer: 1 got one (checked), 0 none now, -1 the helper is gone. */
int bh_resolver_recv(struct bh_resolver *r, struct bh_resolver_ans *out);
