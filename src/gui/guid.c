/* bulkhead-guid: one qube's GUI daemon on the host (see guid.h and docs/gui.md).
 *
 *   bulkhead-guid --qube NAME [--color 0xRRGGBB --label NAME --label-index N --qid N]
 *                 [--vchan-dir DIR] [--runtime DIR] [--start-agent] [--policy-dir DIR]
 *                 [--ask-program PROG] [--clipboard-dir DIR] [--connect-timeout MS]
 *                 [--allow-fullscreen] [--no-monitor-layout]
 *
 * Without --color, the label, its colour and index and the qid come from bulkheadd
 * (admin.vm.property.Get, admin.label.Get/Index): dom0's store, never the qube.
 *
 * Error handling follows the trust split: a message whose framing is wrong (unknown
 * type, wrong length) ends the connection, since the stream cannot be resynchronised;
 * a well-framed message with bad values (sizes, unknown window, unsealed buffer, too
 * many windows) is refused with a log line and the daemon carries on. */
#include "qrexec/daemon_paths.h"
#include "admin_client.h"
#include "guid.h"
#include "host_ids.h"
#include "log.h"
#include "names.h"
#include "selfpath.h"
#include "qrexec/vchan.h"
#include <xcb/randr.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#define MSG_BUDGET 1024 /* agent messages per round before the host display is served */

static unsigned long refusals;

/* A hostile agent can make us refuse messages as fast as it sends them: log the first
 * ones and then one in a thousand, so the log stays readable and the loop stays fast. */
