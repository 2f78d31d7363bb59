#include "net_resolve.h"
#include "cleanup.h"
#include "log.h"
#include "loop.h"
#include "response.h"
#include "server.h"
#include "net/fwrule.h"
#include "net/resolver.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/wait.h>

#define CACHE_MAX 256      /* names: each rule set has at most 1024 rules; names repeat */
#define INFLIGHT_MAX 32    /* requests queued in the helper */
#define PARKED_MAX 64      /* admin.vm.firewall.Set calls waiting for answers */
#define PARKED_NAMES 64    /* names one parked call may wait for (more: refused) */
#define PARKED_TIMEOUT_S 30
#define RESTART_MIN_S 1    /* a helper that keeps dying is not forked in a loop */

struct ent {
    char host[BH_RESOLVER_HOST_MAX + 1];
    bool have;      /* an answer exists (n, a, at) */
    bool wanted;    /* to be asked (not yet sent: helper busy) */
    bool inflight;  /* sent to the helper */
    uint32_t id;    /* of the request in flight */
    time_t at, used;
    int n, n6; /* A and AAAA records: -1 none */
    struct in_addr a[BH_RESOLVER_MAX_ADDRS];
    struct in6_addr a6[BH_RESOLVER_MAX_ADDRS];
};

struct parked {
    void *conn;
    uint32_t qid;
    char *rules;
    time_t since;
};

static struct bh_app *g_app;
static struct bh_resolver helper = { 0, -1 };
static int g_peer = -1, g_n, g_ttl = 60;
static struct in_addr g_servers[2];
static char g_resolv_conf[300]; /* the uplink's, the only file the helper sees */
static void (*g_changed)(struct bh_app *);
static struct ent cache[CACHE_MAX];
static struct parked parked[PARKED_MAX];
static uint32_t next_id = 1;
static unsigned inflight;
static time_t last_start;

static void on_helper(void *ctx, uint32_t events);

static struct ent *find(const char *host)
{
    for (size_t i = 0; i < CACHE_MAX; i++)
        if (cache[i].host[0] && !strcmp(cache[i].host, host))
            return &cache[i];
    return NULL;
}

static struct ent *find_or_add(const char *host, time_t now)
{
    struct ent *e = find(host);
    if (e)
        return e;
    /* a free slot, else the least recently used one that waits for nothing */
    struct ent *victim = NULL;
    for (size_t i = 0; i < CACHE_MAX; i++) {
        struct ent *c = &cache[i];
        if (!c->host[0]) {
            victim = c;
            break;
        }
        if (!c->inflight && !c->wanted && (!victim || c->used < victim->used))
            victim = c;
    }
    if (!victim || strlen(host) > BH_RESOLVER_HOST_MAX)
        return NULL;
    memset(victim, 0, sizeof *victim);
    strcpy(victim->host, host);
    victim->used = now;
    return victim;
}

static int helper_start(void)
{
    bh_error err = { 0 };
    last_start = time(NULL);
    if (bh_resolver_start(&helper, g_peer, g_resolv_conf[0] ? g_resolv_conf : NULL, g_servers, g_n, &err) < 0) {
        bh_warn("dsthost resolver: %s", err.msg);
        return -1;
    }
    if (bh_loop_add(helper.fd, EPOLLIN, on_helper, NULL) < 0) {
        bh_resolver_stop(&helper);
        return -1;
    }
    return 0;
}

static void pump(void)
{
    if (g_peer < 0)
        return;
    if (helper.fd < 0 && time(NULL) - last_start >= RESTART_MIN_S)
        (void)helper_start();
    if (helper.fd < 0)
        return;
    for (size_t i = 0; i < CACHE_MAX && inflight < INFLIGHT_MAX; i++) {
        struct ent *e = &cache[i];
        if (!e->wanted || e->inflight)
            continue;
        uint32_t id = next_id++;
        if (bh_resolver_send(&helper, id, e->host) < 0)
            return; /* full: the next answer makes room */
        e->wanted = false;
        e->inflight = true;
        e->id = id;
        inflight++;
    }
}

static void ask(struct ent *e)
{
    if (!e->inflight)
        e->wanted = true;
}

