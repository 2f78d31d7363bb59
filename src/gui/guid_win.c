/* bulkhead-guid: the host windows that show a qube's windows (see guid.h).
 *
 * Everything here receives values that proto.c already checked; this file adds the
 * checks that need the host: geometry is clamped to the screen, a buffer must be a
 * sealed memfd at least as large as its image, and drawing is clipped to the smaller of
 * window and buffer. */
#include "guid.h"
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xcb/xkb.h>

static xcb_atom_t atom(xcb_connection_t *x, const char *name)
{
    xcb_intern_atom_reply_t *r = xcb_intern_atom_reply(x, xcb_intern_atom(x, 0, (uint16_t)strlen(name), name), NULL);
    xcb_atom_t a = r ? r->atom : XCB_ATOM_NONE;
    free(r);
    return a;
}

int guid_x_open(struct guid *g, bh_error *err)
{
    int sn;
    g->x = xcb_connect(NULL, &sn);
    if (!g->x || xcb_connection_has_error(g->x))
        return bh_fail(err, 0, "cannot open the host display %s", getenv("DISPLAY") ? getenv("DISPLAY") : "(unset)");
    xcb_screen_iterator_t it = xcb_setup_roots_iterator(xcb_get_setup(g->x));
    for (int i = 0; i < sn && it.rem; i++)
        xcb_screen_next(&it);
    g->screen = it.data;
    if (g->screen->root_depth != 24)
        return bh_fail(err, 0, "host display depth %u (need 24)", g->screen->root_depth);
    g->a_net_wm_name = atom(g->x, "_NET_WM_NAME");
    g->a_utf8 = atom(g->x, "UTF8_STRING");
    g->a_wm_protocols = atom(g->x, "WM_PROTOCOLS");
    g->a_wm_delete = atom(g->x, "WM_DELETE_WINDOW");
    g->a_vmname = atom(g->x, "_QUBES_VMNAME");
    g->a_label = atom(g->x, "_QUBES_LABEL");
    g->a_label_color = atom(g->x, "_QUBES_LABEL_COLOR");
    g->a_vmwindowid = atom(g->x, "_QUBES_VMWINDOWID");
    g->a_net_wm_state = atom(g->x, "_NET_WM_STATE");
    g->a_state_attention = atom(g->x, "_NET_WM_STATE_DEMANDS_ATTENTION");
    g->a_wm_transient = XCB_ATOM_WM_TRANSIENT_FOR;
    /* MIT-SHM 1.2 (fd passing): the host X server reads the qube's memfd directly */
    xcb_shm_query_version_reply_t *v = xcb_shm_query_version_reply(g->x, xcb_shm_query_version(g->x), NULL);
    g->have_shm_fd = v && (v->major_version > 1 || (v->major_version == 1 && v->minor_version >= 2)) &&
                     !getenv("BULKHEAD_GUI_NO_SHM");
    free(v);
    g->gc = xcb_generate_id(g->x);
    xcb_create_gc(g->x, g->gc, g->screen->root, XCB_GC_GRAPHICS_EXPOSURES, (uint32_t[]){ 0 });
    g->a_xkb_names = atom(g->x, "_XKB_RULES_NAMES");
    g->a_net_wm_icon = atom(g->x, "_NET_WM_ICON");
    g->a_state_fullscreen = atom(g->x, "_NET_WM_STATE_FULLSCREEN");
    g->a_state_max_vert = atom(g->x, "_NET_WM_STATE_MAXIMIZED_VERT");
    g->a_state_max_horz = atom(g->x, "_NET_WM_STATE_MAXIMIZED_HORZ");
    guid_load_keymap(g);
    /* the host's layout changes (setxkbmap, a desktop's layout switcher) show as a new
     * _XKB_RULES_NAMES on the root window */
    guid_tray_init(g, sn);
    /* STRUCTURE_NOTIFY: a new system tray announces itself with a MANAGER message */
    uint32_t rmask = XCB_EVENT_MASK_PROPERTY_CHANGE | XCB_EVENT_MASK_STRUCTURE_NOTIFY;
    xcb_change_window_attributes(g->x, g->screen->root, XCB_CW_EVENT_MASK, &rmask);
    /* the desktop's selected group (a layout switcher, Shift+Alt, ...) as XKB states */
    const xcb_query_extension_reply_t *xq = xcb_get_extension_data(g->x, &xcb_xkb_id);
    xcb_xkb_use_extension_reply_t *ue =
        xq && xq->present ? xcb_xkb_use_extension_reply(g->x, xcb_xkb_use_extension(g->x, 1, 0), NULL) : NULL;
    if (ue && ue->supported) {
        g->xkb_event = xq->first_event;
        xcb_xkb_select_events_details_t det = { .affectState = XCB_XKB_STATE_PART_GROUP_STATE,
                                                .stateDetails = XCB_XKB_STATE_PART_GROUP_STATE };
        xcb_xkb_select_events_aux(g->x, XCB_XKB_ID_USE_CORE_KBD, XCB_XKB_EVENT_TYPE_STATE_NOTIFY, 0, 0, 0, 0, &det);
        xcb_xkb_get_state_reply_t *st =
            xcb_xkb_get_state_reply(g->x, xcb_xkb_get_state(g->x, XCB_XKB_ID_USE_CORE_KBD), NULL);
        if (st)
            g->host_group = st->group;
        free(st);
    }
    free(ue);
    g->cursor_font = xcb_generate_id(g->x);
    xcb_open_font(g->x, g->cursor_font, 6, "cursor");
    xcb_flush(g->x);
    return 0;
}

