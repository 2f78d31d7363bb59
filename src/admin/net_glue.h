/* The daemon's side of the qubes' network (src/net does the work): which namespace
 * each qube gets, which links exist, the nftables table of every running qube, the
 * uplink. Everything is derived from the model (netvm, provides_network, ip, mac,
 * firewall) and from which qubes run, so it can be rebuilt after a restart. */
#pragma once
#include "driver/driver.h"
#include "model.h"

/* uplink: "none", "host" or "netns:NAME". */
int bh_net_glue_init(struct bh_app *app, const char *uplink, bh_error *err);
/* At daemon stop: what we added to the host side (uplink interface, nftables table)
 * goes; qubes keep running and get it back at the next start. */
void bh_net_glue_fini(struct bh_app *app);

/* Where q's network namespace is pinned: <runtime>/net/q<qid>. */
void bh_net_glue_netns_path(struct bh_app *app, const struct bh_qube *q, char *out, size_t n);
/* Fills spec->net (strings point into buf) for q. */
struct bh_net_buf {
    char ip[16], gateway[16], mac[18], ip6[46], gateway6[46], netns[4200];
};
void bh_net_glue_spec(struct bh_app *app, const struct bh_qube *q, struct bh_net_config *net, struct bh_net_buf *buf);

/* Before the engine starts q: its namespace, its link to its netvm, its uplink. */
int bh_net_glue_prestart(struct bh_app *app, struct bh_qube *q, const struct bh_qube_spec *spec, bh_error *err);
/* Waits until the nftables rules that prestart handed over for q are in force: the
 * engine calls it (through spec->before_run) before anything of q runs; the lifecycle
 * once more after the engine's start (nothing left by then). -1 (err): they are not,
 * and q must not run. */
int bh_net_glue_rules_wait(struct bh_qube *q, bh_error *err);
/* After q started (its clients that run get plugged back), or failed/stopped. */
void bh_net_glue_started(struct bh_app *app, struct bh_qube *q);
void bh_net_glue_stopped(struct bh_app *app, struct bh_qube *q);
/* After bulkheadd adopted running qubes: rebuild links state, uplink and tables. */
void bh_net_glue_adopted(struct bh_app *app);