/* Every dsthost of rules (not expired): calls fn for each until it returns nonzero. */
static int each_host(const char *rules, int (*fn)(const char *host, void *ctx), void *ctx)
{
    size_t len = strlen(rules), pos = 0;
    while (pos < len) {
        const char *nl = memchr(rules + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (rules + pos)) : len - pos;
        struct bh_fw_rule r;
        if (l && bh_fw_rule_parse(rules + pos, l, &r, NULL) == 0 && r.dst_kind == BH_FW_DST_HOST &&
            !(r.expire && (time_t)r.expire <= time(NULL))) {
            int x = fn(r.host, ctx);
            if (x)
                return x;
        }
        pos += l + 1;
    }
    return 0;
}

struct verdict {
    time_t now;
    int waiting;
    const char *unresolved;
    char name[BH_RESOLVER_HOST_MAX + 1];
};

static bool fresh(const struct ent *e, time_t now) { return e->have && now - e->at < g_ttl; }

static int judge(const char *host, void *ctx)
{
    struct verdict *v = ctx;
    struct ent *e = find_or_add(host, v->now);
    if (!e) {
        snprintf(v->name, sizeof v->name, "%s", host);
        v->unresolved = "too many names to resolve at once";
        return 1;
    }
    e->used = v->now;
    if (fresh(e, v->now) && !e->inflight) {
        if (e->n < 0 && e->n6 < 0) {
            snprintf(v->name, sizeof v->name, "%s", host);
            v->unresolved = "does not resolve";
            return 1;
        }
        return 0;
    }
    ask(e);
    if (++v->waiting > PARKED_NAMES) {
        snprintf(v->name, sizeof v->name, "%s", host);
        v->unresolved = "too many names to resolve at once";
        return 1;
    }
    return 0;
}

int bh_net_resolve_check(struct bh_app *app, struct bh_qube *q, const char *rules, void *conn, bh_error *err)
{
    (void)app;
    if (g_peer < 0)
        return 0; /* nothing to resolve with: the rules block at apply time instead */
    struct verdict v = { .now = time(NULL) };
    if (each_host(rules, judge, &v))
        return bh_fail(err, ENOENT, "dsthost %s %s", v.name, v.unresolved);
    if (!v.waiting)
        return 0;
    if (!conn)
        return bh_fail(err, EAGAIN, "dsthost resolution pending");
    for (size_t i = 0; i < PARKED_MAX; i++) {
        if (parked[i].conn)
            continue;
        parked[i].rules = strdup(rules);
        if (!parked[i].rules)
            return bh_fail(err, ENOMEM, "parking the call");
        parked[i].conn = conn;
        parked[i].qid = q->qid;
        parked[i].since = v.now;
        pump();
        return 1;
    }
    return bh_fail(err, EBUSY, "too many firewall changes waiting for name resolution");
}

static void finish(struct parked *p, const struct bh_exc *e)
{
    void *conn = p->conn;
    free(p->rules);
    memset(p, 0, sizeof *p);
    bh_server_finish(conn, e);
}

/* A parked call whose names are all answered now: store its rules or refuse them. */
static void settle(void)
{
    time_t now = time(NULL);
    for (size_t i = 0; i < PARKED_MAX; i++) {
        struct parked *p = &parked[i];
        if (!p->conn)
            continue;
        struct verdict v = { .now = now };
        struct bh_exc e = { 0 };
        if (each_host(p->rules, judge, &v)) {
            bh_exc(&e, "QubesValueError", "Invalid firewall rule: dsthost %s %s", v.name, v.unresolved);
            finish(p, &e);
            continue;
        }
        if (v.waiting) {
            if (now - p->since >= PARKED_TIMEOUT_S) {
                bh_exc(&e, "QubesValueError", "Invalid firewall rule: name resolution timed out");
                finish(p, &e);
            }
            continue;
        }
        struct bh_qube *q = bh_app_find_qid(g_app, p->qid);
        if (!q) {
            bh_exc(&e, "QubesVMNotFoundError", "No such domain");
            finish(p, &e);
        } else if (bh_qube_firewall_set(g_app, q, p->rules, &e) < 0) {
            finish(p, &e);
        } else {
            finish(p, NULL);
        }
    }
    pump();
}

static void helper_lost(void)
{
    bh_loop_del(helper.fd);
    bh_resolver_stop(&helper);
    /* what was in flight is asked again from the next helper */
    for (size_t i = 0; i < CACHE_MAX; i++)
        if (cache[i].inflight) {
            cache[i].inflight = false;
            cache[i].wanted = true;
        }
    inflight = 0;
    bh_warn("dsthost resolver ended; a new one starts");
}