void guid_load_keymap(struct guid *g)
{
    const xcb_setup_t *s = xcb_get_setup(g->x);
    g->min_keycode = s->min_keycode;
    g->nkeycodes = s->max_keycode - s->min_keycode + 1;
    xcb_get_keyboard_mapping_reply_t *km = xcb_get_keyboard_mapping_reply(
        g->x, xcb_get_keyboard_mapping(g->x, s->min_keycode, (uint8_t)g->nkeycodes), NULL);
    if (!km)
        return;
    int n = xcb_get_keyboard_mapping_keysyms_length(km);
    xcb_keysym_t *ks = malloc(sizeof(xcb_keysym_t) * (size_t)(n > 0 ? n : 1));
    if (ks) {
        memcpy(ks, xcb_get_keyboard_mapping_keysyms(km), sizeof(xcb_keysym_t) * (size_t)(n > 0 ? n : 0));
        free(g->keysyms);
        g->keysyms = ks;
        g->keysyms_per_code = km->keysyms_per_keycode;
    }
    free(km);
}

int guid_host_layout(struct guid *g, char out[BH_GUI_LAYOUT_MAX])
{
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        g->x, xcb_get_property(g->x, 0, g->screen->root, g->a_xkb_names, XCB_ATOM_STRING, 0, 1024), NULL);
    if (!r)
        return -1;
    bh_error err;
    char all[BH_GUI_LAYOUT_MAX];
    int rc = bh_gui_layout_from_xkb_names(xcb_get_property_value(r), (size_t)xcb_get_property_value_length(r), all,
                                          &err);
    if (rc == 0)
        rc = bh_gui_layout_group(all, g->host_group, out, &err);
    if (rc < 0)
        bh_debug("%s: host keyboard layout: %s", g->qube, err.msg);
    free(r);
    return rc;
}

bool guid_xkb_event(struct guid *g, const xcb_generic_event_t *ev)
{
    if (ev->pad0 != XCB_XKB_STATE_NOTIFY) /* XKB's own event type is in the second byte */
        return false;
    const xcb_xkb_state_notify_event_t *e = (const void *)ev;
    bh_debug("%s: XKB state: group %u base %d latched %d locked %u changed 0x%x (had %u)", g->qube, e->group,
            e->baseGroup, e->latchedGroup, e->lockedGroup, e->changed, g->host_group);
    if (e->group == g->host_group)
        return false;
    g->host_group = e->group;
    return true;
}

xcb_keysym_t guid_keysym(struct guid *g, uint8_t keycode)
{
    if (!g->keysyms || keycode < g->min_keycode || keycode - g->min_keycode >= g->nkeycodes)
        return 0;
    return g->keysyms[(keycode - g->min_keycode) * g->keysyms_per_code];
}

struct guid_win *guid_find_remote(struct guid *g, uint32_t remote)
{
    for (unsigned i = 0; i < g->nwins; i++)
        if (g->wins[i].remote == remote)
            return &g->wins[i];
    return NULL;
}

struct guid_win *guid_find_x(struct guid *g, xcb_window_t w)
{
    for (unsigned i = 0; i < g->nwins; i++)
        if (g->wins[i].frame == w || g->wins[i].content == w)
            return &g->wins[i];
    return NULL;
}

/* Keeps the whole framed window on one monitor (the one it overlaps most, else the
 * nearest) and no larger than it: a qube cannot cover a monitor edge to edge (the
 * frame always shows) nor place windows off every monitor, where a part of the root
 * window no screen shows would hide them. With one monitor that is the screen. */
