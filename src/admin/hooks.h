/* Where the model calls out to the rest of the daemon (storage, engine, networking),
 * so that model.c does not depend on them and tests can run the model alone. Each
 * hook may be NULL. */
#pragma once
#include "err.h"
struct bh_app;
struct bh_qube;

struct bh_hooks {
    int (*volumes_create)(struct bh_app *app, struct bh_qube *q, bh_error *err);
    int (*volumes_remove)(struct bh_app *app, struct bh_qube *q, bh_error *err);
    /* Called after a property of q changed (e.g. netvm while running). */
    void (*property_changed)(struct bh_app *app, struct bh_qube *q, const char *name);
    /* Networking: may refuse a firewall rule set it cannot enforce (a dsthost that does
     * not resolve): -1 refuse, 0 fine, 1 parked (the hook stores the rules and answers
     * the call on conn later, with bh_server_finish); told after the rules of q changed. */
    int (*firewall_check)(struct bh_app *app, struct bh_qube *q, const char *rules, void *conn, bh_error *err);
    void (*firewall_changed)(struct bh_app *app, struct bh_qube *q);
    /* A feature of q was set or deleted (e.g. `ipv6` while qubes run). */
    void (*feature_changed)(struct bh_app *app, struct bh_qube *q, const char *key);
    /* memory, maxmem or vcpus of a running q changed: apply them where the engine can. */
    void (*limits_changed)(struct bh_app *app, struct bh_qube *q);
    /* A halted qube's engine, kept after a cleanup that failed, cleans up (before the
     * qube is removed); -1 with the reason while it cannot. */
    int (*engine_clean)(struct bh_app *app, struct bh_qube *q, bh_error *err);
    /* The client of a parked call went away (besides waiters.c's own). */
    void (*conn_dropped)(void *conn);
};
extern struct bh_hooks bh_hooks;
