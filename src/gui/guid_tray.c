/* bulkhead-guid: a qube's tray icons in the desktop's system tray (Qubes' MSG_DOCK).
 *
 * The agent docks one of its windows (an unmapped one; Qubes refuses a mapped one);
 * the daemon asks the desktop's tray, the owner of _NET_SYSTEM_TRAY_S<screen>, to embed
 * the window's host window (SYSTEM_TRAY_REQUEST_DOCK, XEmbed with _XEMBED_INFO
 * mapped), as Qubes' daemon does. The tray decides where the icon goes and how large it
 * is; the qube is told the size. A docked window has no frame (the tray is too small
 * for one): as Qubes' default trayicon_mode "tint", every pixel is drawn with the
 * label colour's hue and saturation, keeping only its lightness, so the icon shows
 * which qube it is from and cannot pass for dom0's or another qube's. Without a tray
 * the icon waits, unmapped, and is docked when a tray announces itself (the MANAGER
 * client message on the root window). */
#include "guid.h"
#include "log.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#define SYSTEM_TRAY_REQUEST_DOCK 0
#define XEMBED_EMBEDDED_NOTIFY 0
#define XEMBED_FOCUS_IN 4
#define XEMBED_FOCUS_OUT 5
#define XEMBED_MAPPED 1u

static xcb_atom_t atom(xcb_connection_t *x, const char *name)
{
    xcb_intern_atom_reply_t *r = xcb_intern_atom_reply(x, xcb_intern_atom(x, 0, (uint16_t)strlen(name), name), NULL);
    xcb_atom_t a = r ? r->atom : XCB_ATOM_NONE;
    free(r);
    return a;
}

void guid_tray_init(struct guid *g, int screen_number)
{
    char name[40];
    snprintf(name, sizeof name, "_NET_SYSTEM_TRAY_S%d", screen_number);
    g->a_tray_selection = atom(g->x, name);
    g->a_tray_opcode = atom(g->x, "_NET_SYSTEM_TRAY_OPCODE");
    g->a_xembed = atom(g->x, "_XEMBED");
    g->a_xembed_info = atom(g->x, "_XEMBED_INFO");
    g->a_manager = atom(g->x, "MANAGER");
}

static void request_dock(struct guid *g, struct guid_win *w, xcb_window_t tray)
{
    xcb_client_message_event_t m = { .response_type = XCB_CLIENT_MESSAGE, .format = 32, .window = tray,
                                     .type = g->a_tray_opcode };
    m.data.data32[0] = XCB_CURRENT_TIME;
    m.data.data32[1] = SYSTEM_TRAY_REQUEST_DOCK;
    m.data.data32[2] = w->frame;
    xcb_send_event(g->x, 0, tray, XCB_EVENT_MASK_NO_EVENT, (const char *)&m);
    bh_info("%s: window 0x%x docked in the desktop's tray (0x%x)", g->qube, w->remote, tray);
}

void guid_tray_dock(struct guid *g, struct guid_win *w)
{
    if (w->docked)
        return;
    if (w->mapped) { /* as Qubes: only a window that is not shown yet */
        bh_warn("%s: DOCK of mapped window 0x%x refused", g->qube, w->remote);
        return;
    }
    /* the desktop's panel is shared by every qube: one cannot fill it */
    unsigned docked = 0;
    for (unsigned i = 0; i < g->nwins; i++)
        docked += g->wins[i].docked;
    if (docked >= BH_GUID_MAX_DOCKED) {
        bh_warn("%s: more than %d tray icons: DOCK of 0x%x refused", g->qube, BH_GUID_MAX_DOCKED, w->remote);
        return;
    }
    w->docked = true;
    if (w->override_redirect) { /* a tray embeds only managed windows */
        w->override_redirect = false;
        uint32_t v = 0;
        xcb_change_window_attributes(g->x, w->frame, XCB_CW_OVERRIDE_REDIRECT, &v);
    }
    /* no frame in the tray: the content fills the window, tinted instead */
    w->inset = 0;
    uint32_t fv[] = { w->r.w, w->r.h }, cv[] = { 0, 0, w->r.w, w->r.h };
    xcb_configure_window(g->x, w->frame, XCB_CONFIG_WINDOW_WIDTH | XCB_CONFIG_WINDOW_HEIGHT, fv);
    xcb_configure_window(g->x, w->content,
                         XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y | XCB_CONFIG_WINDOW_WIDTH | XCB_CONFIG_WINDOW_HEIGHT,
                         cv);
    uint32_t info[2] = { 0, XEMBED_MAPPED };
    xcb_change_property(g->x, XCB_PROP_MODE_REPLACE, w->frame, g->a_xembed_info, g->a_xembed_info, 32, 2, info);
    xcb_get_selection_owner_reply_t *o =
        xcb_get_selection_owner_reply(g->x, xcb_get_selection_owner(g->x, g->a_tray_selection), NULL);
    xcb_window_t tray = o ? o->owner : XCB_NONE;
    free(o);
    if (tray == XCB_NONE)
        bh_info("%s: window 0x%x waits for a system tray on the desktop (there is none)", g->qube, w->remote);
    else
        request_dock(g, w, tray);
    struct bh_gui_rect all = { 0, 0, w->r.w, w->r.h };
    guid_win_damage(w, &all);
}

