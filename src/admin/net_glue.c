#include "net_glue.h"
#include "cleanup.h"
#include "engine_glue.h"
#include "hooks.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "props.h"
#include "net_resolve.h"
#include "net/dns.h"
#include "net/net.h"
#include "net/netns.h"
#include "net/nft.h"
#include "net/nl.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_QID 65536
#define RESOLVE_TTL_DEFAULT 60
/* How often dsthost names are resolved again (seconds); BULKHEAD_NET_RESOLVE_SECONDS
 * overrides (tests use a short one). */
static int resolve_ttl = RESOLVE_TTL_DEFAULT;
/* New connections per qube (BULKHEAD_NET_CONN_MAX) and through the uplink for all
 * qubes together (BULKHEAD_NET_UPLINK_CONN_MAX; default a quarter of the peer's
 * conntrack table, at most 65536): see net.h. */
static unsigned conn_max = BH_NET_CONN_MAX_DEFAULT, uplink_conn_max;

static struct bh_app *g_app;
static enum { UPLINK_NONE, UPLINK_NETNS, UPLINK_HOST } uplink_kind;
static char uplink_name[220];
static int peer_ns = -1;
static uint32_t tag; /* per-daemon: hash of the runtime dir */
static struct in_addr updns[2];
static char updns_file[300]; /* the resolv.conf they came from */
static int n_updns;
/* The netvm each running qube is linked to (qid), 0 = none. */
static uint32_t plugged[MAX_QID];
/* Qubes holding an uplink; ... that carries IPv6 too. */
static bool has_uplink[MAX_QID], uplink_v6[MAX_QID];
static bool warned_host_v6;
static time_t next_expire;


