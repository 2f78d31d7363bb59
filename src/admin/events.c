#include "events.h"
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct sub {
    char filter[64];
    bh_event_fn fn;
    void *ctx;
};
static struct sub *subs;
static size_t nsubs, capsubs;

int bh_events_subscribe(const char *filter, bh_event_fn fn, void *ctx)
{
    if (nsubs == capsubs) {
        size_t nc = capsubs ? capsubs * 2 : 16;
        struct sub *n = realloc(subs, nc * sizeof *n);
        if (!n)
            return -1;
        subs = n;
        capsubs = nc;
    }
    struct sub *s = &subs[nsubs++];
    memset(s, 0, sizeof *s);
    strncpy(s->filter, filter ? filter : "", sizeof s->filter - 1);
    s->fn = fn;
    s->ctx = ctx;
    return 0;
}

void bh_events_unsubscribe(void *ctx)
{
    for (size_t i = 0; i < nsubs; i++) {
        if (subs[i].ctx == ctx) {
            subs[i] = subs[--nsubs];
            i--;
        }
    }
}

void bh_events_emit(const char *subject, const char *event, const char *const *kv)
{
    if (!subject)
        subject = "";
    /* A callback may unsubscribe (drop a slow client): iterate over a snapshot. */
    size_t n = nsubs;
    struct sub *copy = n ? malloc(n * sizeof *copy) : NULL;
    if (n && !copy)
        return;
    if (n)
        memcpy(copy, subs, n * sizeof *copy);
    /* vm-stats go only to admin.vm.Stats streams (filter "stats:" or "stats:NAME"),
     * and those get nothing else, as in qubesd. */
    bool is_stats = !strcmp(event, "vm-stats");
    for (size_t i = 0; i < n; i++) {
        const char *f = copy[i].filter;
        if (!strncmp(f, "stats:", 6)) {
            if (!is_stats || (f[6] && strcmp(f + 6, subject) != 0))
                continue;
        } else if (is_stats || (f[0] && strcmp(f, "dom0") != 0 && strcmp(f, subject) != 0))
            continue;
        bool still = false;
        for (size_t j = 0; j < nsubs; j++)
            still |= subs[j].ctx == copy[i].ctx;
        if (still)
            copy[i].fn(copy[i].ctx, subject, event, kv);
    }
    free(copy);
}

bool bh_events_have_stats(void)
{
    for (size_t i = 0; i < nsubs; i++)
        if (!strncmp(subs[i].filter, "stats:", 6))
            return true;
    return false;
}
