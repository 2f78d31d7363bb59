#include "preload.h"
#include "cleanup.h"
#include "lifecycle.h"
#include "log.h"
#include "loop.h"
#include "props.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static struct bh_app *pl_app;

/* As Qubes, a pool is refilled when one of its disposables is used, when
 * preload-dispvm-max changes and at daemon start, not when a preloaded disposable is
 * shut down unused (as `qvm-shutdown --all` does): that would start new disposables,
 * and with them their netvms, while everything is going down. */
static struct paused_pool {
    uint32_t base_qid; /* 0: free */
    char max[16];      /* preload-dispvm-max when the refill stopped */
} paused[64];

static struct paused_pool *paused_find(uint32_t qid)
{
    for (size_t i = 0; i < sizeof paused / sizeof *paused; i++)
        if (paused[i].base_qid == qid)
            return &paused[i];
    return NULL;
}

static void resume_pool(struct bh_qube *base)
{
    struct paused_pool *p = paused_find(base->qid);
    if (p)
        p->base_qid = 0;
}

void bh_preload_halted(struct bh_app *app, struct bh_qube *q)
{
    const char *t = q->klass == BH_DISPVM && bh_kv_get(&q->features, "preload-dispvm") ? bh_kv_get(&q->props, "template") : NULL;
    struct bh_qube *base = t ? bh_app_find(app, t) : NULL;
    if (!base)
        return;
    struct paused_pool *p = paused_find(base->qid);
    if (!p && !(p = paused_find(0)))
        return;
    p->base_qid = base->qid;
    const char *max = bh_kv_get(&base->features, "preload-dispvm-max");
    snprintf(p->max, sizeof p->max, "%s", max ? max : "");
}

/* A disposable just handed out: its pool is refilled once it has ended, or after
 * HANDOUT_GRACE_MS if it is still in use. A refill is a qube start, most of whose
 * steps run in this process's loop: begun while the caller's disposable runs its
 * call and its Kill (tens of milliseconds), it would take the CPU from that life and
 * hold up the Kill's answer behind it. The pool's size is unchanged; only when the
 * next one is made moves. */
#define HANDOUT_GRACE_MS 2000
static struct handout {
    uint32_t base_qid, disp_qid; /* 0: free */
    int64_t at_ms;
} handouts[64];

static void handout_note(struct bh_qube *base, struct bh_qube *q)
{
    struct handout *h = NULL;
    for (size_t i = 0; i < sizeof handouts / sizeof *handouts && !h; i++)
        if (handouts[i].base_qid == 0 || handouts[i].base_qid == base->qid)
            h = &handouts[i];
    if (h)
        *h = (struct handout){ base->qid, q->qid, bh_now_ms() };
}

/* True while a disposable of this pool handed out less than the grace ago still runs. */
static bool handout_in_use(struct bh_app *app, struct bh_qube *base)
{
    for (size_t i = 0; i < sizeof handouts / sizeof *handouts; i++) {
        struct handout *h = &handouts[i];
        if (h->base_qid != base->qid)
            continue;
        struct bh_qube *q = bh_app_find_qid(app, h->disp_qid);
        if (q && bh_qube_is_running(q) && bh_now_ms() - h->at_ms < HANDOUT_GRACE_MS)
            return true;
        h->base_qid = 0;
    }
    return false;
}

/* Refill stays stopped until the pool is used or its size is set anew. */
static bool pool_paused(struct bh_qube *base)
{
    struct paused_pool *p = paused_find(base->qid);
    if (!p)
        return false;
    const char *max = bh_kv_get(&base->features, "preload-dispvm-max");
    if (strcmp(p->max, max ? max : "") != 0) {
        p->base_qid = 0;
        return false;
    }
    return true;
}

static bool is_preloaded_of(struct bh_app *app, struct bh_qube *q, struct bh_qube *base)
{
    if (q->klass != BH_DISPVM || !bh_kv_get(&q->features, "preload-dispvm"))
        return false;
    const char *t = bh_kv_get(&q->props, "template");
    (void)app;
    return t && !strcmp(t, base->name);
}