static void clamp(struct guid *g, struct bh_gui_rect *r)
{
    const struct bh_gui_monitor *m = guid_monitor_of(g, r);
    uint32_t maxw = m->w > 2 * BH_GUID_BORDER ? m->w - 2 * BH_GUID_BORDER : 1;
    uint32_t maxh = m->h > 2 * BH_GUID_BORDER ? m->h - 2 * BH_GUID_BORDER : 1;
    if (r->w > maxw) r->w = maxw;
    if (r->h > maxh) r->h = maxh;
    int32_t maxx = m->x + (int32_t)(m->w - r->w) - BH_GUID_BORDER, maxy = m->y + (int32_t)(m->h - r->h) - BH_GUID_BORDER;
    if (r->x > maxx) r->x = maxx;
    if (r->y > maxy) r->y = maxy;
    if (r->x < m->x + BH_GUID_BORDER) r->x = m->x + BH_GUID_BORDER;
    if (r->y < m->y + BH_GUID_BORDER) r->y = m->y + BH_GUID_BORDER;
}

static void set_prop(struct guid *g, xcb_window_t w, xcb_atom_t prop, xcb_atom_t type, uint8_t fmt, uint32_t n,
                     const void *data)
{
    xcb_change_property(g->x, XCB_PROP_MODE_REPLACE, w, prop, type, fmt, n, data);
}

static void update_state(struct guid *g, struct guid_win *w);

int guid_win_create(struct guid *g, uint32_t remote, const struct bh_gui_rect *r0, bool override_redirect)
{
    if (guid_find_remote(g, remote)) {
        bh_warn("%s: CREATE of existing window 0x%x refused", g->qube, remote);
        return -1;
    }
    if (g->nwins >= BH_GUI_MAX_WINDOWS) {
        bh_warn("%s: more than %u windows: CREATE 0x%x refused", g->qube, BH_GUI_MAX_WINDOWS, remote);
        return -1;
    }
    struct guid_win *nw = realloc(g->wins, sizeof *nw * (g->nwins + 1));
    if (!nw)
        return -1;
    g->wins = nw;
    struct guid_win *w = &g->wins[g->nwins++];
    memset(w, 0, sizeof *w);
    w->remote = remote;
    w->memfd = -1;
    w->inset = BH_GUID_BORDER;
    w->r = *r0;
    w->override_redirect = override_redirect;
    clamp(g, &w->r);
    w->frame = xcb_generate_id(g->x);
    w->content = xcb_generate_id(g->x);
    w->cfg_seq = 0;
    /* the frame: label colour, drawn by the X server from our background pixel */
    uint32_t fvals[] = { g->color, override_redirect,
                         XCB_EVENT_MASK_KEY_PRESS | XCB_EVENT_MASK_KEY_RELEASE | XCB_EVENT_MASK_FOCUS_CHANGE |
                             XCB_EVENT_MASK_STRUCTURE_NOTIFY |
                             XCB_EVENT_MASK_PROPERTY_CHANGE }; /* _NET_WM_STATE from the WM */
    xcb_create_window(g->x, XCB_COPY_FROM_PARENT, w->frame, g->screen->root, (int16_t)(w->r.x - BH_GUID_BORDER),
                      (int16_t)(w->r.y - BH_GUID_BORDER), (uint16_t)(w->r.w + 2 * BH_GUID_BORDER),
                      (uint16_t)(w->r.h + 2 * BH_GUID_BORDER), 0, XCB_WINDOW_CLASS_INPUT_OUTPUT,
                      g->screen->root_visual, XCB_CW_BACK_PIXEL | XCB_CW_OVERRIDE_REDIRECT | XCB_CW_EVENT_MASK, fvals);
    /* the content: the qube's pixels, inset so they can never cover the frame */
    uint32_t cvals[] = { g->screen->black_pixel,
                         XCB_EVENT_MASK_EXPOSURE | XCB_EVENT_MASK_BUTTON_PRESS | XCB_EVENT_MASK_BUTTON_RELEASE |
                             XCB_EVENT_MASK_POINTER_MOTION | XCB_EVENT_MASK_ENTER_WINDOW |
                             XCB_EVENT_MASK_LEAVE_WINDOW | XCB_EVENT_MASK_KEY_PRESS | XCB_EVENT_MASK_KEY_RELEASE };
    xcb_create_window(g->x, XCB_COPY_FROM_PARENT, w->content, w->frame, BH_GUID_BORDER, BH_GUID_BORDER,
                      (uint16_t)w->r.w, (uint16_t)w->r.h, 0, XCB_WINDOW_CLASS_INPUT_OUTPUT, g->screen->root_visual,
                      XCB_CW_BACK_PIXEL | XCB_CW_EVENT_MASK, cvals);
    xcb_map_window(g->x, w->content);
    set_prop(g, w->frame, g->a_wm_protocols, XCB_ATOM_ATOM, 32, 1, &g->a_wm_delete);
    set_prop(g, w->frame, g->a_vmname, XCB_ATOM_STRING, 8, (uint32_t)strlen(g->qube), g->qube);
    set_prop(g, w->frame, g->a_label, XCB_ATOM_CARDINAL, 32, 1, &g->label_index);
    set_prop(g, w->frame, g->a_label_color, XCB_ATOM_CARDINAL, 32, 1, &g->color);
    set_prop(g, w->frame, g->a_vmwindowid, XCB_ATOM_WINDOW, 32, 1, &remote);
    char cls[160];
    int n = snprintf(cls, sizeof cls, "%s:unknown%c%s:unknown", g->qube, 0, g->qube);
    set_prop(g, w->frame, XCB_ATOM_WM_CLASS, XCB_ATOM_STRING, 8, (uint32_t)n + 1, cls);
    guid_win_title(g, w, "");
    return 0;
}