static uint32_t fnv1a(const char *s, uint32_t h)
{
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

void bh_net_glue_netns_path(struct bh_app *app, const struct bh_qube *q, char *out, size_t n)
{
    snprintf(out, n, "%s/net/q%u", app->runtime_dir, q->qid);
}

static bool running(const struct bh_qube *q) { return q && bh_qube_is_running(q); }

static struct bh_qube *netvm_of(struct bh_app *app, const struct bh_qube *q)
{
    _cleanup_free_ char *n = bh_qube_prop(app, q, "netvm");
    return n && *n ? bh_app_find(app, n) : NULL;
}

static bool wants_uplink(struct bh_app *app, const struct bh_qube *q)
{
    return uplink_kind != UPLINK_NONE && bh_qube_prop_bool(app, q, "provides_network") && !netvm_of(app, q);
}

static bool qube_v6(struct bh_app *app, const struct bh_qube *q, struct in6_addr *ip6, struct in6_addr *gw6);
static bool serves_v6(struct bh_app *app, const struct bh_qube *q);

void bh_net_glue_spec(struct bh_app *app, const struct bh_qube *q, struct bh_net_config *net, struct bh_net_buf *b)
{
    memset(net, 0, sizeof *net);
    memset(b, 0, sizeof *b);
    if (q->klass == BH_ADMINVM)
        return;
    /* Every qube gets a namespace of the host's: loopback only while it has no netvm,
     * so that a netvm set while it runs can be plugged in. */
    bh_net_glue_netns_path(app, q, b->netns, sizeof b->netns);
    net->netns_path = b->netns;
    /* the MAC of a guest's own card (vm engine), which it has with or without a
     * netvm, so that one set while it runs needs no new device */
    _cleanup_free_ char *mac = bh_qube_prop(app, q, "mac");
    uint8_t m[6];
    if (bh_mac_parse(mac, m) == 0) {
        snprintf(b->mac, sizeof b->mac, "%s", mac);
        net->mac = b->mac;
    }
    _cleanup_free_ char *ip = bh_qube_prop(app, q, "visible_ip");
    _cleanup_free_ char *gw = bh_qube_prop(app, q, "visible_gateway");
    if (ip && *ip && gw && *gw) {
        net->enabled = true;
        snprintf(b->ip, sizeof b->ip, "%s", ip);
        snprintf(b->gateway, sizeof b->gateway, "%s", gw);
        net->ip = b->ip;
        net->gateway = b->gateway;
        net->netmask = "255.255.255.255";
        net->dns1 = BH_DNS_VIRT1;
        net->dns2 = BH_DNS_VIRT2;
        /* as the link will carry it (plug): the netvm offers IPv6 and q has it */
        struct bh_qube *n = netvm_of(app, q);
        struct in6_addr a6, g6;
        if (n && serves_v6(app, n) && qube_v6(app, q, &a6, &g6)) {
            inet_ntop(AF_INET6, &a6, b->ip6, sizeof b->ip6);
            inet_ntop(AF_INET6, &g6, b->gateway6, sizeof b->gateway6);
            net->ip6 = b->ip6;
            net->gateway6 = b->gateway6;
        }
    }
}

/* Routed IPv6 for q (Qubes' `ipv6` feature, here or on its netvm chain): its own
 * visible_ip6 and its netvm's gateway6 (visible_gateway6) must both exist. */
static bool qube_v6(struct bh_app *app, const struct bh_qube *q, struct in6_addr *ip6, struct in6_addr *gw6)
{
    _cleanup_free_ char *a = bh_qube_prop(app, q, "visible_ip6");
    _cleanup_free_ char *g = bh_qube_prop(app, q, "visible_gateway6");
    struct in6_addr x, y;
    if (!a || !g || inet_pton(AF_INET6, a, &x) != 1 || inet_pton(AF_INET6, g, &y) != 1)
        return false;
    if (ip6)
        *ip6 = x;
    if (gw6)
        *gw6 = y;
    return true;
}

/* A netvm offers IPv6 to its clients when it has a gateway6. */
static bool serves_v6(struct bh_app *app, const struct bh_qube *q)
{
    _cleanup_free_ char *g = bh_qube_prop(app, q, "gateway6");
    return g && *g;
}

/* ---- tables ---- */

/* The link of client q to its (plugged) netvm carries IPv6. */
static bool link_v6(struct bh_app *app, const struct bh_qube *q)
{
    struct bh_qube *n = plugged[q->qid % MAX_QID] ? bh_app_find_qid(app, plugged[q->qid % MAX_QID]) : NULL;
    return n && serves_v6(app, n) && qube_v6(app, q, NULL, NULL);
}

/* prelude: nftables commands to apply in the same transaction, first (at a start:
 * the qube's connection-limit table); applied alone when the table is not due
 * (*table says which it was). Handed to nftables without waiting: the ticket to
 * collect (refresh_end), 0 when nothing was due, -1 (said in the log) when it could
 * not be handed over. */
static int refresh_begin(struct bh_app *app, struct bh_qube *q, const char *prelude, bool *table)
{
    char ns[4200];
    bh_net_glue_netns_path(app, q, ns, sizeof ns);
    *table = (running(q) || q->rt.state == BH_STATE_TRANSIENT) && bh_netns_exists(ns);
    if (!*table) {
        bh_error err = { 0 };
        int id = prelude ? bh_net_script_submit(ns, prelude, &err) : 0;
        if (id < 0)
            bh_warn("%s: connection limits: %s", q->name, err.msg);
        return id;
    }
    struct bh_net_client *cl = calloc(app->nqubes ? app->nqubes : 1, sizeof *cl);
    _cleanup_free_ char **ips = calloc(app->nqubes ? app->nqubes : 1, sizeof *ips);
    if (!cl || !ips) {
        free(cl);
        return -1;
    }
    size_t n = 0;
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *c = app->qubes[i];
        if (c == q || plugged[c->qid % MAX_QID] != q->qid || !(running(c) || c->rt.state == BH_STATE_TRANSIENT))
            continue;
        _cleanup_free_ char *ip = bh_qube_prop(app, c, "visible_ip");
        _cleanup_free_ char *mac = bh_qube_prop(app, c, "mac");
        struct bh_net_client *x = &cl[n];
        if (!ip || inet_pton(AF_INET, ip, &x->ip) != 1 || bh_mac_parse(mac, x->mac) < 0)
            continue;
        x->qid = c->qid;
        x->v6 = serves_v6(app, q) && qube_v6(app, c, &x->ip6, NULL);
        x->serves = bh_qube_prop_bool(app, c, "provides_network");
        x->rules = c->firewall;
        n++;
    }
    struct bh_net_table t = {
        .serves = bh_qube_prop_bool(app, q, "provides_network"),
        .upstream = has_uplink[q->qid % MAX_QID] || plugged[q->qid % MAX_QID] != 0,
        .v6_up = has_uplink[q->qid % MAX_QID] ? uplink_v6[q->qid % MAX_QID]
                                               : plugged[q->qid % MAX_QID] != 0 && link_v6(app, q),
        .cap_table = bh_net_ct_count_ok(),
        .ndns = has_uplink[q->qid % MAX_QID] ? n_updns : 0,
        .dns = { updns[0], updns[1] },
        .clients = cl,
        .nclients = n,
        .now = time(NULL),
        .resolve = bh_net_resolve_cached,
        .prelude = prelude,
    };
    struct bh_net_table_result res;
    bh_error err = { 0 };
    int id = bh_net_table_submit(ns, &t, &res, &err);
    free(cl);
    if (id < 0) {
        bh_warn("%s: network rules: %s", q->name, err.msg);
        return -1;
    }
    /* what the script holds, whether or not it takes */
    if (res.next_expire && (!next_expire || res.next_expire < next_expire))
        next_expire = res.next_expire;
    if (res.blocked)
        bh_warn("%s: the firewall rules of %u client(s) could not be applied as written: their traffic is blocked",
                q->name, res.blocked);
    return id;
}