bool guid_tray_client_message(struct guid *g, const xcb_client_message_event_t *e)
{
    if (e->window == g->screen->root && e->type == g->a_manager && e->format == 32 &&
        e->data.data32[1] == g->a_tray_selection && e->data.data32[2] != XCB_NONE) {
        /* a new tray: every docked icon goes there */
        for (unsigned i = 0; i < g->nwins; i++)
            if (g->wins[i].docked)
                request_dock(g, &g->wins[i], e->data.data32[2]);
        return true;
    }
    if (e->type != g->a_xembed || e->format != 32)
        return false;
    struct guid_win *w = guid_find_x(g, e->window);
    /* the tray took it (reparented it into itself, then said so): it shows. Never at
     * the root window, where it would show without a frame. */
    /* the tray gives the icon the keyboard focus (XEmbed: the tray keeps the X focus and
     * passes keys on to the icon): the qube's icon is told it has it, as Qubes' daemon
     * does (FocusIn, NotifyNormal, NotifyNonlinear, after KEYMAP_NOTIFY); and when it
     * loses it (Qubes sends nothing then) */
    if (w && w->embedded && e->window == w->frame &&
        (e->data.data32[1] == XEMBED_FOCUS_IN || e->data.data32[1] == XEMBED_FOCUS_OUT)) {
        guid_send_focus(g, w, e->data.data32[1] == XEMBED_FOCUS_IN, XCB_NOTIFY_MODE_NORMAL,
                        XCB_NOTIFY_DETAIL_NONLINEAR);
        return true;
    }
    if (w && w->docked && e->window == w->frame && e->data.data32[1] == XEMBED_EMBEDDED_NOTIFY && w->reparented) {
        w->embedded = true;
        if (!w->mapped) {
            w->mapped = true;
            xcb_map_window(g->x, w->frame);
        }
    }
    return true;
}

static void hide(struct guid *g, struct guid_win *w)
{
    w->mapped = false;
    xcb_unmap_window(g->x, w->frame);
}

void guid_tray_reparented(struct guid *g, struct guid_win *w, xcb_window_t parent)
{
    /* a new parent, a new embedding: shown again only after its EMBEDDED_NOTIFY */
    w->embedded = false;
    if (parent == g->screen->root) {
        /* the tray exited (its save-set hands the icon to the root window and maps it
         * there) or gave the icon back: no frameless qube pixels on the desktop. It
         * waits for the next tray, which announces itself with MANAGER. */
        bh_info("%s: window 0x%x left the desktop's tray: hidden until a tray embeds it", g->qube, w->remote);
        hide(g, w);
    }
}

void guid_tray_mapped(struct guid *g, struct guid_win *w)
{
    /* mapped by anyone but a tray that embedded it (the save-set of a tray that
     * exited, another client): taken down again */
    if (!w->embedded) {
        bh_info("%s: window 0x%x mapped outside a tray: unmapped", g->qube, w->remote);
        hide(g, w);
    }
}

bool guid_tray_draw(struct guid *g, struct guid_win *w, int32_t x0, int32_t y0, int32_t x1, int32_t y1)
{
    size_t need = (size_t)w->buf_w * w->buf_h * 4;
    if (!w->map) {
        void *p = mmap(NULL, need, PROT_READ, MAP_SHARED, w->memfd, 0);
        if (p == MAP_FAILED)
            return true;
        w->map = p;
        w->maplen = need;
    }
    size_t n = (size_t)(x1 - x0) * (size_t)(y1 - y0);
    if (n * 4 > xcb_get_maximum_request_length(g->x) * 4u - 64)
        return true; /* larger than any tray icon */
    uint32_t *tmp = malloc(n * 4);
    if (!tmp)
        return true;
    size_t k = 0;
    for (int32_t y = y0; y < y1; y++)
        for (int32_t x = x0; x < x1; x++) {
            uint32_t p;
            memcpy(&p, w->map + ((size_t)y * w->buf_w + (size_t)x) * 4, 4);
            tmp[k++] = bh_gui_tint_tray(p & 0xffffff, g->color);
        }
    xcb_put_image(g->x, XCB_IMAGE_FORMAT_Z_PIXMAP, w->content, g->gc, (uint16_t)(x1 - x0), (uint16_t)(y1 - y0),
                  (int16_t)x0, (int16_t)y0, 0, 24, (uint32_t)(n * 4), (const uint8_t *)tmp);
    free(tmp);
    return true;
}