static void refuse(struct guid *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void refuse(struct guid *g, const char *fmt, ...)
{
    refusals++;
    g->refused++;
    if (refusals > 50 && refusals % 1000)
        return;
    char buf[600];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    bh_warn("%s: refused: %s (%lu refused so far)", g->qube, buf, refusals);
}

static int admin_value(const char *method, const char *arg, const char *dest, char *out, size_t n, bh_error *err)
{
    _cleanup_reply_ struct bh_admin_reply r = { 0 };
    if (bh_admin_call(method, arg, dest, NULL, 0, &r, err) < 0)
        return -1;
    if (!r.ok)
        return bh_fail(err, 0, "%s %s: %s", method, dest, r.exc_msg ? r.exc_msg : "error");
    /* property replies are "default=X type=T VALUE" */
    const char *v = r.body;
    if (!strncmp(v, "default=", 8)) {
        const char *sp = strchr(v, ' ');
        sp = sp ? strchr(sp + 1, ' ') : NULL;
        v = sp ? sp + 1 : "";
    }
    snprintf(out, n, "%s", v);
    return 0;
}

/* keyboard_layout: set for this qube, it is used; left at its default, the qube follows
 * the host's layout (Qubes: the default is the GUI qube's layout). */
static void load_layout(struct guid *g)
{
    g->layout[0] = '\0';
    _cleanup_reply_ struct bh_admin_reply r = { 0 };
    bh_error err;
    if (bh_admin_call("admin.vm.property.Get", "keyboard_layout", g->qube, NULL, 0, &r, &err) < 0 || !r.ok ||
        strncmp(r.body, "default=False ", 14))
        return;
    const char *sp = strchr(r.body + 14, ' ');
    char a[BH_GUI_LAYOUT_MAX], b[BH_GUI_LAYOUT_MAX], c[BH_GUI_LAYOUT_MAX];
    if (sp && bh_gui_parse_keyboard_layout(sp + 1, strlen(sp + 1), a, b, c, &err) == 0)
        snprintf(g->layout, sizeof g->layout, "%s", sp + 1);
    else
        bh_warn("%s: keyboard_layout ignored: %s", g->qube, sp ? err.msg : "no value");
}

static int from_store(struct guid *g, char *label, size_t ln, bh_error *err)
{
    char v[64];
    if (admin_value("admin.vm.property.Get", "label", g->qube, label, ln, err) < 0 ||
        admin_value("admin.label.Get", label, "dom0", v, sizeof v, err) < 0)
        return -1;
    long c = bh_gui_parse_color(v);
    if (c < 0)
        return bh_fail(err, 0, "label %s has colour %s", label, v);
    g->color = (uint32_t)c;
    g->label = label;
    if (admin_value("admin.label.Index", label, "dom0", v, sizeof v, err) < 0)
        return -1;
    g->label_index = (uint32_t)strtoul(v, NULL, 10);
    if (admin_value("admin.vm.property.Get", "qid", g->qube, v, sizeof v, err) < 0)
        return -1;
    g->qid = (uint32_t)strtoul(v, NULL, 10);
    load_layout(g);
    return 0;
}

/* Tells the agent which keyboard layout to load (the qube's own, else the host's), when
 * it differs from what it was last told. */
static void send_layout(struct guid *g)
{
    struct bh_gui_keyboard_layout m;
    memset(&m, 0, sizeof m);
    if (g->layout[0])
        snprintf(m.layout, sizeof m.layout, "%s", g->layout);
    else if (guid_host_layout(g, m.layout) < 0)
        return;
    if (!strcmp(m.layout, g->sent_layout))
        return;
    snprintf(g->sent_layout, sizeof g->sent_layout, "%s", m.layout);
    bh_info("%s: keyboard layout %s", g->qube, m.layout);
    bh_error err;
    if (bh_gui_chan_send(&g->ch, BH_GUI_MSG_KEYBOARD_LAYOUT, 0, &m, sizeof m, -1, &err) < 0)
        bh_warn("%s: %s", g->qube, err.msg);
}

/* Which keys are down on the host, sent when a window of the qube gets the focus or the
 * pointer (as Qubes): the agent releases keys the qube still holds that were let go
 * while another window had the focus (a Shift held across a focus change). */
static void send_keymap(struct guid *g)
{
    xcb_query_keymap_reply_t *r = xcb_query_keymap_reply(g->x, xcb_query_keymap(g->x), NULL);
    if (!r)
        return;
    struct bh_gui_keymap_notify k;
    memcpy(k.keys, r->keys, sizeof k.keys);
    free(r);
    bh_error err;
    if (bh_gui_chan_send(&g->ch, BH_GUI_MSG_KEYMAP_NOTIFY, 0, &k, sizeof k, -1, &err) < 0)
        bh_warn("%s: %s", g->qube, err.msg);
}

/* Starts the qube's gui-agent through qrexec (it detaches itself inside the qube). */
static void start_agent(struct guid *g, const char *runtime)
{
    static const char *const rels[] = { "../qrexec", "../../bin", ".", NULL };
    char prog[PATH_MAX];
    if (bh_find_near_self(rels, "qvm-run", X_OK, prog, sizeof prog) < 0) {
        bh_warn("%s: qvm-run not found; start the gui-agent in the qube by hand", g->qube);
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        if (runtime)
            setenv("BULKHEAD_RUNTIME", runtime, 1);
        execl(prog, "qvm-run", "--no-autostart", "-q", "--no-shell", g->qube, "/usr/lib/bulkhead/gui-agent",
              "--background", (char *)NULL);
        _exit(127);
    }
    int st;
    if (pid > 0 && waitpid(pid, &st, 0) == pid && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        bh_warn("%s: starting the gui-agent failed (status %d)", g->qube, st);
}

static int handshake(struct guid *g, bh_error *err)
{
    struct {
        struct bh_gui_version v;
        struct bh_gui_xconf x;
    } out = { { BH_GUI_PROTOCOL_VERSION },
              { g->root_w, g->root_h, 24, 0 } };
    out.x.mem = (uint32_t)((size_t)out.x.w * out.x.h * 4 / 1024);
    if (bh_gui_write_blocking(g->ch.fd, &out, sizeof out, -1, err) < 0)
        return -1;
    struct pollfd p = { .fd = g->ch.fd, .events = POLLIN };
    if (poll(&p, 1, 10000) <= 0)
        return bh_fail(err, 0, "agent sent no version within 10 s");
    struct bh_gui_version v;
    if (recv(g->ch.fd, &v, sizeof v, MSG_WAITALL) != (ssize_t)sizeof v)
        return bh_fail(err, 0, "agent closed during the handshake");
    if ((v.version >> 16) != (BH_GUI_PROTOCOL_VERSION >> 16))
        return bh_fail(err, 0, "agent protocol %u.%u (we speak %u.x)", v.version >> 16, v.version & 0xffff,
                       BH_GUI_PROTOCOL_VERSION >> 16);
    return 0;
}

static void send_agent(struct guid *g, uint32_t type, uint32_t window, const void *body, size_t len)
{
    bh_error err;
    if (bh_gui_chan_send(&g->ch, type, window, body, len, -1, &err) < 0)
        bh_warn("%s: %s", g->qube, err.msg);
}

/* Tells the agent the window's fullscreen state when it changed, as Qubes' daemon does
 * when the window manager acknowledges it: WINDOW_FLAGS from the daemon, which the agent
 * turns into _NET_WM_STATE_FULLSCREEN on the application's window, so the application
 * knows it got fullscreen (or the maximise Qubes gives instead) and when it ended. */
static void ack_flags(struct guid *g, struct guid_win *w)
{
    uint32_t now = w->fullscreen || w->wm_fullscreen ? BH_GUI_WINDOW_FLAG_FULLSCREEN : 0;
    if (now == w->flags_acked)
        return;
    struct bh_gui_window_flags f = { now & ~w->flags_acked, w->flags_acked & ~now };
    w->flags_acked = now;
    send_agent(g, BH_GUI_MSG_WINDOW_FLAGS, w->remote, &f, sizeof f);
}

void guid_windows_replace(struct guid *g)
{
    for (unsigned i = 0; i < g->nwins; i++) {
        struct guid_win *w = &g->wins[i];
        if (!guid_win_refit(g, w))
            continue;
        struct bh_gui_configure c = { (uint32_t)w->r.x, (uint32_t)w->r.y, w->r.w, w->r.h, w->override_redirect };
        send_agent(g, BH_GUI_MSG_CONFIGURE, w->remote, &c, sizeof c);
    }
}

/* One message from the agent. Returns -1 only for what ends the connection. */
static int agent_message(struct guid *g, const struct bh_gui_hdr *h, const uint8_t *body, int fd)
{
    bh_error err;
    struct bh_gui_rect r;
    bool orr, empty;
    uint32_t a, b;
    size_t len = h->untrusted_len; /* checked against the type by bh_gui_chan_next */
    if (h->type == BH_GUI_MSG_CLIPBOARD_DATA) {
        if (!g->clip_copy_pending) {
            refuse(g, "clipboard data nobody asked for");
            return 0;
        }
        g->clip_copy_pending = false;
        guid_clip_copy_data(g, body, len);
        return 0;
    }
    if (h->type == BH_GUI_MSG_CREATE) {
        if (bh_gui_parse_create(body, len, &r, &orr, &a, &err) < 0)
            refuse(g, "CREATE 0x%x: %s", h->window, err.msg);
        else
            guid_win_create(g, h->window, &r, orr);
        return 0;
    }
    struct guid_win *w = guid_find_remote(g, h->window);
    if (!w) {
        if (fd >= 0)
            close(fd);
        refuse(g, "%s for unknown window 0x%x", bh_gui_msg_name(h->type), h->window);
        return 0;
    }
    switch (h->type) {
    case BH_GUI_MSG_DESTROY:
        guid_win_destroy(g, w);
        break;
    case BH_GUI_MSG_MAP:
        if (bh_gui_parse_map(body, len, &a, &orr, &err) < 0)
            refuse(g, "MAP: %s", err.msg);
        else
            guid_win_map(g, w, a, orr);
        break;
    case BH_GUI_MSG_UNMAP:
        guid_win_unmap(g, w);
        break;
    case BH_GUI_MSG_CONFIGURE:
        if (bh_gui_parse_configure(body, len, &r, &orr, &err) < 0)
            refuse(g, "CONFIGURE 0x%x: %s", h->window, err.msg);
        else {
            guid_win_configure(g, w, &r);
            ack_flags(g, w); /* placing the window itself ends its fullscreen */
        }
        break;
    case BH_GUI_MSG_SHMIMAGE:
        if (bh_gui_parse_shmimage(body, len, w->r.w, w->r.h, &r, &empty, &err) < 0)
            refuse(g, "SHMIMAGE: %s", err.msg);
        else if (!empty)
            guid_win_damage(w, &r);
        break;
    case BH_GUI_MSG_WINDOW_DUMP: {
        uint32_t dt;
        if (bh_gui_parse_window_dump(body, len, &dt, &a, &b, &err) < 0) {
            if (fd >= 0)
                close(fd);
            refuse(g, "WINDOW_DUMP 0x%x: %s", h->window, err.msg);
        } else if (dt == BH_GUI_DUMP_INLINE ? guid_win_buffer_inline(g, w, a, b, &err) < 0
                                            : guid_win_buffer(g, w, fd, a, b, &err) < 0)
            refuse(g, "WINDOW_DUMP 0x%x: %s", h->window, err.msg);
        break;
    }
    case BH_GUI_MSG_PIXELS: {
        const uint8_t *px;
        if (bh_gui_parse_pixels(body, len, w->buf_w, w->buf_h, &r, &px, &err) < 0 ||
            guid_win_pixels(w, &r, px, &err) < 0)
            refuse(g, "PIXELS 0x%x: %s", h->window, err.msg);
        break;
    }
    case BH_GUI_MSG_WMNAME: {
        char t[BH_GUI_TITLE_MAX];
        if (bh_gui_parse_wmname(body, len, t, sizeof t, &err) == 0)
            guid_rate_title(g, w, t);
        break;
    }
    case BH_GUI_MSG_WMCLASS: {
        char c[64], n[64];
        if (bh_gui_parse_wmclass(body, len, c, n, sizeof c, &err) == 0)
            guid_win_class(g, w, c, n);
        break;
    }
    case BH_GUI_MSG_WINDOW_HINTS: {
        struct bh_gui_window_hints wh;
        if (bh_gui_parse_window_hints(body, len, &wh, &err) == 0)
            guid_win_hints(g, w, &wh);
        break;
    }
    case BH_GUI_MSG_WINDOW_FLAGS:
        if (bh_gui_parse_window_flags(body, len, &a, &b, &err) < 0)
            refuse(g, "WINDOW_FLAGS: %s", err.msg);
        else {
            if (guid_win_flags(g, w, a, b)) {
                struct bh_gui_configure c = { (uint32_t)w->r.x, (uint32_t)w->r.y, w->r.w, w->r.h,
                                              w->override_redirect };
                send_agent(g, BH_GUI_MSG_CONFIGURE, w->remote, &c, sizeof c);
            }
            ack_flags(g, w);
        }
        break;
    case BH_GUI_MSG_CURSOR:
        if (bh_gui_parse_cursor(body, len, &a, &err) < 0)
            refuse(g, "%s", err.msg);
        else {
            bh_debug("%s: window 0x%x cursor %#x", g->qube, h->window, a);
            guid_win_cursor(g, w, a);
        }
        break;
    case BH_GUI_MSG_DOCK:
        guid_tray_dock(g, w);
        break;
    case BH_GUI_MSG_WINDOW_ICON: {
        const uint8_t *px;
        if (bh_gui_parse_window_icon(body, len, &a, &b, &px, &err) < 0)
            refuse(g, "WINDOW_ICON 0x%x: %s", h->window, err.msg);
        else
            guid_rate_icon(g, w, a, b, px);
        break;
    }
    default:
        return -1; /* bh_gui_check_agent_hdr let nothing else through */
    }
    return 0;
}

static bool is_clip_key(struct guid *g, const xcb_key_press_event_t *e, char *which)
{
    const uint16_t want = XCB_MOD_MASK_CONTROL | XCB_MOD_MASK_SHIFT;
    if ((e->state & (want | XCB_MOD_MASK_1 | XCB_MOD_MASK_4)) != want)
        return false;
    xcb_keysym_t k = guid_keysym(g, e->detail);
    if (k == 'c' || k == 'C' || k == 'v' || k == 'V') {
        *which = (char)(k | 0x20);
        return true;
    }
    return false;
}

void guid_send_focus(struct guid *g, struct guid_win *w, bool in, uint8_t mode, uint8_t detail)
{
    if (in)
        send_keymap(g);
    struct bh_gui_focus f = { in ? XCB_FOCUS_IN : XCB_FOCUS_OUT, mode, detail };
    send_agent(g, BH_GUI_MSG_FOCUS, w->remote, &f, sizeof f);
}

static void x_event(struct guid *g, xcb_generic_event_t *ev)
{
    uint8_t type = ev->response_type & 0x7f;
    switch (type) {
    case XCB_EXPOSE: {
        xcb_expose_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->window);
        if (w && e->window == w->content) {
            struct bh_gui_rect r = { e->x, e->y, e->width, e->height };
            guid_win_damage(w, &r);
        }
        break;
    }
    case XCB_KEY_PRESS:
    case XCB_KEY_RELEASE: {
        xcb_key_press_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->event);
        if (!w)
            break;
        char which;
        if (is_clip_key(g, e, &which)) {
            if (type == XCB_KEY_PRESS) {
                if (which == 'c')
                    guid_clip_copy_request(g, w->remote);
                else
                    guid_clip_paste(g, w->remote);
            }
            break; /* the qube never sees the clipboard keys */
        }
        struct bh_gui_keypress k = { type, (uint32_t)e->event_x, (uint32_t)e->event_y, e->state, e->detail };
        send_agent(g, BH_GUI_MSG_KEYPRESS, w->remote, &k, sizeof k);
        break;
    }
    case XCB_BUTTON_PRESS:
    case XCB_BUTTON_RELEASE: {
        xcb_button_press_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->event);
        if (!w || e->event != w->content)
            break;
        struct bh_gui_button b = { type, (uint32_t)e->event_x, (uint32_t)e->event_y, e->state, e->detail };
        send_agent(g, BH_GUI_MSG_BUTTON, w->remote, &b, sizeof b);
        break;
    }
    case XCB_MOTION_NOTIFY: {
        xcb_motion_notify_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->event);
        if (!w || e->event != w->content)
            break;
        struct bh_gui_motion m = { (uint32_t)e->event_x, (uint32_t)e->event_y, e->state, 0 };
        send_agent(g, BH_GUI_MSG_MOTION, w->remote, &m, sizeof m);
        break;
    }
    case XCB_ENTER_NOTIFY:
    case XCB_LEAVE_NOTIFY: {
        xcb_enter_notify_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->event);
        if (!w || e->event != w->content)
            break;
        if (type == XCB_ENTER_NOTIFY)
            send_keymap(g);
        struct bh_gui_crossing c = { type, (uint32_t)e->event_x, (uint32_t)e->event_y, e->state, e->mode,
                                     e->detail, (uint32_t)(e->same_screen_focus & 1) };
        send_agent(g, BH_GUI_MSG_CROSSING, w->remote, &c, sizeof c);
        break;
    }
    case XCB_FOCUS_IN:
    case XCB_FOCUS_OUT: {
        xcb_focus_in_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->event);
        if (!w || e->event != w->frame)
            break;
        guid_send_focus(g, w, type == XCB_FOCUS_IN, e->mode, e->detail);
        break;
    }
    case XCB_CONFIGURE_NOTIFY: {
        /* the window manager or the user moved or resized a frame: tell the qube */
        xcb_configure_notify_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->window);
        if (!w || e->window != w->frame || e->width <= 2 * w->inset || e->height <= 2 * w->inset)
            break;
        /* the echo of one of our own configures that a later one already replaced:
         * sending it to the qube would undo the later one */
        if (w->cfg_seq && (int16_t)(uint16_t)(e->sequence - w->cfg_seq) < 0)
            break;
        struct bh_gui_rect r = w->r;
        if ((ev->response_type & 0x80) || !w->reparented) { /* else relative to a WM frame */
            r.x = e->x + (int32_t)w->inset;
            r.y = e->y + (int32_t)w->inset;
        }
        r.w = e->width - 2u * w->inset;
        r.h = e->height - 2u * w->inset;
        if (r.x == w->r.x && r.y == w->r.y && r.w == w->r.w && r.h == w->r.h)
            break;
        bool size_changed = r.w != w->r.w || r.h != w->r.h;
        w->r = r;
        if (size_changed) {
            uint32_t cv[] = { r.w, r.h };
            xcb_configure_window(g->x, w->content, XCB_CONFIG_WINDOW_WIDTH | XCB_CONFIG_WINDOW_HEIGHT, cv);
        }
        struct bh_gui_configure c = { (uint32_t)r.x, (uint32_t)r.y, r.w, r.h, w->override_redirect };
        send_agent(g, BH_GUI_MSG_CONFIGURE, w->remote, &c, sizeof c);
        break;
    }
    case XCB_PROPERTY_NOTIFY: {
        xcb_property_notify_event_t *e = (void *)ev;
        if (e->window == g->screen->root && e->atom == g->a_xkb_names) {
            guid_load_keymap(g);
            send_layout(g);
            break;
        }
        /* a window manager's own fullscreen (the user's F11 on the desktop), or its end:
         * the agent is told, as Qubes' daemon tells it from the WM's _NET_WM_STATE */
        struct guid_win *w = e->atom == g->a_net_wm_state ? guid_find_x(g, e->window) : NULL;
        if (w && e->window == w->frame && !w->docked) {
            uint32_t inset = w->inset;
            bool changed = guid_win_wm_state(g, w);
            if (w->inset != inset) { /* the frame shows again: the qube's window is smaller */
                struct bh_gui_configure c = { (uint32_t)w->r.x, (uint32_t)w->r.y, w->r.w, w->r.h,
                                              w->override_redirect };
                send_agent(g, BH_GUI_MSG_CONFIGURE, w->remote, &c, sizeof c);
            }
            if (changed)
                ack_flags(g, w);
        }
        break;
    }
    case XCB_REPARENT_NOTIFY: {
        xcb_reparent_notify_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->window);
        if (w && e->window == w->frame) {
            w->reparented = e->parent != g->screen->root;
            if (w->docked)
                guid_tray_reparented(g, w, e->parent);
        }
        break;
    }
    case XCB_MAP_NOTIFY: {
        xcb_map_notify_event_t *e = (void *)ev;
        struct guid_win *w = guid_find_x(g, e->window);
        if (w && w->docked && e->window == w->frame)
            guid_tray_mapped(g, w);
        break;
    }
    case XCB_CLIENT_MESSAGE: {
        xcb_client_message_event_t *e = (void *)ev;
        if (guid_tray_client_message(g, e))
            break;
        struct guid_win *w = guid_find_x(g, e->window);
        if (w && e->type == g->a_wm_protocols && e->data.data32[0] == g->a_wm_delete)
            send_agent(g, BH_GUI_MSG_CLOSE, w->remote, NULL, 0);
        break;
    }
    case 0: {
        xcb_generic_error_t *e = (void *)ev;
        bh_debug("%s: X error %u (request %u)", g->qube, e->error_code, e->major_code);
        break;
    }
    default:
        if (g->randr_event && type == g->randr_event + XCB_RANDR_SCREEN_CHANGE_NOTIFY)
            g->monitors_forced = true; /* the screen changed: the monitors are read again */
        else if (g->xkb_event && type == g->xkb_event && guid_xkb_event(g, ev))
            send_layout(g); /* the desktop switched its layout group */
        break;
    }
}

