/* bulkhead-guid: the desktop's monitors (see guid.h and docs/gui.md).
 *
 * The daemon reads the host display's monitors (RandR 1.5 GetMonitors: the active
 * outputs, or the monitors the user defined with `xrandr --setmonitor`) and uses them
 * twice:
 *  - placement: a window the qube places or sizes lies on one monitor (the one it
 *    overlaps most, else the nearest), so it is never off every monitor, where its
 *    frame could not be seen; maximise and fullscreen fill the window's monitor;
 *  - the qube's own screen: the layout goes to the qube's qubes.SetMonitorLayout
 *    service, as Qubes' qvm-start-daemon sends it ("W H X Y [W_MM H_MM]" per monitor),
 *    and the service resizes the qube's X server to it and gives it the same monitors.
 * Changes are followed live: RandR's screen-change events, SIGHUP (Qubes' way of
 * telling a GUI daemon that the layout changed), and a look every 2 s, since X.Org
 * sends no event when only a user-defined monitor changes. */
#include "guid.h"
#include "log.h"
#include "selfpath.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <xcb/randr.h>

void guid_monitors_init(struct guid *g)
{
    g->root_w = g->screen->width_in_pixels;
    g->root_h = g->screen->height_in_pixels;
    g->layout_pid = -1;
    const xcb_query_extension_reply_t *q = xcb_get_extension_data(g->x, &xcb_randr_id);
    if (q && q->present) {
        xcb_randr_query_version_reply_t *v =
            xcb_randr_query_version_reply(g->x, xcb_randr_query_version(g->x, 1, 5), NULL);
        g->randr_event = q->first_event;
        g->have_randr15 = v && (v->major_version > 1 || v->minor_version >= 5);
        free(v);
        xcb_randr_select_input(g->x, g->screen->root, XCB_RANDR_NOTIFY_MASK_SCREEN_CHANGE);
    }
    guid_monitors_read(g);
}

static uint64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (uint64_t)t.tv_sec * 1000u + (uint64_t)t.tv_nsec / 1000000u;
}

bool guid_monitors_read(struct guid *g)
{
    g->monitors_read_ms = now_ms();
    xcb_get_geometry_reply_t *geo = xcb_get_geometry_reply(g->x, xcb_get_geometry(g->x, g->screen->root), NULL);
    if (geo) {
        g->root_w = geo->width;
        g->root_h = geo->height;
        free(geo);
    }
    struct bh_gui_monitor m[BH_GUI_MAX_MONITORS];
    unsigned n = 0;
    xcb_randr_get_monitors_reply_t *r =
        g->have_randr15 ? xcb_randr_get_monitors_reply(g->x, xcb_randr_get_monitors(g->x, g->screen->root, 1), NULL)
                        : NULL;
    if (r) {
        for (xcb_randr_monitor_info_iterator_t it = xcb_randr_get_monitors_monitors_iterator(r);
             it.rem && n < BH_GUI_MAX_MONITORS; xcb_randr_monitor_info_next(&it)) {
            /* clipped to the root window: a monitor defined past it shows nothing */
            int32_t x0 = it.data->x, y0 = it.data->y;
            int32_t x1 = x0 + it.data->width, y1 = y0 + it.data->height;
            if (x0 < 0) x0 = 0;
            if (y0 < 0) y0 = 0;
            if (x1 > (int32_t)g->root_w) x1 = (int32_t)g->root_w;
            if (y1 > (int32_t)g->root_h) y1 = (int32_t)g->root_h;
            if (x1 - x0 <= 2 * BH_GUID_BORDER || y1 - y0 <= 2 * BH_GUID_BORDER)
                continue;
            m[n++] = (struct bh_gui_monitor){ x0, y0, (uint32_t)(x1 - x0), (uint32_t)(y1 - y0),
                                              it.data->width_in_millimeters, it.data->height_in_millimeters };
        }
        free(r);
    }
    if (n == 0) /* no RandR 1.5, or no monitor on the screen: the screen is one */
        m[n++] = (struct bh_gui_monitor){ 0, 0, g->root_w, g->root_h, 0, 0 };
    if (n == g->nmons && !memcmp(m, g->mons, sizeof *m * n))
        return false;
    memcpy(g->mons, m, sizeof *m * n);
    g->nmons = n;
    char text[BH_GUI_LAYOUT_TEXT_MAX];
    bh_gui_format_monitor_layout(m, n, text);
    for (char *p = text; (p = strchr(p, '\n'));)
        *p = p[1] ? ';' : '\0';
    bh_info("%s: desktop %ux%u, %u monitor%s: %s", g->qube, g->root_w, g->root_h, n, n == 1 ? "" : "s", text);
    return true;
}