static void on_helper(void *ctx, uint32_t events)
{
    (void)ctx;
    (void)events;
    bool changed = false;
    time_t now = time(NULL);
    for (;;) {
        struct bh_resolver_ans a;
        int r = bh_resolver_recv(&helper, &a);
        if (r == 0)
            break;
        if (r < 0) {
            helper_lost();
            break;
        }
        struct ent *e = NULL;
        for (size_t i = 0; i < CACHE_MAX && !e; i++)
            if (cache[i].inflight && cache[i].id == a.id)
                e = &cache[i];
        if (!e)
            continue; /* an answer nobody asked for: ignored */
        e->inflight = false;
        inflight--;
        int n = a.n, n6 = a.n6;
        bool same = e->have && e->n == n && e->n6 == n6 && (n <= 0 || !memcmp(e->a, a.a, (size_t)n * sizeof a.a[0])) &&
                    (n6 <= 0 || !memcmp(e->a6, a.a6, (size_t)n6 * sizeof a.a6[0]));
        e->have = true;
        e->at = now;
        e->n = n;
        e->n6 = n6;
        if (n > 0)
            memcpy(e->a, a.a, (size_t)n * sizeof a.a[0]);
        if (n6 > 0)
            memcpy(e->a6, a.a6, (size_t)n6 * sizeof a.a6[0]);
        changed |= !same;
    }
    settle();
    if (changed && g_changed)
        g_changed(g_app);
}

int bh_net_resolve_cached(void *ctx, const char *host, struct bh_fw_addrs *out)
{
    (void)ctx;
    if (g_peer < 0)
        return -1;
    time_t now = time(NULL);
    struct ent *e = find_or_add(host, now);
    if (!e)
        return -1;
    e->used = now;
    if (!fresh(e, now))
        ask(e);
    pump();
    if (!e->have || (e->n < 0 && e->n6 < 0))
        return -1;
    out->n4 = e->n < BH_NET_FW_MAX_ADDRS ? e->n : BH_NET_FW_MAX_ADDRS;
    out->n6 = e->n6 < BH_NET_FW_MAX_ADDRS ? e->n6 : BH_NET_FW_MAX_ADDRS;
    if (out->n4 > 0)
        memcpy(out->a4, e->a, (size_t)out->n4 * sizeof out->a4[0]);
    if (out->n6 > 0)
        memcpy(out->a6, e->a6, (size_t)out->n6 * sizeof out->a6[0]);
    return 0;
}

void bh_net_resolve_tick(void)
{
    if (g_peer < 0)
        return;
    time_t now = time(NULL);
    for (size_t i = 0; i < CACHE_MAX; i++) {
        struct ent *e = &cache[i];
        /* names that tables used lately are kept fresh; others just age */
        if (e->host[0] && e->have && !fresh(e, now) && now - e->used <= 2 * (time_t)g_ttl + 60)
            ask(e);
    }
    pump();
    settle();
}

void bh_net_resolve_drop_conn(void *conn)
{
    for (size_t i = 0; i < PARKED_MAX; i++)
        if (parked[i].conn == conn) {
            free(parked[i].rules);
            memset(&parked[i], 0, sizeof parked[i]);
        }
}

int bh_net_resolve_init(struct bh_app *app, int peer_ns, const char *resolv_conf, const struct in_addr *servers, int n,
                        int ttl_s, void (*changed)(struct bh_app *app), bh_error *err)
{
    snprintf(g_resolv_conf, sizeof g_resolv_conf, "%s", resolv_conf ? resolv_conf : "");
    (void)err;
    g_app = app;
    g_peer = peer_ns;
    g_n = n > 2 ? 2 : n;
    memcpy(g_servers, servers, (size_t)(g_n > 0 ? g_n : 0) * sizeof *servers);
    g_ttl = ttl_s;
    g_changed = changed;
    if (g_peer >= 0)
        (void)helper_start(); /* if it fails, the next request tries again */
    return 0;
}

void bh_net_resolve_fini(void)
{
    if (helper.fd >= 0) {
        bh_loop_del(helper.fd);
        bh_resolver_stop(&helper);
    }
    for (size_t i = 0; i < PARKED_MAX; i++)
        if (parked[i].conn) {
            struct bh_exc e = { 0 };
            bh_exc(&e, "QubesException", "bulkheadd is stopping");
            finish(&parked[i], &e);
        }
    g_peer = -1;
}