static void drop_buffer(struct guid *g, struct guid_win *w)
{
    if (w->seg) {
        xcb_shm_detach(g->x, w->seg);
        w->seg = 0;
    }
    if (w->map) {
        munmap(w->map, w->maplen);
        w->map = NULL;
    }
    if (w->inl) {
        size_t len = (size_t)w->buf_w * w->buf_h * 4;
        munmap(w->inl, len);
        w->inl = NULL;
        g->inline_bytes -= len;
    }
    if (w->memfd >= 0) {
        close(w->memfd);
        w->memfd = -1;
    }
}

void guid_win_destroy(struct guid *g, struct guid_win *w)
{
    drop_buffer(g, w);
    guid_rate_forget(w);
    xcb_destroy_window(g->x, w->frame);
    size_t i = (size_t)(w - g->wins);
    memmove(&g->wins[i], &g->wins[i + 1], sizeof *w * (g->nwins - i - 1));
    g->nwins--;
}

void guid_win_configure(struct guid *g, struct guid_win *w, const struct bh_gui_rect *r0)
{
    if (w->docked)
        return; /* the tray decides where its icons go and their size */
    struct bh_gui_rect r = *r0;
    if (w->fullscreen && r.x == w->fs_rect.x && r.y == w->fs_rect.y && r.w == w->fs_rect.w && r.h == w->fs_rect.h)
        return; /* the qube agrees with its fullscreen (or the maximise given for it) */
    clamp(g, &r);
    if (w->fullscreen) {
        /* the qube placed the window itself: fullscreen ends, the frame shows again */
        w->fullscreen = false;
        update_state(g, w);
        if (w->inset != BH_GUID_BORDER) {
            w->inset = BH_GUID_BORDER;
            uint32_t pos[] = { BH_GUID_BORDER, BH_GUID_BORDER };
            xcb_configure_window(g->x, w->content, XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y, pos);
        }
    } else if (r.x == w->r.x && r.y == w->r.y && r.w == w->r.w && r.h == w->r.h)
        return;
    w->r = r;
    uint32_t fv[] = { (uint32_t)(r.x - BH_GUID_BORDER), (uint32_t)(r.y - BH_GUID_BORDER),
                      r.w + 2 * BH_GUID_BORDER, r.h + 2 * BH_GUID_BORDER };
    w->cfg_seq = (uint16_t)xcb_configure_window(g->x, w->frame,
                                                XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y | XCB_CONFIG_WINDOW_WIDTH |
                                                    XCB_CONFIG_WINDOW_HEIGHT,
                                                fv).sequence;
    uint32_t cv[] = { r.w, r.h };
    xcb_configure_window(g->x, w->content, XCB_CONFIG_WINDOW_WIDTH | XCB_CONFIG_WINDOW_HEIGHT, cv);
}

void guid_win_map(struct guid *g, struct guid_win *w, uint32_t transient_for, bool override_redirect)
{
    if (w->docked) { /* shown only inside a tray that embedded it; again after an unmap */
        if (w->embedded && !w->mapped) {
            w->mapped = true;
            xcb_map_window(g->x, w->frame);
        }
        return;
    }
    if (override_redirect != w->override_redirect) {
        w->override_redirect = override_redirect;
        uint32_t v = override_redirect;
        xcb_change_window_attributes(g->x, w->frame, XCB_CW_OVERRIDE_REDIRECT, &v);
    }
    struct guid_win *t = transient_for ? guid_find_remote(g, transient_for) : NULL;
    if (t) /* only to a window of the same qube: a qube names no one else's */
        set_prop(g, w->frame, g->a_wm_transient, XCB_ATOM_WINDOW, 32, 1, &t->frame);
    w->transient_for = t ? transient_for : 0;
    w->mapped = true;
    xcb_map_window(g->x, w->frame);
}