/* Waits for what refresh_begin handed over for qube `name`: 0 in, -1 (said in the
 * log) not. */
static int refresh_end(const char *name, int id, bool table)
{
    if (id <= 0)
        return id;
    bh_error err = { 0 };
    if (bh_nft_collect(id, &err) < 0) {
        bh_warn("%s: %s: %s", name, table ? "network rules" : "connection limits", err.msg);
        return -1;
    }
    return 0;
}

static int refresh_with(struct bh_app *app, struct bh_qube *q, const char *prelude)
{
    bool table;
    int id = refresh_begin(app, q, prelude, &table);
    return refresh_end(q->name, id, table);
}

static int refresh(struct bh_app *app, struct bh_qube *q) { return refresh_with(app, q, NULL); }

static void refresh_all(struct bh_app *app)
{
    next_expire = 0;
    for (size_t i = 0; i < app->nqubes; i++)
        if (app->qubes[i]->klass != BH_ADMINVM)
            (void)refresh(app, app->qubes[i]);
}

/* ---- links ---- */

static int plug(struct bh_app *app, struct bh_qube *c, struct bh_qube *n, bh_error *err)
{
    char cns[4200], nns[4200];
    bh_net_glue_netns_path(app, c, cns, sizeof cns);
    bh_net_glue_netns_path(app, n, nns, sizeof nns);
    _cleanup_free_ char *ip = bh_qube_prop(app, c, "visible_ip");
    _cleanup_free_ char *gw = bh_qube_prop(app, n, "gateway");
    _cleanup_free_ char *mac = bh_qube_prop(app, c, "mac");
    struct bh_net_link l = { .client_netns = cns, .netvm_netns = nns, .client_qid = c->qid };
    if (!ip || inet_pton(AF_INET, ip, &l.client_ip) != 1 || !gw || inet_pton(AF_INET, gw, &l.gateway) != 1 ||
        bh_mac_parse(mac, l.client_mac) < 0)
        return bh_fail(err, EINVAL, "%s has no usable address, gateway or MAC", c->name);
    l.v6 = serves_v6(app, n) && qube_v6(app, c, &l.client_ip6, &l.gateway6);
    if (bh_net_link_plug(&l, err) < 0)
        return -1;
    plugged[c->qid % MAX_QID] = n->qid;
    return 0;
}

