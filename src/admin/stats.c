/* admin.vm.Stats: every stats_interval seconds, while a Stats stream is open, one
 * vm-stats event per running qube with qubesd's fields (qubes/api/admin.py
 * _send_stats_single): memory_kb, memory_assigned_total, memory_assigned_usable,
 * memory_with_swap_used, cpu_time (ms), cpu_usage (% of the host's CPUs since the last
 * sample), online_vcpus. Memory and CPU time are what the engine reports (cgroup). */
#include "stats.h"
#include "cleanup.h"
#include "events.h"
#include "lifecycle.h"
#include "loop.h"
#include "props.h"
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static struct bh_app *st_app;
static int64_t next_ms;

static struct prev {
    uint32_t qid;
    uint64_t cputime_ns;
    int64_t at_ms;
} *prev;
static size_t nprev, capprev;

static struct prev *prev_of(uint32_t qid)
{
    for (size_t i = 0; i < nprev; i++)
        if (prev[i].qid == qid)
            return &prev[i];
    if (nprev == capprev) {
        size_t nc = capprev ? capprev * 2 : 32;
        struct prev *n = realloc(prev, nc * sizeof *n);
        if (!n)
            return NULL;
        prev = n;
        capprev = nc;
    }
    prev[nprev] = (struct prev){ .qid = qid };
    return &prev[nprev++];
}

static void sample(struct bh_qube *q, int64_t now, long ncpu)
{
    struct bh_qube_stats st;
    bh_lifecycle_stats(st_app, q, &st);
    struct prev *p = prev_of(q->qid);
    long long usage = 0;
    if (p && p->at_ms && now > p->at_ms && st.cputime_ns >= p->cputime_ns)
        usage = (long long)((st.cputime_ns - p->cputime_ns) / 10000 / (uint64_t)(now - p->at_ms) / (uint64_t)ncpu);
    if (p) {
        p->cputime_ns = st.cputime_ns;
        p->at_ms = now;
    }
    char mem[24], total[24], ctime[24], cusage[24], vcpus[24];
    snprintf(mem, sizeof mem, "%llu", (unsigned long long)(st.mem_bytes >> 10));
    snprintf(total, sizeof total, "%lld", bh_qube_prop_int(st_app, q, "maxmem") << 10);
    snprintf(ctime, sizeof ctime, "%llu", (unsigned long long)(st.cputime_ns / 1000000));
    snprintf(cusage, sizeof cusage, "%lld", usage > 100 ? 100 : usage);
    snprintf(vcpus, sizeof vcpus, "%lld", bh_qube_prop_int(st_app, q, "vcpus"));
    const char *kv[] = { "memory_kb", mem, "memory_assigned_total", total, "memory_assigned_usable", total,
                         "memory_with_swap_used", mem, "cpu_time", ctime, "cpu_usage", cusage,
                         "online_vcpus", vcpus, NULL };
    bh_events_emit(q->name, "vm-stats", kv);
}

static void tick(void *ctx)
{
    (void)ctx;
    int64_t now = bh_now_ms();
    if (now < next_ms || !bh_events_have_stats())
        return;
    long long interval = 3;
    _cleanup_free_ char *iv = bh_global_prop(st_app, "stats_interval");
    if (iv)
        interval = atoll(iv);
    next_ms = now + (interval > 0 ? interval : 3) * 1000;
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    if (ncpu < 1)
        ncpu = 1;
    for (size_t i = 0; i < st_app->nqubes; i++) {
        struct bh_qube *q = st_app->qubes[i];
        if (q->klass != BH_ADMINVM && bh_qube_is_running(q))
            sample(q, now, ncpu);
    }
}

void bh_stats_init(struct bh_app *app)
{
    st_app = app;
    bh_loop_on_tick(tick, NULL);
}

void bh_stats_now(void)
{
    next_ms = 0;
}
