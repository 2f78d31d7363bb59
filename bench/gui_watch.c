/* gui_watch: watches one window of the host display with the DAMAGE extension.
 *   gui_watch count WINDOW SECONDS      full-window updates that reached the window, per s
 *   gui_watch latency WINDOW N          XTEST key press (host) -> first damage of WINDOW:
 *                                       median and 90th percentile in ms over N presses
 * WINDOW is an X window id (decimal or 0x hex). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <poll.h>
#include <xcb/damage.h>
#include <xcb/xcb.h>
#include <xcb/xtest.h>

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + t.tv_nsec / 1e9;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* waits for one damage event on the window until deadline; returns its area or -1 */
static long next_damage(xcb_connection_t *c, uint8_t base, double deadline)
{
    for (;;) {
        xcb_generic_event_t *ev;
        while ((ev = xcb_poll_for_event(c))) {
            if ((ev->response_type & 0x7f) == base + XCB_DAMAGE_NOTIFY) {
                xcb_damage_notify_event_t *d = (void *)ev;
                long area = (long)d->area.width * d->area.height;
                xcb_damage_subtract(c, d->damage, XCB_NONE, XCB_NONE);
                xcb_flush(c);
                free(ev);
                return area;
            }
            free(ev);
        }
        double left = deadline - now();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = xcb_get_file_descriptor(c), .events = POLLIN };
        poll(&p, 1, (int)(left * 1000) + 1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 4)
        return fprintf(stderr, "usage: gui_watch count|latency WINDOW SECONDS|N\n"), 2;
    xcb_window_t win = (xcb_window_t)strtoul(argv[2], NULL, 0);
    xcb_connection_t *c = xcb_connect(NULL, NULL);
    if (xcb_connection_has_error(c))
        return 1;
    const xcb_query_extension_reply_t *e = xcb_get_extension_data(c, &xcb_damage_id);
    free(xcb_damage_query_version_reply(c, xcb_damage_query_version(c, 1, 1), NULL));
    xcb_get_geometry_reply_t *g = xcb_get_geometry_reply(c, xcb_get_geometry(c, win), NULL);
    if (!e || !e->present || !g)
        return fprintf(stderr, "gui_watch: no DAMAGE or no window\n"), 1;
    long full = (long)g->width * g->height;
    xcb_damage_damage_t dmg = xcb_generate_id(c);
    xcb_damage_create(c, dmg, win, XCB_DAMAGE_REPORT_LEVEL_BOUNDING_BOX);
    xcb_flush(c);
    if (!strcmp(argv[1], "count")) {
        double t0 = now(), end = t0 + atof(argv[3]);
        long n = 0;
        long a;
        while ((a = next_damage(c, e->first_event, end)) >= 0)
            n += a >= full * 9 / 10;
        printf("updates_per_second %.1f\n", n / (now() - t0));
        return 0;
    }
    int n = atoi(argv[3]);
    double *lat = calloc((size_t)n, sizeof *lat);
    xcb_keycode_t kc[2] = { 38, 22 }; /* 'a' then BackSpace on the default keymap */
    int got = 0;
    for (int i = 0; i < n; i++) {
        while (next_damage(c, e->first_event, now() + 0.05) >= 0)
            ; /* quiet first */
        double t = now();
        xcb_test_fake_input(c, XCB_KEY_PRESS, kc[i & 1], XCB_CURRENT_TIME, XCB_NONE, 0, 0, 0);
        xcb_test_fake_input(c, XCB_KEY_RELEASE, kc[i & 1], XCB_CURRENT_TIME, XCB_NONE, 0, 0, 0);
        xcb_flush(c);
        if (next_damage(c, e->first_event, t + 2) >= 0)
            lat[got++] = (now() - t) * 1000;
    }
    qsort(lat, (size_t)got, sizeof *lat, cmp);
    if (!got)
        return fprintf(stderr, "gui_watch: no damage after key presses\n"), 1;
    printf("latency_ms_median %.2f p90 %.2f (%d of %d)\n", lat[got / 2], lat[got * 9 / 10], got, n);
    return 0;
}