static void unplug(struct bh_app *app, struct bh_qube *c)
{
    uint32_t nq = plugged[c->qid % MAX_QID];
    plugged[c->qid % MAX_QID] = 0;
    struct bh_qube *n = nq ? bh_app_find_qid(app, nq) : NULL;
    if (!n)
        return;
    char nns[4200], cns[4200];
    bh_net_glue_netns_path(app, n, nns, sizeof nns);
    if (bh_netns_exists(nns)) {
        bh_error err = { 0 };
        if (bh_net_link_unplug(nns, c->qid, &err) < 0)
            bh_warn("%s: unplugging from %s: %s", c->name, n->name, err.msg);
    }
    /* a guest's network card in c's namespace is wired to nothing now */
    bh_net_glue_netns_path(app, c, cns, sizeof cns);
    int fd = bh_netns_exists(cns) ? open(cns, O_RDONLY | O_CLOEXEC) : -1;
    if (fd >= 0) {
        bh_error err = { 0 };
        if (bh_net_guest_wire(fd, &err) < 0)
            bh_warn("%s: %s", c->name, err.msg);
        close(fd);
    }
}

static void uplink_conf(struct bh_app *app, struct bh_qube *q, struct bh_net_uplink *u, char *ns, size_t nsn,
                        char *ifname, char *table)
{
    memset(u, 0, sizeof *u);
    bh_net_glue_netns_path(app, q, ns, nsn);
    snprintf(ifname, 16, "bh%06xu%u", tag & 0xffffff, q->qid % 100000u);
    snprintf(table, 64, "bulkhead_%06x_%u", tag & 0xffffff, q->qid);
    u->qube_netns = ns;
    u->peer_nsfd = peer_ns;
    u->peer_ifname = ifname;
    u->table = table;
    u->conn_max = uplink_conn_max;
    /* a /30 in 100.64.0.0/10, chosen by daemon and qube so that daemons side by side
     * (each with its own peer) do not collide on one host */
    char key[32];
    snprintf(key, sizeof key, "/%u", q->qid);
    uint32_t block = fnv1a(key, tag) & 0xfffff;
    uint32_t base = (100u << 24 | 64u << 16) + block * 4;
    u->peer_addr.s_addr = htonl(base + 1);
    u->qube_addr.s_addr = htonl(base + 2);
    /* IPv6 where sys-net has it (gateway6: the `ipv6` feature): a /64 of unique local
     * addresses chosen the same way, fd62:6864:<32 bits>::1 (peer) and ::2 (qube). */
    u->v6 = serves_v6(app, q);
    uint32_t block6 = fnv1a(key, tag ^ 0x6u);
    uint8_t *p = u->peer_addr6.s6_addr, *qa = u->qube_addr6.s6_addr;
    const uint8_t pre[8] = { 0xfd, 0x62, 0x68, 0x64, block6 >> 24, block6 >> 16, block6 >> 8, block6 };
    memcpy(p, pre, 8);
    memcpy(qa, pre, 8);
    p[15] = 1;
    qa[15] = 2;
    u->v6_set_forwarding = uplink_kind == UPLINK_NETNS;
    if (u->v6 && uplink_kind == UPLINK_HOST) {
        /* The host's IPv6 forwarding is not ours to turn on (it would make the host a
         * router that ignores router advertisements): IPv6 only if it is on already. */
        size_t vl = 0;
        _cleanup_free_ char *v = bh_read_file("/proc/sys/net/ipv6/conf/all/forwarding", 16, &vl);
        if (!v || atoi(v) != 1) {
            if (!warned_host_v6)
                bh_warn("%s has the ipv6 feature but the host does not forward IPv6 "
                        "(net.ipv6.conf.all.forwarding=0): its qubes get no IPv6 uplink", q->name);
            warned_host_v6 = true;
            u->v6 = false;
        }
    }
    _cleanup_free_ char *mac = bh_qube_prop(app, q, "mac");
    if (bh_mac_parse(mac, u->qube_mac) < 0)
        bh_mac_parse("00:16:3e:5e:6c:00", u->qube_mac);
}