void guid_win_unmap(struct guid *g, struct guid_win *w)
{
    w->mapped = false;
    xcb_unmap_window(g->x, w->frame);
}

void guid_win_title(struct guid *g, struct guid_win *w, const char *title)
{
    /* title is sanitised UTF-8 already; the qube's name comes first and from us */
    snprintf(w->title, sizeof w->title, "%s", title);
    char full[BH_GUI_TITLE_MAX + 80];
    int n = snprintf(full, sizeof full, "[%s] %s", g->qube, title);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof full)
        n = (int)sizeof full - 1;
    set_prop(g, w->frame, g->a_net_wm_name, g->a_utf8, 8, (uint32_t)n, full);
    /* WM_NAME is Latin-1: non-ASCII bytes become '?' there, _NET_WM_NAME has them */
    for (int i = 0; i < n; i++)
        if ((unsigned char)full[i] >= 0x80)
            full[i] = '?';
    set_prop(g, w->frame, XCB_ATOM_WM_NAME, XCB_ATOM_STRING, 8, (uint32_t)n, full);
}

void guid_win_class(struct guid *g, struct guid_win *w, const char *cls, const char *name)
{
    /* Qubes' convention: "qube:class" so that no qube's class equals a dom0 program's */
    char buf[300];
    int n = snprintf(buf, sizeof buf, "%s:%s%c%s:%s", g->qube, name, 0, g->qube, cls);
    if (n > 0 && (size_t)n < sizeof buf)
        set_prop(g, w->frame, XCB_ATOM_WM_CLASS, XCB_ATOM_STRING, 8, (uint32_t)n + 1, buf);
}

void guid_win_hints(struct guid *g, struct guid_win *w, const struct bh_gui_window_hints *h)
{
    /* WM_SIZE_HINTS: flags, pad[4], min w/h, max w/h, inc w/h, aspect[4], base w/h, gravity */
    uint32_t v[18] = { 0 };
    v[0] = h->flags;
    v[5] = h->min_width + 2 * BH_GUID_BORDER;
    v[6] = h->min_height + 2 * BH_GUID_BORDER;
    v[7] = h->max_width + 2 * BH_GUID_BORDER;
    v[8] = h->max_height + 2 * BH_GUID_BORDER;
    v[9] = h->width_inc;
    v[10] = h->height_inc;
    v[15] = h->base_width + 2 * BH_GUID_BORDER;
    v[16] = h->base_height + 2 * BH_GUID_BORDER;
    set_prop(g, w->frame, XCB_ATOM_WM_NORMAL_HINTS, XCB_ATOM_WM_SIZE_HINTS, 32, 18, v);
}

/* Places the content at r (host coordinates) with the frame `inset` pixels around it. */
static void place(struct guid *g, struct guid_win *w, const struct bh_gui_rect *r, uint32_t inset)
{
    w->r = *r;
    w->inset = inset;
    uint32_t fv[] = { (uint32_t)(r->x - (int32_t)inset), (uint32_t)(r->y - (int32_t)inset), r->w + 2 * inset,
                      r->h + 2 * inset };
    w->cfg_seq = (uint16_t)xcb_configure_window(g->x, w->frame,
                                                XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y | XCB_CONFIG_WINDOW_WIDTH |
                                                    XCB_CONFIG_WINDOW_HEIGHT,
                                                fv).sequence;
    uint32_t cv[] = { inset, inset, r->w, r->h };
    xcb_configure_window(g->x, w->content,
                         XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y | XCB_CONFIG_WINDOW_WIDTH | XCB_CONFIG_WINDOW_HEIGHT,
                         cv);
}

/* _NET_WM_STATE from what we decided: fullscreen (allowed) or maximised, attention. */
static void update_state(struct guid *g, struct guid_win *w)
{
    xcb_atom_t st[3];
    uint32_t n = 0;
    if (w->fullscreen && w->inset == 0)
        st[n++] = g->a_state_fullscreen;
    else if (w->fullscreen)
        st[n++] = g->a_state_max_vert, st[n++] = g->a_state_max_horz;
    if (w->attention)
        st[n++] = g->a_state_attention;
    if (n)
        set_prop(g, w->frame, g->a_net_wm_state, XCB_ATOM_ATOM, 32, n, st);
    else
        xcb_delete_property(g->x, w->frame, g->a_net_wm_state);
}

/* Fullscreen without its frame only where the user allowed it for this qube (Qubes'
 * gui-allow-fullscreen); otherwise, as Qubes, a maximise: the window fills its monitor
 * inside its frame, which keeps showing. Either way on the monitor the window is on. */
