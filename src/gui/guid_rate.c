/* bulkhead-guid: per-window limits on title and icon changes (see guid.h).
 *
 * Every title or icon a qube sends becomes property changes on the host display, which
 * the X server, the window manager and the taskbar all act on. A qube that changes
 * them thousands of times a second (by accident or to make the desktop slow) would
 * keep all of them busy, although each message is cheap for the daemon. So each
 * window may change its title BH_GUID_TITLES_PER_SEC times and its icon
 * BH_GUID_ICONS_PER_SEC times per second; past that only the newest value is kept and
 * it is shown when the next second begins. A window thus always ends up showing what
 * the qube sent last, and the host sees a bounded number of changes. */
#include "guid.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

/* Starts a new counting second when the clock has moved on. */
static void roll(struct guid *g)
{
    uint64_t s = now_ms() / 1000u;
    if (s == g->rate_second)
        return;
    g->rate_second = s;
    for (unsigned i = 0; i < g->nwins; i++)
        g->wins[i].titles_now = g->wins[i].icons_now = 0;
}

static void coalesced(struct guid *g)
{
    if (g->rate_dropped++ == 0)
        bh_info("%s: a window changes its title or icon more than %d/%d times a second: "
                "the excess is coalesced", g->qube, BH_GUID_TITLES_PER_SEC, BH_GUID_ICONS_PER_SEC);
}

void guid_rate_title(struct guid *g, struct guid_win *w, const char *title)
{
    roll(g);
    if (w->titles_now < BH_GUID_TITLES_PER_SEC && !w->title_pending) {
        w->titles_now++;
        guid_win_title(g, w, title);
        return;
    }
    if (w->title_pending)
        coalesced(g);
    snprintf(w->pending_title, sizeof w->pending_title, "%s", title);
    w->title_pending = true;
}

void guid_rate_icon(struct guid *g, struct guid_win *w, uint32_t iw, uint32_t ih, const uint8_t *pixels)
{
    roll(g);
    if (w->icons_now < BH_GUID_ICONS_PER_SEC && !w->pending_icon) {
        w->icons_now++;
        guid_win_icon(g, w, iw, ih, pixels);
        return;
    }
    /* the raw pixels wait (the tint is done once, when shown); at most one icon per
     * window, 16 KiB, so BH_GUI_MAX_WINDOWS bounds the memory */
    if (w->pending_icon)
        coalesced(g);
    uint32_t *p = realloc(w->pending_icon, (2 + (size_t)iw * ih) * 4);
    if (!p)
        return;
    p[0] = iw;
    p[1] = ih;
    memcpy(p + 2, pixels, (size_t)iw * ih * 4);
    w->pending_icon = p;
}

int guid_rate_tick(struct guid *g)
{
    roll(g);
    bool waiting = false;
    for (unsigned i = 0; i < g->nwins; i++) {
        struct guid_win *w = &g->wins[i];
        if (w->title_pending && w->titles_now < BH_GUID_TITLES_PER_SEC) {
            w->titles_now++;
            w->title_pending = false;
            guid_win_title(g, w, w->pending_title);
        }
        if (w->pending_icon && w->icons_now < BH_GUID_ICONS_PER_SEC) {
            w->icons_now++;
            guid_win_icon(g, w, w->pending_icon[0], w->pending_icon[1], (const uint8_t *)(w->pending_icon + 2));
            free(w->pending_icon);
            w->pending_icon = NULL;
        }
        waiting |= w->title_pending || w->pending_icon;
    }
    if (!waiting)
        return -1;
    return (int)(1000u - now_ms() % 1000u);
}

void guid_rate_forget(struct guid_win *w)
{
    free(w->pending_icon);
    w->pending_icon = NULL;
    w->title_pending = false;
}