static int uplink_up(struct bh_app *app, struct bh_qube *q, bh_error *err)
{
    struct bh_net_uplink u;
    char ns[4200], ifname[16], table[64];
    uplink_conf(app, q, &u, ns, sizeof ns, ifname, table);
    if (bh_net_uplink_plug(&u, err) < 0)
        return bh_prefix(err, "uplink of %s", q->name);
    has_uplink[q->qid % MAX_QID] = true;
    uplink_v6[q->qid % MAX_QID] = u.v6;
    /* We turned forwarding on in the peer: remember to turn it off at stop (kept in a
     * file so that a restarted daemon still knows). */
    const char *was[2][2] = { { u.prev_ip_forward, "ip_forward.was-off" }, { u.prev_ip6_forward, "ip6_forward.was-off" } };
    for (int i = 0; i < 2; i++) {
        char rec[4200];
        snprintf(rec, sizeof rec, "%s/net/%s", app->runtime_dir, was[i][1]);
        if (!strcmp(was[i][0], "0")) {
            int fd = open(rec, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
            if (fd >= 0)
                close(fd);
        }
    }
    return 0;
}

static void uplink_down(struct bh_app *app, struct bh_qube *q)
{
    if (!has_uplink[q->qid % MAX_QID])
        return;
    has_uplink[q->qid % MAX_QID] = false;
    struct bh_net_uplink u;
    char ns[4200], ifname[16], table[64];
    uplink_conf(app, q, &u, ns, sizeof ns, ifname, table);
    bh_net_uplink_unplug(&u);
}

/* ---- lifecycle ---- */

/* The nftables transactions of a start, handed over at its prestart and waited for
 * once the engine is about to let the qube run. Starts are made one at a time in
 * bulkheadd's loop; the room is for a start whose engine never waited. */
struct rules_pending {
    uint32_t qid; /* 0: free */
    int own, netvm; /* tickets (bh_nft_submit), 0: none */
    bool own_table, netvm_table;
    char netvm_name[64];
};
static struct rules_pending pending_rules[8];

static struct rules_pending *rules_find(uint32_t qid)
{
    for (size_t i = 0; qid && i < sizeof pending_rules / sizeof *pending_rules; i++)
        if (pending_rules[i].qid == qid)
            return &pending_rules[i];
    return NULL;
}

/* Its tickets will not be collected (the start failed first): forgotten, slot free. */
static void rules_drop(struct rules_pending *p)
{
    bh_nft_forget(p->own);
    bh_nft_forget(p->netvm);
    *p = (struct rules_pending){ 0 };
}

static struct rules_pending *rules_slot(uint32_t qid)
{
    struct rules_pending *p = rules_find(qid);
    if (p) { /* an earlier start's, never waited for */
        rules_drop(p);
        return p;
    }
    for (size_t i = 0; i < sizeof pending_rules / sizeof *pending_rules; i++)
        if (!pending_rules[i].qid)
            return &pending_rules[i];
    return NULL;
}

int bh_net_glue_prestart(struct bh_app *app, struct bh_qube *q, const struct bh_qube_spec *spec, bh_error *err)
{
    if (!spec->net.netns_path)
        return 0;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/net", app->runtime_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", dir);
    bool serves = bh_qube_prop_bool(app, q, "provides_network");
    _cleanup_free_ char *cap = NULL; /* the connection limits, loaded with its own table below */
    if (bh_netns_create(spec->net.netns_path, err) < 0 ||
        bh_net_qube_init(spec->net.netns_path, spec->uid_base, spec->uid_base + (spec->uid_count ? spec->uid_count : 65536) - 1,
                         serves, conn_max, &cap, err) < 0)
        goto fail;
    plugged[q->qid % MAX_QID] = 0;
    has_uplink[q->qid % MAX_QID] = false;
    struct bh_qube *n = netvm_of(app, q);
    if (spec->net.enabled && n && running(n)) {
        if (plug(app, q, n, err) < 0)
            goto fail;
    }
    if (wants_uplink(app, q) && uplink_up(app, q, err) < 0)
        goto fail;
    /* Its own table first, then its netvm's with this client's chain: handed over
     * now, in force before anything of the qube runs (the engine waits for them,
     * bh_net_glue_rules_wait, before it lets the qube's first process go): nothing gets
     * in or out before the rules are there. Meanwhile the engine prepares the qube. */
    struct rules_pending *rp = rules_slot(q->qid);
    if (!rp) {
        bh_fail(err, EAGAIN, "too many qubes starting at once");
        goto fail;
    }
    *rp = (struct rules_pending){ .qid = q->qid };
    if ((rp->own = refresh_begin(app, q, cap, &rp->own_table)) < 0) {
        rp->qid = 0;
        bh_fail(err, EIO, "cannot apply the network rules of %s", q->name);
        goto fail;
    }
    if (plugged[q->qid % MAX_QID] && n) /* its failure is said, not fatal: as before */
        rp->netvm = refresh_begin(app, n, NULL, &rp->netvm_table);
    snprintf(rp->netvm_name, sizeof rp->netvm_name, "%s", n ? n->name : "its netvm");
    return 0;
fail:
    bh_net_glue_stopped(app, q);
    return -1;
}