static volatile sig_atomic_t stop, reload;
static void on_term(int s) { (void)s; stop = 1; }
/* SIGHUP: qvm-start-daemon saw the qube's keyboard_layout change in the store */
static void on_hup(int s) { (void)s; reload = 1; }

static int run(struct guid *g)
{
    bh_error err;
    for (;;) {
        if (stop)
            return 0;
        bool forced = g->monitors_forced;
        g->monitors_forced = false;
        if (reload) { /* SIGHUP, as Qubes' guid: the keyboard and monitor layouts again */
            reload = 0;
            forced = true;
            guid_monitors_resend(g); /* as Qubes: the layout again, even if unchanged */
            if (g->from_store)
                load_layout(g);
            send_layout(g);
        }
        guid_monitors_tick(g, forced);
        struct pollfd p[2] = { { .fd = xcb_get_file_descriptor(g->x), .events = POLLIN },
                               { .fd = g->ch.fd, .events = POLLIN | (g->ch.outlen ? POLLOUT : 0) } };
        /* messages left in our buffer by the budget are served without waiting */
        bool pending = g->ch.rlen > g->ch.consumed;
        for (unsigned i = 0; i < g->nwins && !pending; i++)
            pending = g->wins[i].dirty; /* exposed by events served after the last draw */
        int wait = guid_rate_tick(g); /* titles and icons held back by the rate limit */
        if (poll(p, 2, pending ? 0 : wait >= 0 && wait < 1000 ? wait : 1000) < 0 && errno != EINTR)
            return bh_err("poll: %s", strerror(errno)), 1;
        xcb_generic_event_t *ev;
        while ((ev = xcb_poll_for_event(g->x))) {
            x_event(g, ev);
            free(ev);
        }
        if (xcb_connection_has_error(g->x)) {
            bh_err("%s: lost the host display", g->qube);
            return 1;
        }
        if (p[1].revents & POLLOUT && bh_gui_chan_flush(&g->ch, &err) < 0) {
            bh_info("%s: %s", g->qube, err.msg);
            return 0;
        }
        if (pending || (p[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            int budget = MSG_BUDGET;
            while (budget > 0) {
                ssize_t n = bh_gui_chan_fill(&g->ch, &err);
                if (n == 0) {
                    bh_info("%s: the gui-agent closed the connection", g->qube);
                    return 0;
                }
                if (n == -1) {
                    bh_warn("%s: %s; disconnecting", g->qube, err.msg);
                    return 1;
                }
                struct bh_gui_hdr h;
                const uint8_t *body;
                int fd, r;
                while (budget > 0 && (r = bh_gui_chan_next(&g->ch, &h, &body, &fd, &err)) == 1) {
                    budget--;
                    if (agent_message(g, &h, body, fd) < 0)
                        return 1;
                }
                if (r < 0) {
                    bh_warn("%s: protocol error: %s; disconnecting", g->qube, err.msg);
                    return 1;
                }
                if (n == -2)
                    break;
            }
        }
        for (unsigned i = 0; i < g->nwins; i++)
            guid_win_draw(g, &g->wins[i]);
        xcb_flush(g->x);
        /* events that replies pulled into xcb's queue: poll() would not see them */
        while ((ev = xcb_poll_for_queued_event(g->x))) {
            x_event(g, ev);
            free(ev);
        }
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: bulkhead-guid --qube NAME [--color 0xRRGGBB --label NAME --label-index N --qid N]\n"
               "         [--vchan-dir DIR] [--runtime DIR] [--start-agent] [--policy-dir DIR]\n"
               "         [--ask-program PROG] [--clipboard-dir DIR] [--connect-timeout MS]\n"
               "         [--allow-fullscreen] [--no-monitor-layout] [--agent-uid UID]\n");
}

int main(int argc, char **argv)
{
    bh_log_init("bulkhead-guid");
    struct sigaction hup = { .sa_handler = on_hup };
    sigaction(SIGHUP, &hup, NULL); /* no SA_RESTART: poll() returns at once */
    static struct guid g; /* large; zeroed */
    static const struct option opts[] = {
        { "qube", required_argument, 0, 'q' }, { "color", required_argument, 0, 'c' },
        { "label", required_argument, 0, 'l' }, { "label-index", required_argument, 0, 'i' },
        { "qid", required_argument, 0, 'd' }, { "vchan-dir", required_argument, 0, 'v' },
        { "runtime", required_argument, 0, 'r' }, { "start-agent", no_argument, 0, 's' },
        { "policy-dir", required_argument, 0, 'p' }, { "ask-program", required_argument, 0, 'a' },
        { "clipboard-dir", required_argument, 0, 'C' }, { "connect-timeout", required_argument, 0, 't' },
        { "allow-fullscreen", no_argument, 0, 'F' }, { "no-monitor-layout", no_argument, 0, 'M' },
        { "agent-uid", required_argument, 0, 'U' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    const char *color = NULL, *vdir = NULL, *runtime_opt = NULL;
    uid_t agent_uid = (uid_t)-1;
    bool start = false, have_qid = false, no_monitor_layout = false;
    int timeout = 30000;
    g.label = "";
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'q': g.qube = optarg; break;
        case 'c': color = optarg; break;
        case 'l': g.label = optarg; break;
        case 'i': g.label_index = (uint32_t)strtoul(optarg, NULL, 10); break;
        case 'd': g.qid = (uint32_t)strtoul(optarg, NULL, 10); have_qid = true; break;
        case 'v': vdir = optarg; break;
        case 'r': runtime_opt = optarg; break;
        case 's': start = true; break;
        case 'p': g.policy_dir = optarg; break;
        case 'a': g.ask_program = optarg; break;
        case 'C': g.clip_dir = optarg; break;
        case 't': timeout = atoi(optarg); break;
        case 'F': g.allow_fullscreen = true; break;
        case 'M': no_monitor_layout = true; break;
        case 'U':
            if (!bh_parse_host_uid(optarg, &agent_uid)) {
                fprintf(stderr, "bulkhead-guid: --agent-uid: not a UID: %s\n", optarg);
                return 2;
            }
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (!g.qube || !bh_qube_name_valid(g.qube, NULL)) {
        usage(stderr);
        return 2;
    }
    bh_error err;
    char label[64];
    if (color) {
        long c = bh_gui_parse_color(color);
        if (c < 0 || !have_qid) {
            fprintf(stderr, "bulkhead-guid: --color needs 0xRRGGBB and --qid\n");
            return 2;
        }
        g.color = (uint32_t)c;
    } else if (from_store(&g, label, sizeof label, &err) < 0) {
        bh_err("%s: %s", g.qube, err.msg);
        return 1;
    } else
        g.from_store = true;
    /* Who must be listening on the qube's GUI name: one of the qube's own host UIDs.
     * bulkheadd gives qube qid the range from BH_QUBE_UID_FIRST + qid * BH_QUBE_UID_RANGE
     * (engine_glue.c), so a qube of the store has it; --agent-uid names it otherwise. */
    if (g.from_store && g.qid > BH_QID_MAX) {
        bh_err("%s: qid %u out of range", g.qube, g.qid);
        return 1;
    }
    if (agent_uid == (uid_t)-1 && g.from_store)
        agent_uid = (uid_t)(BH_QUBE_UID_FIRST + (uint64_t)g.qid * BH_QUBE_UID_RANGE);
    const char *runtime = bh_qx_runtime(runtime_opt);
    char vbuf[PATH_MAX], pbuf[PATH_MAX], cbuf[PATH_MAX];
    if (!vdir) {
        if (bh_qx_qube_path(vbuf, sizeof vbuf, runtime, g.qube, "vchan") < 0)
            return 1;
        vdir = vbuf;
    }
    if (!g.policy_dir) {
        const char *root = getenv("BULKHEAD_ROOT");
        snprintf(pbuf, sizeof pbuf, "%s/policy.d", root && *root ? root : "/var/lib/bulkhead");
        g.policy_dir = pbuf;
    }
    /* `ask` in qubes.ClipboardPaste policy: the same prompt as qrexec's (docs/qrexec.md) */
    char abuf[PATH_MAX];
    static const char *const arels[] = { "../qrexec", ".", NULL };
    if (!g.ask_program)
        g.ask_program = getenv("BULKHEAD_QREXEC_ASK");
    if (!g.ask_program && bh_find_near_self(arels, "qrexec-policy-ask", X_OK, abuf, sizeof abuf) == 0)
        g.ask_program = abuf;
    setenv("BULKHEAD_RUNTIME", runtime, 0); /* where qrexec-policy-ask finds the agent */
    if (!g.clip_dir) {
        snprintf(cbuf, sizeof cbuf, "%s/gui", runtime);
        g.clip_dir = cbuf;
    }
    if (guid_x_open(&g, &err) < 0) {
        bh_err("%s", err.msg);
        return 1;
    }
    /* the monitor layout goes to the qube's qubes.SetMonitorLayout through qrexec, so
     * only where the daemon reaches the qube that way (it starts the agent with it) */
    g.send_monitor_layout = start && !no_monitor_layout;
    guid_monitors_init(&g);
    signal(SIGPIPE, SIG_IGN);
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    signal(SIGCHLD, SIG_DFL);
    if (start)
        start_agent(&g, runtime_opt ? runtime_opt : getenv("BULKHEAD_RUNTIME"));
    /* Another qube's call process may create names in the qube's vchan dir (1777, or
     * 1770 with the call group) and bind this one first, posing as the qube's agent
     * (its windows drawn with this qube's label, its clipboard): a listener of another
     * UID is refused. */
    int fd = bh_vchan_connect_peer(vdir, g.qid, 0, BH_GUI_VCHAN_PORT, agent_uid, BH_QUBE_UID_RANGE, timeout, &err);
    if (fd < 0) {
        bh_err("%s: gui-agent not reachable: %s", g.qube, err.msg);
        return 1;
    }
    bh_gui_chan_init(&g.ch, fd, true);
    if (handshake(&g, &err) < 0) {
        bh_err("%s: %s", g.qube, err.msg);
        return 1;
    }
    bh_info("%s: connected (label %s, colour 0x%06x)", g.qube, g.label, g.color);
    send_layout(&g);
    int rc = run(&g);
    while (g.nwins)
        guid_win_destroy(&g, &g.wins[g.nwins - 1]);
    free(g.wins);
    free(g.keysyms);
    xcb_flush(g.x);
    bh_gui_chan_release(&g.ch);
    close(fd);
    xcb_disconnect(g.x);
    return rc;
}
