/* gui-agent --set-monitor-layout: the qube's side of Qubes' qubes.SetMonitorLayout.
 *
 * dom0's GUI daemon sends the desktop's monitors ("W H X Y [W_MM H_MM]" per line, on
 * stdin). As Qubes' qubes-set-monitor-layout does with the dummy driver's outputs, the
 * qube's X server is set to the same layout: its screen becomes the monitors' bounding
 * box (a mode of that size on its output, the screen resized around it) and it gets
 * the same monitors (RandR 1.5 monitors DUMMY0.. named like Qubes' outputs; DUMMY0
 * carries the output, so it replaces the automatic monitor), which is what toolkits
 * and window managers in the qube read. Xvfb cannot grow past the size it started with
 * (the host screen's when the qube's GUI started): a larger layout is cut to it. */
#include "gui/proto.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>
#include <xcb/randr.h>
#include <xcb/xcb.h>
#include <xcb/xcbext.h>

/* libxcb 1.15's xcb_randr_set_monitor hands xcb_send_request one part more than it
 * fills (an uninitialised iovec, the request goes out garbled): built here instead. */
static xcb_void_cookie_t set_monitor(xcb_connection_t *c, xcb_window_t root, xcb_atom_t name, bool primary,
                                     const struct bh_gui_monitor *m, xcb_randr_output_t output)
{
    uint8_t req[8 + sizeof(xcb_randr_monitor_info_t) + 4] = { 0 };
    xcb_randr_monitor_info_t info = { .name = name, .primary = primary, .automatic = 0,
                                      .nOutput = output ? 1 : 0, .x = (int16_t)m->x, .y = (int16_t)m->y,
                                      .width = (uint16_t)m->w, .height = (uint16_t)m->h,
                                      .width_in_millimeters = m->w_mm, .height_in_millimeters = m->h_mm };
    memcpy(req + 4, &root, 4);
    memcpy(req + 8, &info, sizeof info);
    memcpy(req + 8 + sizeof info, &output, 4);
    struct iovec iov[3] = { { 0 }, { 0 }, { req, 8 + sizeof info + (output ? 4u : 0u) } };
    xcb_protocol_request_t pr = { .count = 1, .ext = &xcb_randr_id, .opcode = XCB_RANDR_SET_MONITOR, .isvoid = 1 };
    return (xcb_void_cookie_t){ xcb_send_request(c, XCB_REQUEST_CHECKED, iov + 2, &pr) };
}

static bool failed(xcb_connection_t *c, xcb_void_cookie_t ck, const char *what)
{
    xcb_generic_error_t *e = xcb_request_check(c, ck);
    if (!e)
        return false;
    bh_warn("monitor layout: %s: X error %u", what, e->error_code);
    free(e);
    return true;
}

static xcb_atom_t atom(xcb_connection_t *c, const char *name)
{
    xcb_intern_atom_reply_t *r = xcb_intern_atom_reply(c, xcb_intern_atom(c, 0, (uint16_t)strlen(name), name), NULL);
    xcb_atom_t a = r ? r->atom : XCB_ATOM_NONE;
    free(r);
    return a;
}