int bh_net_glue_rules_wait(struct bh_qube *q, bh_error *err)
{
    struct rules_pending *rp = rules_find(q->qid);
    if (!rp)
        return 0;
    struct rules_pending p = *rp;
    *rp = (struct rules_pending){ 0 };
    int own = refresh_end(q->name, p.own, p.own_table);
    (void)refresh_end(p.netvm_name, p.netvm, p.netvm_table);
    return own < 0 ? bh_fail(err, EIO, "cannot apply the network rules of %s", q->name) : 0;
}

void bh_net_glue_started(struct bh_app *app, struct bh_qube *q)
{
    if (!bh_qube_prop_bool(app, q, "provides_network"))
        return;
    /* Clients that kept running while this netvm was down get their link back. */
    bool any = false;
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *c = app->qubes[i];
        if (c == q || !running(c) || plugged[c->qid % MAX_QID] || netvm_of(app, c) != q)
            continue;
        bh_error err = { 0 };
        if (plug(app, c, q, &err) < 0) {
            bh_warn("%s: plugging into %s: %s", c->name, q->name, err.msg);
            continue;
        }
        (void)refresh(app, c);
        any = true;
    }
    if (any)
        (void)refresh(app, q);
}

void bh_net_glue_stopped(struct bh_app *app, struct bh_qube *q)
{
    if (q->klass == BH_ADMINVM)
        return;
    struct rules_pending *rp = rules_find(q->qid);
    if (rp) /* a start that failed before its engine waited for them */
        rules_drop(rp);
    uint32_t nq = plugged[q->qid % MAX_QID];
    unplug(app, q);
    uplink_down(app, q);
    /* Its clients lose their link with its namespace. */
    for (size_t i = 0; i < app->nqubes; i++)
        if (plugged[app->qubes[i]->qid % MAX_QID] == q->qid)
            plugged[app->qubes[i]->qid % MAX_QID] = 0;
    char ns[4200];
    bh_net_glue_netns_path(app, q, ns, sizeof ns);
    bh_netns_remove(ns);
    struct bh_qube *n = nq ? bh_app_find_qid(app, nq) : NULL;
    if (n)
        (void)refresh(app, n);
}

void bh_net_glue_adopted(struct bh_app *app)
{
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *q = app->qubes[i];
        if (q->klass == BH_ADMINVM)
            continue;
        char ns[4200];
        bh_net_glue_netns_path(app, q, ns, sizeof ns);
        if (!running(q)) {
            bh_netns_remove(ns); /* a pin left by a qube that ended while we were away */
            continue;
        }
        struct bh_qube *n = netvm_of(app, q);
        plugged[q->qid % MAX_QID] = n && running(n) ? n->qid : 0;
        bh_error err = { 0 };
        if (wants_uplink(app, q) && bh_netns_exists(ns) && uplink_up(app, q, &err) < 0)
            bh_warn("%s", err.msg);
    }
    refresh_all(app);
}