static void place_fullscreen(struct guid *g, struct guid_win *w)
{
    const struct bh_gui_monitor *m = guid_monitor_of(g, &w->r);
    struct bh_gui_rect r = { m->x, m->y, m->w, m->h };
    uint32_t inset = 0;
    if (!g->allow_fullscreen) {
        inset = BH_GUID_BORDER;
        r = (struct bh_gui_rect){ m->x + BH_GUID_BORDER, m->y + BH_GUID_BORDER, m->w - 2 * BH_GUID_BORDER,
                                  m->h - 2 * BH_GUID_BORDER };
    }
    w->fs_rect = r;
    place(g, w, &r, inset);
}

bool guid_win_refit(struct guid *g, struct guid_win *w)
{
    if (w->docked)
        return false;
    struct bh_gui_rect r = w->r;
    if (w->fullscreen) {
        place_fullscreen(g, w);
        return r.x != w->r.x || r.y != w->r.y || r.w != w->r.w || r.h != w->r.h;
    }
    clamp(g, &r);
    if (r.x == w->r.x && r.y == w->r.y && r.w == w->r.w && r.h == w->r.h)
        return false;
    place(g, w, &r, w->inset);
    return true;
}

bool guid_win_flags(struct guid *g, struct guid_win *w, uint32_t set, uint32_t unset)
{
    bool moved = false;
    if ((set & BH_GUI_WINDOW_FLAG_FULLSCREEN) && !w->fullscreen) {
        w->saved = w->r;
        w->fullscreen = true;
        place_fullscreen(g, w);
        if (g->allow_fullscreen)
            bh_info("%s: window 0x%x is fullscreen (allowed for this qube)", g->qube, w->remote);
        else
            bh_info("%s: window 0x%x asked for fullscreen: maximised inside its frame instead", g->qube, w->remote);
        moved = true;
    } else if ((unset & BH_GUI_WINDOW_FLAG_FULLSCREEN) && w->fullscreen) {
        w->fullscreen = false;
        struct bh_gui_rect r = w->saved;
        clamp(g, &r);
        place(g, w, &r, BH_GUID_BORDER);
        moved = true;
    }
    if (set & BH_GUI_WINDOW_FLAG_DEMANDS_ATTENTION)
        w->attention = true;
    if (unset & BH_GUI_WINDOW_FLAG_DEMANDS_ATTENTION)
        w->attention = false;
    update_state(g, w);
    return moved;
}

bool guid_win_wm_state(struct guid *g, struct guid_win *w)
{
    xcb_get_property_reply_t *p = xcb_get_property_reply(
        g->x, xcb_get_property(g->x, 0, w->frame, g->a_net_wm_state, XCB_ATOM_ATOM, 0, 64), NULL);
    bool full = false, vert = false, horz = false;
    if (p && p->format == 32) {
        const xcb_atom_t *a = xcb_get_property_value(p);
        for (int i = 0, n = xcb_get_property_value_length(p) / 4; i < n; i++) {
            full |= a[i] == g->a_state_fullscreen;
            vert |= a[i] == g->a_state_max_vert;
            horz |= a[i] == g->a_state_max_horz;
        }
    }
    free(p);
    /* as Qubes: the maximise given for a refused fullscreen counts as that fullscreen */
    bool desktop = full || (w->fullscreen && w->inset > 0 && vert && horz);
    if (w->fullscreen && !desktop) {
        /* the window manager (the user) ended the qube's fullscreen, or the maximise
         * given for it: the WM placed the window, and the frame shows again */
        w->fullscreen = false;
        if (w->inset != BH_GUID_BORDER) {
            w->inset = BH_GUID_BORDER;
            w->r.x += BH_GUID_BORDER, w->r.y += BH_GUID_BORDER;
            w->r.w = w->r.w > 2 * BH_GUID_BORDER ? w->r.w - 2 * BH_GUID_BORDER : 1;
            w->r.h = w->r.h > 2 * BH_GUID_BORDER ? w->r.h - 2 * BH_GUID_BORDER : 1;
            uint32_t cv[] = { BH_GUID_BORDER, BH_GUID_BORDER, w->r.w, w->r.h };
            xcb_configure_window(g->x, w->content,
                                 XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y | XCB_CONFIG_WINDOW_WIDTH |
                                     XCB_CONFIG_WINDOW_HEIGHT,
                                 cv);
        }
        bh_info("%s: window 0x%x: the desktop ended its fullscreen", g->qube, w->remote);
    }
    bool was = w->wm_fullscreen;
    w->wm_fullscreen = full && !w->fullscreen;
    if (w->wm_fullscreen != was)
        bh_info("%s: window 0x%x: the desktop %s fullscreen", g->qube, w->remote,
                w->wm_fullscreen ? "made it" : "took it out of");
    return (w->fullscreen || w->wm_fullscreen) != ((w->flags_acked & BH_GUI_WINDOW_FLAG_FULLSCREEN) != 0);
}