struct bh_qube *bh_preload_take(struct bh_app *app, struct bh_qube *base)
{
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *q = app->qubes[i];
        if (!is_preloaded_of(app, q, base) || q->rt.state != BH_STATE_RUNNING)
            continue;
        struct bh_exc e = { 0 };
        if (bh_qube_feature_del(app, q, "preload-dispvm", &e) < 0)
            continue;
        resume_pool(base);
        handout_note(base, q);
        return q;
    }
    return NULL;
}

static long preload_max(struct bh_qube *q)
{
    const char *v = bh_kv_get(&q->features, "preload-dispvm-max");
    if (!v)
        return 0;
    long n = strtol(v, NULL, 10);
    return n < 0 ? 0 : n > 16 ? 16 : n; /* bounded: each one is a running qube */
}

/* One new preloaded disposable per tick at most, so that filling a pool never stalls
 * the API for long. */
static void fill(void *ctx)
{
    (void)ctx;
    struct bh_app *app = pl_app;
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *base = app->qubes[i];
        long want = preload_max(base);
        if (!bh_qube_prop_bool(app, base, "template_for_dispvms"))
            want = 0;
        long have = 0;
        struct bh_qube *spare = NULL;
        for (size_t j = 0; j < app->nqubes; j++)
            if (is_preloaded_of(app, app->qubes[j], base) && bh_qube_is_running(app->qubes[j])) {
                /* (a halted one is being removed, or its removal waits for its
                 * engine's cleanup: not one of the pool) */
                have++;
                spare = app->qubes[j];
            }
        if (have > want && spare) {
            /* The user lowered (or removed) preload-dispvm-max, as Qubes: surplus
             * preloaded disposables go, one per tick. Killing removes it
             * (internal.auto-cleanup), so nothing of it may be touched after. */
            struct bh_exc e = { 0 };
            if (bh_lifecycle_kill(app, spare, &e) < 0)
                bh_warn("removing a surplus preloaded disposable of %s: %s", base->name, e.msg);
            return;
        }
        if (have >= want || pool_paused(base) || handout_in_use(app, base))
            continue;
        if (bh_lifecycle_netvm_stopping(app, base))
            continue; /* its start would be refused for now: filled once that netvm is down */
        char name[32];
        struct bh_exc e = { 0 };
        struct bh_qube *q = NULL;
        for (int tries = 0; tries < 100 && !q; tries++) {
            uint16_t r = 0;
            if (getrandom(&r, sizeof r, 0) != sizeof r)
                break;
            snprintf(name, sizeof name, "disp%u", 1u + r % 9999u);
            if (bh_app_find(app, name))
                continue;
            _cleanup_free_ char *label = bh_qube_prop(app, base, "label");
            struct bh_create_args a = { .klass = BH_DISPVM, .name = name, .label = label, .template_name = base->name,
                                        .features = { { "internal.auto-cleanup", "1" }, { "preload-dispvm", "1" } } };
            q = bh_qube_create(app, &a, &e);
            if (!q)
                break;
        }
        if (!q || bh_lifecycle_start(app, q, &e) < 0) {
            bh_warn("preloading a disposable of %s: %s", base->name, e.msg);
            if (q && !bh_qube_is_running(q))
                bh_qube_remove(app, q, &e);
            /* Don't retry in a tight loop: drop the feature's effect until it is set again. */
            bh_kv_del(&base->features, "preload-dispvm-max");
        }
        return;
    }
}

void bh_preload_init(struct bh_app *app)
{
    pl_app = app;
    /* Preloaded disposables that did not survive (halted by a crash) are gone for good. */
    for (size_t i = 0; i < app->nqubes;) {
        struct bh_qube *q = app->qubes[i];
        struct bh_exc e = { 0 };
        if (q->klass == BH_DISPVM && bh_kv_get(&q->features, "internal.auto-cleanup") && !bh_qube_is_running(q) &&
            bh_qube_remove(app, q, &e) == 0)
            continue;
        i++;
    }
    bh_loop_on_tick(fill, NULL);
}