/* The mode named QB<w>x<h> (Qubes' naming), made when the server has none. */
static xcb_randr_mode_t find_mode(xcb_connection_t *c, xcb_window_t root, xcb_randr_get_screen_resources_reply_t *res,
                                  uint32_t w, uint32_t h)
{
    char name[32];
    int nl = snprintf(name, sizeof name, "QB%ux%u", w, h);
    xcb_randr_mode_info_t *modes = xcb_randr_get_screen_resources_modes(res);
    const uint8_t *names = xcb_randr_get_screen_resources_names(res);
    for (int i = 0, off = 0; i < xcb_randr_get_screen_resources_modes_length(res); off += modes[i].name_len, i++)
        if (modes[i].name_len == nl && !memcmp(names + off, name, (size_t)nl))
            return modes[i].id;
    /* timings as Qubes' qubes-run-xorg makes them: a 50 kHz line, 3 pixels of blanking */
    uint32_t htotal = w + 3, vtotal = h + 3, mhz = 50u * htotal / 1000u;
    if (mhz > 300)
        mhz = 300;
    xcb_randr_mode_info_t mi = { .width = (uint16_t)w, .height = (uint16_t)h, .dot_clock = mhz * 1000000u,
                                 .hsync_start = (uint16_t)(w + 1), .hsync_end = (uint16_t)(w + 2),
                                 .htotal = (uint16_t)htotal, .vsync_start = (uint16_t)(h + 1),
                                 .vsync_end = (uint16_t)(h + 2), .vtotal = (uint16_t)vtotal, .name_len = (uint16_t)nl };
    xcb_randr_create_mode_reply_t *r =
        xcb_randr_create_mode_reply(c, xcb_randr_create_mode(c, root, mi, (uint32_t)nl, name), NULL);
    xcb_randr_mode_t id = r ? r->mode : 0;
    free(r);
    return id;
}

static uint32_t mm(uint32_t px) { return px * 254u / 960u; } /* at 96 DPI */

static int apply(xcb_connection_t *c, const struct bh_gui_monitor *m, int nm);

int gui_set_monitor_layout(int display)
{
    char text[BH_GUI_LAYOUT_TEXT_MAX + 1];
    size_t len = 0;
    ssize_t n;
    while (len < sizeof text && (n = read(0, text + len, sizeof text - len)) > 0)
        len += (size_t)n;
    struct bh_gui_monitor m[BH_GUI_MAX_MONITORS];
    bh_error err;
    int nm = bh_gui_parse_monitor_layout(text, len, m, &err);
    if (nm < 0)
        return bh_err("monitor layout refused: %s", err.msg), 1;
    char disp[16];
    snprintf(disp, sizeof disp, ":%d", display);
    /* the daemon sends the layout as soon as the agent answered, which then starts its
     * X server (sized from the daemon's answer): wait for it, as Qubes' script does */
    xcb_connection_t *c = NULL;
    for (int tries = 0; tries < 150; tries++) {
        c = xcb_connect(disp, NULL);
        if (!xcb_connection_has_error(c))
            break;
        xcb_disconnect(c);
        c = NULL;
        usleep(100 * 1000);
    }
    if (!c)
        return bh_err("cannot open the qube's display %s", disp), 1;
    int rc = apply(c, m, nm);
    xcb_flush(c);
    xcb_disconnect(c);
    return rc;
}

/* Everything on the server; every reply is freed on every path (the sanitizer builds
 * count a leak at exit as a failure). */