void guid_win_cursor(struct guid *g, struct guid_win *w, uint32_t cursor)
{
    /* proto.c let only CURSOR_DEFAULT and CURSOR_X11 + 0..153 through; an odd number is
     * a glyph's mask, for which Qubes has no cursor either: the default one */
    uint32_t c = XCB_NONE;
    uint32_t glyph = cursor - BH_GUI_CURSOR_X11;
    if (cursor != BH_GUI_CURSOR_DEFAULT && glyph < BH_GUI_CURSOR_X11_MAX - BH_GUI_CURSOR_X11 && !(glyph & 1)) {
        xcb_cursor_t *slot = &g->cursors[glyph / 2];
        if (!*slot) {
            *slot = xcb_generate_id(g->x);
            xcb_create_glyph_cursor(g->x, *slot, g->cursor_font, g->cursor_font, (uint16_t)glyph,
                                    (uint16_t)(glyph + 1), 0, 0, 0, 0xffff, 0xffff, 0xffff);
        }
        c = *slot;
    }
    xcb_change_window_attributes(g->x, w->content, XCB_CW_CURSOR, &c);
}

void guid_win_icon(struct guid *g, struct guid_win *w, uint32_t iw, uint32_t ih, const uint8_t *pixels)
{
    /* tinted with the label colour by us, as Qubes' icon-receiver does: a qube cannot
     * show another qube's (or dom0's) icon as it is */
    uint32_t v[2 + BH_GUI_ICON_MAX * BH_GUI_ICON_MAX];
    v[0] = iw;
    v[1] = ih;
    for (size_t i = 0; i < (size_t)iw * ih; i++) {
        uint32_t p;
        memcpy(&p, pixels + 4 * i, 4);
        v[2 + i] = bh_gui_tint_argb(p, g->color);
    }
    set_prop(g, w->frame, g->a_net_wm_icon, XCB_ATOM_CARDINAL, 32, 2 + iw * ih, v);
}

int guid_win_buffer(struct guid *g, struct guid_win *w, int memfd, uint32_t bw, uint32_t bh, bh_error *err)
{
    size_t need = (size_t)bw * bh * 4;
    struct stat st;
    int seals = fcntl(memfd, F_GET_SEALS);
    if (fstat(memfd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(memfd);
        return bh_fail(err, 0, "window buffer is not a memfd");
    }
    if (seals < 0 || !(seals & F_SEAL_SHRINK)) {
        close(memfd);
        return bh_fail(err, 0, "window buffer is not sealed against shrinking");
    }
    if ((size_t)st.st_size < need || (size_t)st.st_size > (size_t)BH_GUI_MAX_WIDTH * BH_GUI_MAX_HEIGHT * 4) {
        close(memfd);
        return bh_fail(err, 0, "window buffer of %lld bytes for %ux%u", (long long)st.st_size, bw, bh);
    }
    drop_buffer(g, w);
    w->memfd = memfd;
    w->buf_w = bw;
    w->buf_h = bh;
    if (g->have_shm_fd) {
        int dupfd = fcntl(memfd, F_DUPFD_CLOEXEC, 3);
        if (dupfd >= 0) {
            w->seg = xcb_generate_id(g->x);
            xcb_void_cookie_t ck = xcb_shm_attach_fd_checked(g->x, w->seg, dupfd, 1);
            xcb_generic_error_t *e = xcb_request_check(g->x, ck);
            if (e) {
                free(e);
                w->seg = 0;
            }
        }
    }
    if (!w->seg) {
        w->map = mmap(NULL, need, PROT_READ, MAP_SHARED, memfd, 0);
        if (w->map == MAP_FAILED) {
            w->map = NULL;
            drop_buffer(g, w);
            return bh_fail_errno(err, "mmap window buffer");
        }
        w->maplen = need;
    }
    struct bh_gui_rect all = { 0, 0, bw, bh };
    guid_win_damage(w, &all);
    return 0;
}

int guid_win_buffer_inline(struct guid *g, struct guid_win *w, uint32_t bw, uint32_t bh, bh_error *err)
{
    /* the same kind of buffer an ns agent hands over, made here (charged to this
     * daemon, at most BH_GUI_MAX_WIDTH x BH_GUI_MAX_HEIGHT, as parse_window_dump
     * checked), so that drawing is the same code */
    size_t need = (size_t)bw * bh * 4;
    /* An agent that hands over memfds pays for its buffers (the qube's memory); these
     * are the daemon's, in the desktop session: bounded per qube. The window's old
     * buffer goes first (guid_win_buffer drops it), so it does not count. */
    size_t old = w->inl ? (size_t)w->buf_w * w->buf_h * 4 : 0;
    if (g->inline_bytes - old + need > BH_GUID_INLINE_MAX)
        return bh_fail(err, ENOMEM, "inline buffers of %zu MiB in all (limit %u MiB)",
                       (g->inline_bytes - old + need) >> 20, (unsigned)(BH_GUID_INLINE_MAX >> 20));
    int fd = memfd_create("bulkhead-guid-inline", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)need) < 0 || fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return bh_fail(err, e, "inline window buffer: %s", strerror(e));
    }
    uint8_t *m = mmap(NULL, need, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (m == MAP_FAILED) {
        close(fd);
        return bh_fail_errno(err, "mmap inline window buffer");
    }
    if (guid_win_buffer(g, w, fd, bw, bh, err) < 0) {
        munmap(m, need);
        return -1;
    }
    w->inl = m;
    g->inline_bytes += need;
    return 0;
}