static int64_t overlap(const struct bh_gui_rect *r, const struct bh_gui_monitor *m)
{
    int64_t x0 = r->x > m->x ? r->x : m->x, y0 = r->y > m->y ? r->y : m->y;
    int64_t x1 = (int64_t)r->x + r->w, y1 = (int64_t)r->y + r->h;
    if (x1 > (int64_t)m->x + m->w) x1 = (int64_t)m->x + m->w;
    if (y1 > (int64_t)m->y + m->h) y1 = (int64_t)m->y + m->h;
    return x1 > x0 && y1 > y0 ? (x1 - x0) * (y1 - y0) : 0;
}

const struct bh_gui_monitor *guid_monitor_of(struct guid *g, const struct bh_gui_rect *r)
{
    const struct bh_gui_monitor *best = &g->mons[0];
    int64_t most = -1;
    for (unsigned i = 0; i < g->nmons; i++) {
        int64_t o = overlap(r, &g->mons[i]);
        if (o > most)
            most = o, best = &g->mons[i];
    }
    if (most > 0)
        return best;
    /* on no monitor: the one whose centre is nearest the window's */
    int64_t cx = (int64_t)r->x + r->w / 2, cy = (int64_t)r->y + r->h / 2, nearest = INT64_MAX;
    for (unsigned i = 0; i < g->nmons; i++) {
        int64_t dx = cx - (g->mons[i].x + (int64_t)g->mons[i].w / 2);
        int64_t dy = cy - (g->mons[i].y + (int64_t)g->mons[i].h / 2);
        if (dx * dx + dy * dy < nearest)
            nearest = dx * dx + dy * dy, best = &g->mons[i];
    }
    return best;
}

/* qubes.SetMonitorLayout in the qube, through qrexec as Qubes does; the layout is the
 * service's stdin. The call runs in a child; the daemon does not wait for it. */
static void send_layout(struct guid *g)
{
    char text[BH_GUI_LAYOUT_TEXT_MAX];
    bh_gui_format_monitor_layout(g->mons, g->nmons, text);
    if (!strcmp(text, g->layout_sent))
        return;
    if (g->layout_pid > 0) { /* the previous call still runs: this one follows it */
        g->layout_again = true;
        return;
    }
    static const char *const rels[] = { "../qrexec", "../../bin", ".", NULL };
    char prog[PATH_MAX];
    if (bh_find_near_self(rels, "qvm-run", X_OK, prog, sizeof prog) < 0) {
        bh_warn("%s: qvm-run not found: the qube keeps its monitor layout", g->qube);
        return;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(p[0], 0);
        int null = open("/dev/null", O_WRONLY);
        if (null >= 0)
            dup2(null, 1);
        execl(prog, "qvm-run", "--no-autostart", "-q", "--service", "-p", g->qube, "qubes.SetMonitorLayout",
              (char *)NULL);
        _exit(127);
    }
    close(p[0]);
    if (pid < 0) {
        close(p[1]);
        return;
    }
    /* a few hundred bytes: the pipe takes them at once */
    size_t len = strlen(text);
    if (write(p[1], text, len) != (ssize_t)len)
        bh_warn("%s: monitor layout not written: %s", g->qube, strerror(errno));
    close(p[1]);
    snprintf(g->layout_sent, sizeof g->layout_sent, "%s", text);
    g->layout_pid = pid;
    g->layout_again = false;
}

void guid_monitors_resend(struct guid *g)
{
    g->layout_sent[0] = '\0';
    g->layout_again = true;
}

void guid_monitors_tick(struct guid *g, bool forced)
{
    if (g->layout_pid > 0) {
        int st;
        pid_t r = waitpid(g->layout_pid, &st, WNOHANG);
        if (r == g->layout_pid) {
            g->layout_pid = -1;
            if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0)) {
                bh_warn("%s: qubes.SetMonitorLayout failed (status %d)", g->qube, st);
                g->layout_sent[0] = '\0'; /* tried again on the next change */
            }
        }
    }
    bool changed = false;
    if (forced || now_ms() - g->monitors_read_ms >= 2000)
        changed = guid_monitors_read(g);
    if (changed)
        guid_windows_replace(g);
    if (g->send_monitor_layout && (changed || g->layout_again || !g->layout_started)) {
        g->layout_started = true;
        send_layout(g);
    }
}
