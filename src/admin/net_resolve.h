/* dsthost answers for the firewall, without ever waiting on the event loop: a cache
 * filled by the resolver helper (src/net/resolver.h), renewed in the background, and
 * admin.vm.firewall.Set calls parked until the names they need are answered. */
#pragma once
#include "err.h"
#include "model.h"
#include "net/fwrule.h"
#include <netinet/in.h>
#include <time.h>

/* changed(app) runs (on the loop) when an answer differs from the one cached: the
 * tables are rebuilt then. peer_ns < 0: no uplink, nothing ever resolves. */
int bh_net_resolve_init(struct bh_app *app, int peer_ns, const char *resolv_conf, const struct in_addr *servers, int n,
                        int ttl_s, void (*changed)(struct bh_app *app), bh_error *err);
void bh_net_resolve_fini(void);
/* A bh_fw_resolver for building tables; never waits: the cached answer (a stale one is
 * renewed in the background), or -1 for a name not answered yet (it is asked now; the
 * rules naming it block until the answer, then changed() runs). */
int bh_net_resolve_cached(void *ctx, const char *host, struct bh_fw_addrs *out);
/* admin.vm.firewall.Set's check: 0 every dsthost of rules has a fresh answer, -1 one
 * does not resolve (err), 1 parked: the call on conn is answered later (the rules are
 * stored then, or refused), with the loop free meanwhile. */
int bh_net_resolve_check(struct bh_app *app, struct bh_qube *q, const char *rules, void *conn, bh_error *err);
/* Renews stale names in use; answers parked calls that waited too long. */
void bh_net_resolve_tick(void);
/* The parked call's client went away. */
void bh_net_resolve_drop_conn(void *conn);