int guid_win_pixels(struct guid_win *w, const struct bh_gui_rect *r, const uint8_t *pixels, bh_error *err)
{
    if (!w->inl)
        return bh_fail(err, 0, "PIXELS without an inline WINDOW_DUMP");
    /* the rectangle was checked against this buffer (bh_gui_parse_pixels) */
    for (uint32_t row = 0; row < r->h; row++)
        memcpy(w->inl + (((size_t)r->y + row) * w->buf_w + (size_t)r->x) * 4, pixels + (size_t)row * r->w * 4,
               (size_t)r->w * 4);
    guid_win_damage(w, r);
    return 0;
}

void guid_win_damage(struct guid_win *w, const struct bh_gui_rect *r)
{
    int32_t x1 = r->x + (int32_t)r->w, y1 = r->y + (int32_t)r->h;
    if (!w->dirty) {
        w->dx0 = r->x, w->dy0 = r->y, w->dx1 = x1, w->dy1 = y1;
        w->dirty = true;
        return;
    }
    if (r->x < w->dx0) w->dx0 = r->x;
    if (r->y < w->dy0) w->dy0 = r->y;
    if (x1 > w->dx1) w->dx1 = x1;
    if (y1 > w->dy1) w->dy1 = y1;
}

void guid_win_draw(struct guid *g, struct guid_win *w)
{
    if (!w->dirty)
        return;
    w->dirty = false;
    if (w->memfd < 0)
        return;
    /* clip to the buffer and to the window */
    int32_t mw = (int32_t)(w->buf_w < w->r.w ? w->buf_w : w->r.w);
    int32_t mh = (int32_t)(w->buf_h < w->r.h ? w->buf_h : w->r.h);
    int32_t x0 = w->dx0 < 0 ? 0 : w->dx0, y0 = w->dy0 < 0 ? 0 : w->dy0;
    int32_t x1 = w->dx1 > mw ? mw : w->dx1, y1 = w->dy1 > mh ? mh : w->dy1;
    if (x1 <= x0 || y1 <= y0)
        return;
    if (w->docked) {
        guid_tray_draw(g, w, x0, y0, x1, y1);
        return;
    }
    if (w->seg) {
        xcb_shm_put_image(g->x, w->content, g->gc, (uint16_t)w->buf_w, (uint16_t)w->buf_h, (uint16_t)x0, (uint16_t)y0,
                          (uint16_t)(x1 - x0), (uint16_t)(y1 - y0), (int16_t)x0, (int16_t)y0, 24,
                          XCB_IMAGE_FORMAT_Z_PIXMAP, 0, w->seg, 0);
        return;
    }
    /* no MIT-SHM: PutImage in strips that fit the request size */
    uint32_t maxreq = xcb_get_maximum_request_length(g->x) * 4 - 64;
    uint32_t rowbytes = (uint32_t)(x1 - x0) * 4;
    uint32_t rows = maxreq / rowbytes;
    if (rows == 0)
        return;
    uint8_t *tmp = malloc((size_t)rowbytes * rows);
    if (!tmp)
        return;
    for (int32_t y = y0; y < y1; y += (int32_t)rows) {
        int32_t n = y1 - y < (int32_t)rows ? y1 - y : (int32_t)rows;
        for (int32_t i = 0; i < n; i++)
            memcpy(tmp + (size_t)i * rowbytes, w->map + ((size_t)(y + i) * w->buf_w + (size_t)x0) * 4, rowbytes);
        xcb_put_image(g->x, XCB_IMAGE_FORMAT_Z_PIXMAP, w->content, g->gc, (uint16_t)(x1 - x0), (uint16_t)n,
                      (int16_t)x0, (int16_t)y, 0, 24, rowbytes * (uint32_t)n, tmp);
    }
    free(tmp);
}