/* ---- changes while running ---- */

/* A guest with a kernel of its own (vm engine) sets its card itself: its engine tells
 * it the new link (as Qubes' guest learns it from the re-attached vif and qubesdb). */
static void tell_engine(struct bh_app *app, struct bh_qube *q)
{
    const struct bh_driver *drv = bh_glue_driver(app, q);
    if (!drv || !drv->net_changed)
        return;
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    bh_error err = { 0 };
    if (drv->net_changed(&sb.spec, &err) < 0)
        bh_warn("%s: telling the guest its new link: %s", q->name, err.msg);
    bh_glue_spec_free(&sb);
}

/* Is x in q's chain of netvms (q itself included)? */
static bool chain_has(struct bh_app *app, struct bh_qube *q, const struct bh_qube *x)
{
    for (int i = 0; q && i < 64; i++, q = netvm_of(app, q))
        if (q == x)
            return true;
    return false;
}

static void on_property(struct bh_app *app, struct bh_qube *q, const char *name);

/* Qubes' `ipv6` feature of q changed (set, emptied, deleted): whether q and every qube
 * behind it (check_with_netvm) have routed IPv6 may have changed. Each running client
 * link in that part of the tree is plugged again, as for a netvm change (both ends get
 * or lose IPv6), and a VM is told its new link (net_changed). A netvm's own uplink is
 * not redone: the feature on the qube that holds the uplink takes effect at its next
 * start. */
static void on_feature(struct bh_app *app, struct bh_qube *q, const char *key)
{
    if (strcmp(key, "ipv6"))
        return;
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *c = app->qubes[i];
        if (c->klass != BH_ADMINVM && running(c) && plugged[c->qid % MAX_QID] && chain_has(app, c, q))
            on_property(app, c, "netvm");
    }
}

static void on_property(struct bh_app *app, struct bh_qube *q, const char *name)
{
    if (!running(q))
        return;
    if (!strcmp(name, "netvm") || !strcmp(name, "ip") || !strcmp(name, "mac")) {
        /* Re-plug at once; the qube keeps its address. */
        struct bh_qube *old = plugged[q->qid % MAX_QID] ? bh_app_find_qid(app, plugged[q->qid % MAX_QID]) : NULL;
        unplug(app, q);
        if (old)
            (void)refresh(app, old);
        struct bh_qube *n = netvm_of(app, q);
        _cleanup_free_ char *ip = bh_qube_prop(app, q, "visible_ip");
        if (n && running(n) && ip && *ip) {
            bh_error err = { 0 };
            if (plug(app, q, n, &err) < 0)
                bh_warn("%s: plugging into %s: %s", q->name, n->name, err.msg);
            (void)refresh(app, n);
        }
        (void)refresh(app, q);
        tell_engine(app, q);
    } else if (!strcmp(name, "provides_network")) {
        refresh_all(app);
    }
}

static void on_firewall(struct bh_app *app, struct bh_qube *q)
{
    uint32_t nq = plugged[q->qid % MAX_QID];
    struct bh_qube *n = nq ? bh_app_find_qid(app, nq) : NULL;
    if (n)
        (void)refresh(app, n);
}

static int check_firewall(struct bh_app *app, struct bh_qube *q, const char *rules, void *conn, bh_error *err)
{
    return bh_net_resolve_check(app, q, rules, conn, err);
}

static void on_tick(void *ctx)
{
    struct bh_app *app = ctx;
    if (next_expire && time(NULL) >= next_expire)
        refresh_all(app);
    bh_net_resolve_tick();
}