static int apply(xcb_connection_t *c, const struct bh_gui_monitor *m, int nm)
{
    xcb_screen_t *s = xcb_setup_roots_iterator(xcb_get_setup(c)).data;
    xcb_window_t root = s->root;
    xcb_randr_query_version_reply_t *v = xcb_randr_query_version_reply(c, xcb_randr_query_version(c, 1, 5), NULL);
    bool v15 = v && (v->major_version > 1 || v->minor_version >= 5);
    free(v);
    if (!v15)
        return bh_err("the qube's X server has no RandR 1.5"), 1;
    xcb_randr_get_screen_size_range_reply_t *range =
        xcb_randr_get_screen_size_range_reply(c, xcb_randr_get_screen_size_range(c, root), NULL);
    xcb_randr_get_screen_resources_reply_t *res =
        xcb_randr_get_screen_resources_reply(c, xcb_randr_get_screen_resources(c, root), NULL);
    if (!range || !res || !xcb_randr_get_screen_resources_crtcs_length(res) ||
        !xcb_randr_get_screen_resources_outputs_length(res)) {
        free(range);
        free(res);
        return bh_err("the qube's X server has no CRTC or output"), 1;
    }
    /* the screen: the bounding box of the monitors, within what the server can hold */
    uint32_t bw = 0, bh = 0;
    for (int i = 0; i < nm; i++) {
        if ((uint32_t)m[i].x + m[i].w > bw) bw = (uint32_t)m[i].x + m[i].w;
        if ((uint32_t)m[i].y + m[i].h > bh) bh = (uint32_t)m[i].y + m[i].h;
    }
    if (bw > range->max_width || bh > range->max_height) {
        bh_warn("monitor layout %ux%u is larger than this X server can be (%ux%u): cut to it", bw, bh,
                range->max_width, range->max_height);
        bw = bw > range->max_width ? range->max_width : bw;
        bh = bh > range->max_height ? range->max_height : bh;
    }
    xcb_randr_crtc_t crtc = xcb_randr_get_screen_resources_crtcs(res)[0];
    xcb_randr_output_t output = xcb_randr_get_screen_resources_outputs(res)[0];
    xcb_randr_mode_t mode = find_mode(c, root, res, bw, bh);
    if (!mode) {
        free(range);
        free(res);
        return bh_err("no mode %ux%u", bw, bh), 1;
    }
    xcb_randr_add_output_mode(c, output, mode); /* BadMatch when it has it already: fine */
    xcb_get_geometry_reply_t *geo = xcb_get_geometry_reply(c, xcb_get_geometry(c, root), NULL);
    uint32_t cw = geo ? geo->width : s->width_in_pixels, ch = geo ? geo->height : s->height_in_pixels;
    free(geo);
    /* the output's mode must always fit the screen: grow first, set the mode, shrink */
    uint32_t gw = bw > cw ? bw : cw, gh = bh > ch ? bh : ch;
    if (gw != cw || gh != ch)
        failed(c, xcb_randr_set_screen_size_checked(c, root, (uint16_t)gw, (uint16_t)gh, mm(gw), mm(gh)), "grow");
    xcb_randr_set_crtc_config_reply_t *cr = xcb_randr_set_crtc_config_reply(
        c, xcb_randr_set_crtc_config(c, crtc, XCB_CURRENT_TIME, res->config_timestamp, 0, 0, mode,
                                     XCB_RANDR_ROTATION_ROTATE_0, 1, &output), NULL);
    free(cr);
    if (bw != gw || bh != gh)
        failed(c, xcb_randr_set_screen_size_checked(c, root, (uint16_t)bw, (uint16_t)bh, mm(bw), mm(bh)), "resize");
    /* the monitors: ours from before go, the new ones come */
    xcb_randr_get_monitors_reply_t *old = xcb_randr_get_monitors_reply(c, xcb_randr_get_monitors(c, root, 0), NULL);
    for (xcb_randr_monitor_info_iterator_t it = old ? xcb_randr_get_monitors_monitors_iterator(old)
                                                    : (xcb_randr_monitor_info_iterator_t){ 0 };
         it.rem; xcb_randr_monitor_info_next(&it)) {
        xcb_get_atom_name_reply_t *an = xcb_get_atom_name_reply(c, xcb_get_atom_name(c, it.data->name), NULL);
        if (an && xcb_get_atom_name_name_length(an) > 5 && !memcmp(xcb_get_atom_name_name(an), "DUMMY", 5))
            xcb_randr_delete_monitor(c, root, it.data->name);
        free(an);
    }
    free(old);
    for (int i = 0; i < nm; i++) {
        struct bh_gui_monitor mi = m[i];
        if ((uint32_t)mi.x >= bw || (uint32_t)mi.y >= bh)
            continue; /* cut away with the screen */
        if ((uint32_t)mi.x + mi.w > bw) mi.w = bw - (uint32_t)mi.x;
        if ((uint32_t)mi.y + mi.h > bh) mi.h = bh - (uint32_t)mi.y;
        if (!mi.w_mm || !mi.h_mm)
            mi.w_mm = mm(mi.w), mi.h_mm = mm(mi.h);
        char name[16];
        snprintf(name, sizeof name, "DUMMY%d", i);
        failed(c, set_monitor(c, root, atom(c, name), i == 0, &mi, i == 0 ? output : 0), name);
    }
    free(range);
    free(res);
    bh_info("monitor layout: screen %ux%u, %d monitor%s", bw, bh, nm, nm == 1 ? "" : "s");
    return 0;
}