int bh_net_glue_init(struct bh_app *app, const char *uplink, bh_error *err)
{
    g_app = app;
    tag = fnv1a(app->runtime_dir, 2166136261u);
    const char *ttl = getenv("BULKHEAD_NET_RESOLVE_SECONDS");
    if (ttl && atoi(ttl) > 0 && atoi(ttl) <= 86400)
        resolve_ttl = atoi(ttl);
    if (!uplink || !strcmp(uplink, "none")) {
        uplink_kind = UPLINK_NONE;
    } else if (!strcmp(uplink, "host")) {
        uplink_kind = UPLINK_HOST;
        peer_ns = bh_netns_open_named(NULL, err);
        if (peer_ns < 0)
            return -1;
        n_updns = bh_dns_read_resolv("/etc/resolv.conf", updns, 2);
        snprintf(updns_file, sizeof updns_file, "/etc/resolv.conf");
    } else if (!strncmp(uplink, "netns:", 6)) {
        uplink_kind = UPLINK_NETNS;
        snprintf(uplink_name, sizeof uplink_name, "%s", uplink + 6);
        peer_ns = bh_netns_open_named(uplink_name, err);
        if (peer_ns < 0)
            return -1;
        /* as `ip netns exec`: the namespace's own resolv.conf if it has one */
        char p[300];
        snprintf(p, sizeof p, "/etc/netns/%s/resolv.conf", uplink_name);
        snprintf(updns_file, sizeof updns_file, "%s", access(p, F_OK) == 0 ? p : "/etc/resolv.conf");
        n_updns = bh_dns_read_resolv(updns_file, updns, 2);
    } else {
        return bh_fail(err, EINVAL, "--uplink must be none, host or netns:NAME");
    }
    const char *cm = getenv("BULKHEAD_NET_CONN_MAX");
    if (cm && atol(cm) > 0 && atol(cm) <= 1000000)
        conn_max = (unsigned)atol(cm);
    if (uplink_kind != UPLINK_NONE) {
        /* one host-wide number (only the initial namespace may set it) */
        size_t vl = 0;
        _cleanup_free_ char *v = bh_read_file("/proc/sys/net/netfilter/nf_conntrack_max", 64, &vl);
        long hostmax = v ? atol(v) : 0;
        uplink_conn_max = hostmax > 0 && hostmax / 4 < 65536 ? (unsigned)(hostmax / 4) : 65536u;
        const char *um = getenv("BULKHEAD_NET_UPLINK_CONN_MAX");
        if (um && atol(um) > 0 && atol(um) <= 10000000)
            uplink_conn_max = (unsigned)atol(um);
    }
    if (uplink_kind != UPLINK_NONE && n_updns == 0)
        bh_warn("uplink: no IPv4 nameserver found: qubes will have no DNS");
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/net", app->runtime_dir);
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", dir);
    if (bh_net_resolve_init(app, uplink_kind == UPLINK_NONE ? -1 : peer_ns, updns_file, updns, n_updns, resolve_ttl, refresh_all,
                            err) < 0)
        return -1;
    bh_hooks.property_changed = on_property;
    bh_hooks.feature_changed = on_feature;
    bh_hooks.conn_dropped = bh_net_resolve_drop_conn;
    bh_hooks.firewall_changed = on_firewall;
    bh_hooks.firewall_check = check_firewall;
    bh_loop_on_tick(on_tick, app);
    return 0;
}

void bh_net_glue_fini(struct bh_app *app)
{
    bh_net_resolve_fini();
    for (size_t i = 0; i < app->nqubes; i++)
        uplink_down(app, app->qubes[i]);
    const char *was[2][2] = { { "ip_forward.was-off", "ipv4/ip_forward" },
                              { "ip6_forward.was-off", "ipv6/conf/all/forwarding" } };
    for (int i = 0; i < 2; i++) {
        char rec[4200];
        snprintf(rec, sizeof rec, "%s/net/%s", app->runtime_dir, was[i][0]);
        if (peer_ns >= 0 && access(rec, F_OK) == 0) {
            (void)bh_netns_sysctl(peer_ns, was[i][1], "0", NULL, 0, NULL);
            unlink(rec);
        }
    }
    if (peer_ns >= 0)
        close(peer_ns);
    peer_ns = -1;
    /* made by init; a qube left running keeps its namespace pin here for the next
     * bulkheadd, and then the directory stays */
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/net", app->runtime_dir);
    (void)rmdir(dir);
}
