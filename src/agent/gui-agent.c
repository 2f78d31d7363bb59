/* gui-agent: the GUI agent inside a qube (Qubes' qubes-gui-agent).
 *
 *   gui-agent [--background] [--vchan-dir DIR] [--domid N] [--display N]
 *
 * It runs the qube's own X server (Xvfb, sized like the host screen the first daemon
 * reports), serves the GUI protocol on the qube's vchan port 6000 and mirrors the
 * qube's top-level windows to the daemon: CREATE/CONFIGURE/MAP/UNMAP/DESTROY, titles,
 * classes and size hints, and their pixels. Each window's pixels live in a sealed memfd
 * (F_SEAL_SHRINK|F_SEAL_GROW) attached to the qube's X server with MIT-SHM; DAMAGE tells
 * us what changed, the X server copies the window's composite pixmap into the memfd and
 * a SHMIMAGE names the rectangle. The daemon's input (KEYPRESS/BUTTON/MOTION/FOCUS)
 * is injected with XTEST, and the clipboard keys of the daemon read or set the qube's
 * CLIPBOARD selection.
 *
 * The agent runs as the qube's user; everything here is the qube's own business. The
 * daemon treats all of it as hostile. */
#include "gui/chan.h"
#include "gui/proto.h"
#include "log.h"
#include "qrexec/vchan.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <xcb/composite.h>
#include <xcb/damage.h>
#include <xcb/shm.h>
#include <xcb/xcb.h>
#include <xcb/xfixes.h>
#include <xcb/xtest.h>

struct awin {
    xcb_window_t id;
    int32_t x, y;      /* outer corner (border included) */
    uint32_t w, h;     /* outer size */
    uint16_t bw;       /* X border width */
    bool or, mapped, input_only, urgent, fullscreen;
    xcb_damage_damage_t dmg;
    xcb_pixmap_t pix;  /* composite pixmap while mapped */
    int memfd;
    uint32_t buf_w, buf_h;
    xcb_shm_seg_t seg;
    const uint8_t *map; /* inline mode: our read-only view of memfd */
    bool dirty;
    int32_t dx0, dy0, dx1, dy1;
    int32_t want_x, want_y; /* last geometry the daemon asked for: not echoed back */
    uint32_t want_w, want_h;
    xcb_window_t icon;  /* an embedder of ours: the tray icon it holds (XEmbed) */
};

static struct {
    xcb_connection_t *x;
    xcb_screen_t *screen;
    uint8_t damage_event, xfixes_event;
    xcb_window_t pointer_win; /* the window the daemon last moved the pointer in */
    struct awin *w;
    unsigned n;
    struct bh_gui_chan ch;
    bool connected;
    xcb_window_t helper, focused;
    xcb_atom_t a_clipboard, a_utf8, a_targets, a_prop, a_net_wm_name, a_wm_protocols, a_wm_delete, a_net_wm_icon, a_net_wm_state,
        a_state_fullscreen, a_tray_selection, a_tray_opcode, a_xembed, a_xembed_info;
    uint8_t *clip;
    size_t cliplen;
    pid_t xvfb;
    int display;
    bool inline_px; /* pixels in PIXELS messages, not a memfd (see in_a_vm) */
} A;

static void cursor_changed(xcb_atom_t name);
static void remove_window(struct awin *w);
int gui_set_monitor_layout(int display); /* gui-monitors.c */

static xcb_atom_t atom(const char *name)
{
    xcb_intern_atom_reply_t *r = xcb_intern_atom_reply(A.x, xcb_intern_atom(A.x, 0, (uint16_t)strlen(name), name), NULL);
    xcb_atom_t a = r ? r->atom : XCB_ATOM_NONE;
    free(r);
    return a;
}

static void send_msg(uint32_t type, uint32_t win, const void *body, size_t len, int fd)
{
    if (!A.connected)
        return;
    bh_error err;
    /* the agent may block on its daemon: the daemon is trusted to read */
    struct bh_gui_hdr h = { type, win, (uint32_t)len };
    uint8_t buf[sizeof h + BH_GUI_MAX_CLIPBOARD];
    memcpy(buf, &h, sizeof h);
    if (len)
        memcpy(buf + sizeof h, body, len);
    if (bh_gui_write_blocking(A.ch.fd, buf, sizeof h + len, fd, &err) < 0) {
        bh_warn("%s", err.msg);
        A.connected = false;
    }
}

static struct awin *find(xcb_window_t id)
{
    for (unsigned i = 0; i < A.n; i++)
        if (A.w[i].id == id)
            return &A.w[i];
    return NULL;
}

static void drop_buffer(struct awin *w)
{
    if (w->seg) {
        xcb_shm_detach(A.x, w->seg);
        w->seg = 0;
    }
    if (w->map) {
        munmap((void *)w->map, (size_t)w->buf_w * w->buf_h * 4);
        w->map = NULL;
    }
    if (w->memfd >= 0) {
        close(w->memfd);
        w->memfd = -1;
    }
    if (w->pix) {
        xcb_free_pixmap(A.x, w->pix);
        w->pix = 0;
    }
}

static void damage_all(struct awin *w)
{
    w->dirty = true;
    w->dx0 = w->dy0 = 0;
    w->dx1 = (int32_t)w->w;
    w->dy1 = (int32_t)w->h;
}

/* A new sealed memfd for the window's current size, handed to the daemon. */
static void new_buffer(struct awin *w)
{
    drop_buffer(w);
    if (w->input_only || !w->mapped || w->w > BH_GUI_MAX_WIDTH || w->h > BH_GUI_MAX_HEIGHT)
        return;
    size_t size = (size_t)w->w * w->h * 4;
    int fd = memfd_create("bulkhead-gui-window", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    if (fd < 0 || ftruncate(fd, (off_t)size) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) < 0) {
        bh_warn("window buffer: %s", strerror(errno));
        if (fd >= 0)
            close(fd);
        return;
    }
    if (A.inline_px) {
        void *m = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (m == MAP_FAILED) {
            bh_warn("window buffer: mmap: %s", strerror(errno));
            close(fd);
            return;
        }
        w->map = m;
    }
    w->memfd = fd;
    w->buf_w = w->w;
    w->buf_h = w->h;
    w->seg = xcb_generate_id(A.x);
    xcb_shm_attach_fd(A.x, w->seg, fcntl(fd, F_DUPFD_CLOEXEC, 3), 0);
    w->pix = xcb_generate_id(A.x);
    xcb_composite_name_window_pixmap(A.x, w->id, w->pix);
    struct bh_gui_window_dump_hdr d = { A.inline_px ? BH_GUI_DUMP_INLINE : BH_GUI_DUMP_MEMFD, w->w, w->h, BH_GUI_BPP };
    send_msg(BH_GUI_MSG_WINDOW_DUMP, w->id, &d, sizeof d, A.inline_px ? -1 : fd);
    damage_all(w);
}

static void send_title(struct awin *w)
{
    struct bh_gui_wmname m;
    memset(&m, 0, sizeof m);
    xcb_get_property_reply_t *r =
        xcb_get_property_reply(A.x, xcb_get_property(A.x, 0, w->id, A.a_net_wm_name, A.a_utf8, 0, 32), NULL);
    if (!r || xcb_get_property_value_length(r) == 0) {
        free(r);
        r = xcb_get_property_reply(A.x, xcb_get_property(A.x, 0, w->id, XCB_ATOM_WM_NAME, XCB_ATOM_ANY, 0, 32), NULL);
    }
    if (r) {
        int n = xcb_get_property_value_length(r);
        if (n > (int)sizeof m.data - 1)
            n = (int)sizeof m.data - 1;
        if (n > 0)
            memcpy(m.data, xcb_get_property_value(r), (size_t)n);
        free(r);
    }
    send_msg(BH_GUI_MSG_WMNAME, w->id, &m, sizeof m, -1);
}

static void send_class(struct awin *w)
{
    struct bh_gui_wmclass m;
    memset(&m, 0, sizeof m);
    xcb_get_property_reply_t *r =
        xcb_get_property_reply(A.x, xcb_get_property(A.x, 0, w->id, XCB_ATOM_WM_CLASS, XCB_ATOM_STRING, 0, 32), NULL);
    if (!r)
        return;
    int n = xcb_get_property_value_length(r);
    const char *v = xcb_get_property_value(r);
    /* "instance\0class\0" */
    size_t l1 = n > 0 ? strnlen(v, (size_t)n) : 0;
    snprintf(m.res_name, sizeof m.res_name, "%.*s", (int)l1, v);
    if ((int)l1 + 1 < n)
        snprintf(m.res_class, sizeof m.res_class, "%.*s", (int)strnlen(v + l1 + 1, (size_t)n - l1 - 1), v + l1 + 1);
    free(r);
    if (n > 0)
        send_msg(BH_GUI_MSG_WMCLASS, w->id, &m, sizeof m, -1);
}

static void send_hints(struct awin *w)
{
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        A.x, xcb_get_property(A.x, 0, w->id, XCB_ATOM_WM_NORMAL_HINTS, XCB_ATOM_WM_SIZE_HINTS, 0, 18), NULL);
    if (!r)
        return;
    if (xcb_get_property_value_length(r) >= 18 * 4) {
        uint32_t *v = xcb_get_property_value(r);
        struct bh_gui_window_hints m = { v[0], v[5], v[6], v[7], v[8], v[9], v[10], v[15], v[16] };
        send_msg(BH_GUI_MSG_WINDOW_HINTS, w->id, &m, sizeof m, -1);
    }
    free(r);
}

/* ICCCM urgency (WM_HINTS flag bit 8) is Qubes' DEMANDS_ATTENTION window flag */
static void send_urgency(struct awin *w)
{
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        A.x, xcb_get_property(A.x, 0, w->id, XCB_ATOM_WM_HINTS, XCB_ATOM_WM_HINTS, 0, 1), NULL);
    uint32_t flags = 0;
    if (r && xcb_get_property_value_length(r) >= 4)
        memcpy(&flags, xcb_get_property_value(r), 4);
    free(r);
    bool urgent = flags & (1u << 8);
    if (urgent == w->urgent)
        return;
    w->urgent = urgent;
    struct bh_gui_window_flags f = { urgent ? BH_GUI_WINDOW_FLAG_DEMANDS_ATTENTION : 0,
                                     urgent ? 0 : BH_GUI_WINDOW_FLAG_DEMANDS_ATTENTION };
    send_msg(BH_GUI_MSG_WINDOW_FLAGS, w->id, &f, sizeof f, -1);
}

/* Sends an icon of sw x sh ARGB pixels, scaled down to fit BH_GUI_ICON_MAX (nearest
 * pixel, aspect kept) when larger. */
static void send_icon_pixels(struct awin *w, const uint32_t *src, uint32_t sw, uint32_t sh)
{
    uint32_t dw = sw, dh = sh;
    if (sw > BH_GUI_ICON_MAX || sh > BH_GUI_ICON_MAX) {
        if (sw >= sh)
            dw = BH_GUI_ICON_MAX, dh = (uint32_t)((uint64_t)sh * BH_GUI_ICON_MAX / sw);
        else
            dh = BH_GUI_ICON_MAX, dw = (uint32_t)((uint64_t)sw * BH_GUI_ICON_MAX / sh);
        if (dw == 0) dw = 1;
        if (dh == 0) dh = 1;
    }
    static uint8_t msg[BH_GUI_ICON_MAX_LEN];
    struct bh_gui_window_icon_hdr ih = { dw, dh };
    memcpy(msg, &ih, sizeof ih);
    for (uint32_t y = 0; y < dh; y++)
        for (uint32_t x = 0; x < dw; x++) {
            uint32_t p = src[(size_t)(y * sh / dh) * sw + x * sw / dw];
            memcpy(msg + sizeof ih + 4 * ((size_t)y * dw + x), &p, 4);
        }
    send_msg(BH_GUI_MSG_WINDOW_ICON, w->id, msg, sizeof ih + (size_t)dw * dh * 4, -1);
}

#define ICON_SIDE_MAX 1024u /* Qubes' icon-sender reads icons up to 1024x1024 */

/* Bit (x, y) of a depth-1 ZPixmap image of `stride` bytes a row (LSB first, as X
 * servers on this architecture send it and as Qubes' icon-sender reads it). */
static bool bit_at(const uint8_t *d, size_t len, size_t stride, uint32_t x, uint32_t y)
{
    size_t o = (size_t)y * stride + x / 8;
    return o < len && ((d[o] >> (x % 8)) & 1);
}

/* An old-style icon (ICCCM WM_HINTS icon pixmap and mask, e.g. xterm's and xeyes'), as
 * Qubes' icon-sender reads it: depth 24 as it is, depth 1 as grey on transparent, the
 * mask (depth 1) as alpha. Returns malloc'd pixels, or NULL. */
static uint32_t *legacy_icon(struct awin *w, uint32_t *ow, uint32_t *oh)
{
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        A.x, xcb_get_property(A.x, 0, w->id, XCB_ATOM_WM_HINTS, XCB_ATOM_WM_HINTS, 0, 9), NULL);
    uint32_t hints[9] = { 0 };
    if (r && r->format == 32 && xcb_get_property_value_length(r) >= 9 * 4)
        memcpy(hints, xcb_get_property_value(r), sizeof hints);
    free(r);
    if (!(hints[0] & (1u << 2)) || !hints[3]) /* IconPixmapHint */
        return NULL;
    xcb_get_geometry_reply_t *g = xcb_get_geometry_reply(A.x, xcb_get_geometry(A.x, hints[3]), NULL);
    if (!g || (g->depth != 1 && g->depth != 24) || !g->width || !g->height || g->width > ICON_SIDE_MAX ||
        g->height > ICON_SIDE_MAX) {
        free(g);
        return NULL;
    }
    uint32_t iw = g->width, ih = g->height, depth = g->depth;
    free(g);
    xcb_get_image_reply_t *im = xcb_get_image_reply(
        A.x, xcb_get_image(A.x, XCB_IMAGE_FORMAT_Z_PIXMAP, hints[3], 0, 0, (uint16_t)iw, (uint16_t)ih, ~0u), NULL);
    if (!im)
        return NULL;
    const uint8_t *d = xcb_get_image_data(im);
    size_t len = (size_t)xcb_get_image_data_length(im), stride = len / ih;
    uint32_t *px = malloc((size_t)iw * ih * 4);
    if (!px || (depth == 24 && stride < (size_t)iw * 4)) {
        free(px);
        free(im);
        return NULL;
    }
    for (uint32_t y = 0; y < ih; y++)
        for (uint32_t x = 0; x < iw; x++) {
            uint32_t p;
            if (depth == 24) {
                memcpy(&p, d + (size_t)y * stride + (size_t)x * 4, 4);
                p |= 0xff000000u;
            } else {
                p = bit_at(d, len, stride, x, y) ? 0xff7f7f7fu : 0;
            }
            px[(size_t)y * iw + x] = p;
        }
    free(im);
    if ((hints[0] & (1u << 5)) && hints[7]) { /* IconMaskHint */
        g = xcb_get_geometry_reply(A.x, xcb_get_geometry(A.x, hints[7]), NULL);
        if (g && g->depth == 1 && g->width == iw && g->height == ih) {
            im = xcb_get_image_reply(A.x, xcb_get_image(A.x, XCB_IMAGE_FORMAT_Z_PIXMAP, hints[7], 0, 0, (uint16_t)iw,
                                                        (uint16_t)ih, ~0u), NULL);
            if (im) {
                d = xcb_get_image_data(im);
                len = (size_t)xcb_get_image_data_length(im);
                stride = len / ih;
                for (uint32_t y = 0; y < ih; y++)
                    for (uint32_t x = 0; x < iw; x++)
                        if (!bit_at(d, len, stride, x, y))
                            px[(size_t)y * iw + x] &= 0x00ffffffu;
                free(im);
            }
        }
        free(g);
    }
    *ow = iw;
    *oh = ih;
    return px;
}

/* The window's icon (as Qubes' icon-sender): of the sizes _NET_WM_ICON offers, the
 * largest that fits BH_GUI_ICON_MAX, else the smallest, scaled down; without one, the
 * old-style WM_HINTS icon pixmap. */
#define ICON_READ_MAX (2u + ICON_SIDE_MAX * ICON_SIDE_MAX) /* longs */
static void send_icon(struct awin *w)
{
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        A.x, xcb_get_property(A.x, 0, w->id, A.a_net_wm_icon, XCB_ATOM_CARDINAL, 0, ICON_READ_MAX), NULL);
    size_t n = r && r->format == 32 ? (size_t)xcb_get_property_value_length(r) / 4 : 0;
    const uint32_t *v = r ? xcb_get_property_value(r) : NULL;
    size_t best = SIZE_MAX, i = 0;
    uint64_t best_area = 0;
    bool best_fits = false;
    while (i + 2 <= n) {
        uint64_t iw = v[i], ih = v[i + 1];
        if (iw == 0 || ih == 0 || iw * ih > n - i - 2)
            break;
        bool fits = iw <= BH_GUI_ICON_MAX && ih <= BH_GUI_ICON_MAX;
        if (best == SIZE_MAX || (fits && (!best_fits || iw * ih > best_area)) ||
            (!fits && !best_fits && iw * ih < best_area))
            best = i, best_area = iw * ih, best_fits = fits;
        i += 2 + iw * ih;
    }
    if (best != SIZE_MAX) {
        send_icon_pixels(w, v + best + 2, v[best], v[best + 1]);
    } else {
        uint32_t lw, lh;
        uint32_t *px = legacy_icon(w, &lw, &lh);
        if (px)
            send_icon_pixels(w, px, lw, lh);
        free(px);
    }
    free(r);
}

/* An application's fullscreen wish (EWMH): the _NET_WM_STATE it sets before mapping, or
 * the _NET_WM_STATE client message it sends to the root window afterwards, becomes
 * Qubes' WINDOW_FLAGS FULLSCREEN; the daemon decides what happens. */
static void send_fullscreen(struct awin *w, bool on)
{
    if (on == w->fullscreen)
        return;
    w->fullscreen = on;
    struct bh_gui_window_flags f = { on ? BH_GUI_WINDOW_FLAG_FULLSCREEN : 0, on ? 0 : BH_GUI_WINDOW_FLAG_FULLSCREEN };
    send_msg(BH_GUI_MSG_WINDOW_FLAGS, w->id, &f, sizeof f, -1);
}

/* The daemon's answer (Qubes' daemon sends WINDOW_FLAGS when the window manager acks
 * a state): the application's _NET_WM_STATE says fullscreen exactly while the daemon
 * shows it so (or as the maximise that stands in for it), which is how an EWMH
 * application learns that its request was granted and when it ended. */
static void apply_daemon_flags(struct awin *w, const struct bh_gui_window_flags *f)
{
    if (!((f->flags_set | f->flags_unset) & BH_GUI_WINDOW_FLAG_FULLSCREEN))
        return;
    bool on = f->flags_set & BH_GUI_WINDOW_FLAG_FULLSCREEN;
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        A.x, xcb_get_property(A.x, 0, w->id, A.a_net_wm_state, XCB_ATOM_ATOM, 0, 32), NULL);
    xcb_atom_t st[33];
    uint32_t n = 0;
    if (r && r->format == 32) {
        const xcb_atom_t *a = xcb_get_property_value(r);
        int have = xcb_get_property_value_length(r) / 4;
        for (int i = 0; i < have && n < 32; i++)
            if (a[i] != A.a_state_fullscreen)
                st[n++] = a[i];
    }
    free(r);
    if (on)
        st[n++] = A.a_state_fullscreen;
    w->fullscreen = on; /* what the daemon now shows: no request goes back for it */
    xcb_change_property(A.x, XCB_PROP_MODE_REPLACE, w->id, A.a_net_wm_state, XCB_ATOM_ATOM, 32, n, st);
}

static bool wants_fullscreen(struct awin *w)
{
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        A.x, xcb_get_property(A.x, 0, w->id, A.a_net_wm_state, XCB_ATOM_ATOM, 0, 32), NULL);
    bool on = false;
    if (r && r->format == 32) {
        const xcb_atom_t *a = xcb_get_property_value(r);
        for (int i = 0; i < xcb_get_property_value_length(r) / 4; i++)
            on |= a[i] == A.a_state_fullscreen;
    }
    free(r);
    return on;
}

static xcb_window_t transient_for(struct awin *w)
{
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        A.x, xcb_get_property(A.x, 0, w->id, XCB_ATOM_WM_TRANSIENT_FOR, XCB_ATOM_WINDOW, 0, 1), NULL);
    xcb_window_t t = 0;
    if (r && xcb_get_property_value_length(r) == 4)
        memcpy(&t, xcb_get_property_value(r), 4);
    free(r);
    return t;
}

static void send_create(struct awin *w)
{
    struct bh_gui_create c = { (uint32_t)w->x, (uint32_t)w->y, w->w, w->h, 0, w->or };
    send_msg(BH_GUI_MSG_CREATE, w->id, &c, sizeof c, -1);
}

static void send_map(struct awin *w)
{
    send_title(w);
    send_class(w);
    send_hints(w);
    send_icon(w);
    struct bh_gui_map_info m = { transient_for(w), w->or };
    send_msg(BH_GUI_MSG_MAP, w->id, &m, sizeof m, -1);
    w->fullscreen = false;
    if (wants_fullscreen(w))
        send_fullscreen(w, true);
    new_buffer(w);
}

static struct awin *add_window(xcb_window_t id, int32_t x, int32_t y, uint32_t wd, uint32_t ht, uint16_t bw, bool or)
{
    if (find(id) || id == A.helper)
        return NULL;
    struct awin *nw = realloc(A.w, sizeof *nw * (A.n + 1));
    if (!nw)
        return NULL;
    A.w = nw;
    struct awin *w = &A.w[A.n++];
    memset(w, 0, sizeof *w);
    w->id = id;
    w->x = x, w->y = y, w->w = wd + 2u * bw, w->h = ht + 2u * bw, w->bw = bw;
    w->or = or;
    w->memfd = -1;
    xcb_get_window_attributes_reply_t *a =
        xcb_get_window_attributes_reply(A.x, xcb_get_window_attributes(A.x, id), NULL);
    w->input_only = a && a->_class == XCB_WINDOW_CLASS_INPUT_ONLY;
    free(a);
    uint32_t mask = XCB_EVENT_MASK_PROPERTY_CHANGE;
    xcb_change_window_attributes(A.x, id, XCB_CW_EVENT_MASK, &mask);
    if (!w->input_only) {
        w->dmg = xcb_generate_id(A.x);
        xcb_damage_create(A.x, w->dmg, id, XCB_DAMAGE_REPORT_LEVEL_BOUNDING_BOX);
    }
    send_create(w);
    return w;
}

/* The qube's system tray (Qubes' agent is one too): an application's icon asks to be
 * docked (SYSTEM_TRAY_REQUEST_DOCK to the owner of _NET_SYSTEM_TRAY_S0); it is
 * reparented into an embedder window of ours, a top-level like any other, which the
 * daemon is told to DOCK into the desktop's tray before it is mapped. The embedder's
 * pixels (the icon's, through the composite pixmap) and input go the usual way. */
static void dock_request(xcb_window_t icon)
{
    if (!icon || icon == A.helper)
        return;
    xcb_get_geometry_reply_t *g = xcb_get_geometry_reply(A.x, xcb_get_geometry(A.x, icon), NULL);
    if (!g)
        return;
    uint32_t w = g->width ? g->width : 24, h = g->height ? g->height : 24;
    free(g);
    if (w > 256 || h > 256) /* no tray icon is that large */
        w = h = 24;
    for (unsigned i = 0; i < A.n; i++)
        if (A.w[i].icon == icon)
            return; /* docked already */
    struct awin *old = find(icon);
    if (old)
        remove_window(old); /* it stops being a window of its own */
    xcb_window_t emb = xcb_generate_id(A.x);
    uint32_t vals[] = { A.screen->white_pixel, XCB_EVENT_MASK_SUBSTRUCTURE_NOTIFY };
    xcb_create_window(A.x, XCB_COPY_FROM_PARENT, emb, A.screen->root, 0, 0, (uint16_t)w, (uint16_t)h, 0,
                      XCB_WINDOW_CLASS_INPUT_OUTPUT, XCB_COPY_FROM_PARENT, XCB_CW_BACK_PIXEL | XCB_CW_EVENT_MASK, vals);
    struct awin *e = add_window(emb, 0, 0, w, h, 0, false); /* CREATE */
    if (!e)
        return;
    e->icon = icon;
    send_msg(BH_GUI_MSG_DOCK, emb, NULL, 0, -1);
    xcb_reparent_window(A.x, icon, emb, 0, 0);
    xcb_map_window(A.x, icon);
    xcb_map_window(A.x, emb); /* MAP, and its buffer, once mapped */
    xcb_client_message_event_t m = { .response_type = XCB_CLIENT_MESSAGE, .format = 32, .window = icon,
                                     .type = A.a_xembed };
    m.data.data32[0] = XCB_CURRENT_TIME;
    m.data.data32[1] = 0; /* XEMBED_EMBEDDED_NOTIFY */
    m.data.data32[3] = emb;
    xcb_send_event(A.x, 0, icon, XCB_EVENT_MASK_NO_EVENT, (const char *)&m);
}

static void remove_window(struct awin *w)
{
    drop_buffer(w);
    if (w->dmg)
        xcb_damage_destroy(A.x, w->dmg);
    send_msg(BH_GUI_MSG_DESTROY, w->id, NULL, 0, -1);
    size_t i = (size_t)(w - A.w);
    memmove(&A.w[i], &A.w[i + 1], sizeof *w * (A.n - i - 1));
    A.n--;
}

/* After (re)connecting: tell the daemon about every window there is. */
static void announce_all(void)
{
    xcb_query_tree_reply_t *t = xcb_query_tree_reply(A.x, xcb_query_tree(A.x, A.screen->root), NULL);
    if (!t)
        return;
    xcb_window_t *kids = xcb_query_tree_children(t);
    for (int i = 0; i < xcb_query_tree_children_length(t); i++) {
        struct awin *w = find(kids[i]);
        if (w) {
            drop_buffer(w);
            send_create(w);
        } else {
            xcb_get_geometry_reply_t *g = xcb_get_geometry_reply(A.x, xcb_get_geometry(A.x, kids[i]), NULL);
            xcb_get_window_attributes_reply_t *a =
                xcb_get_window_attributes_reply(A.x, xcb_get_window_attributes(A.x, kids[i]), NULL);
            if (g && a)
                w = add_window(kids[i], g->x, g->y, g->width, g->height, g->border_width, a->override_redirect);
            if (w)
                w->mapped = a->map_state != XCB_MAP_STATE_UNMAPPED;
            free(g);
            free(a);
        }
        if (w && w->mapped)
            send_map(w);
    }
    free(t);
}

static void x_event(xcb_generic_event_t *ev)
{
    uint8_t type = ev->response_type & 0x7f;
    if (A.xfixes_event && type == A.xfixes_event + XCB_XFIXES_CURSOR_NOTIFY) {
        cursor_changed(((xcb_xfixes_cursor_notify_event_t *)ev)->name);
        return;
    }
    if (type == A.damage_event + XCB_DAMAGE_NOTIFY) {
        xcb_damage_notify_event_t *e = (void *)ev;
        xcb_damage_subtract(A.x, e->damage, XCB_NONE, XCB_NONE);
        struct awin *w = find(e->drawable);
        if (!w)
            return;
        /* area is relative to the window's origin inside its border */
        int32_t x0 = e->area.x + w->bw, y0 = e->area.y + w->bw;
        int32_t x1 = x0 + e->area.width, y1 = y0 + e->area.height;
        if (!w->dirty) {
            w->dirty = true;
            w->dx0 = x0, w->dy0 = y0, w->dx1 = x1, w->dy1 = y1;
        } else {
            if (x0 < w->dx0) w->dx0 = x0;
            if (y0 < w->dy0) w->dy0 = y0;
            if (x1 > w->dx1) w->dx1 = x1;
            if (y1 > w->dy1) w->dy1 = y1;
        }
        return;
    }
    switch (type) {
    case XCB_CREATE_NOTIFY: {
        xcb_create_notify_event_t *e = (void *)ev;
        if (e->parent == A.screen->root)
            add_window(e->window, e->x, e->y, e->width, e->height, e->border_width, e->override_redirect);
        break;
    }
    case XCB_DESTROY_NOTIFY: {
        xcb_destroy_notify_event_t *e = (void *)ev;
        struct awin *w = find(e->window);
        if (w)
            remove_window(w);
        for (unsigned i = 0; i < A.n; i++)
            if (A.w[i].icon == e->window) { /* a tray icon went: its embedder goes too */
                A.w[i].icon = 0;
                xcb_destroy_window(A.x, A.w[i].id);
            }
        break;
    }
    case XCB_REPARENT_NOTIFY: {
        /* a window of ours that leaves the root (an icon docked in another tray, a
         * window manager's frame) is no window of its own any more */
        xcb_reparent_notify_event_t *e = (void *)ev;
        struct awin *w = find(e->window);
        if (w && e->parent != A.screen->root)
            remove_window(w);
        break;
    }
    case XCB_MAP_NOTIFY: {
        xcb_map_notify_event_t *e = (void *)ev;
        struct awin *w = find(e->window);
        if (w && !w->mapped) {
            w->mapped = true;
            w->or = e->override_redirect;
            send_map(w);
        }
        break;
    }
    case XCB_UNMAP_NOTIFY: {
        xcb_unmap_notify_event_t *e = (void *)ev;
        struct awin *w = find(e->window);
        if (w && w->mapped) {
            w->mapped = false;
            drop_buffer(w);
            send_msg(BH_GUI_MSG_UNMAP, w->id, NULL, 0, -1);
        }
        break;
    }
    case XCB_CONFIGURE_NOTIFY: {
        xcb_configure_notify_event_t *e = (void *)ev;
        struct awin *w = find(e->window);
        if (!w)
            break;
        uint32_t nw = e->width + 2u * e->border_width, nh = e->height + 2u * e->border_width;
        bool resized = nw != w->w || nh != w->h;
        w->x = e->x, w->y = e->y, w->w = nw, w->h = nh, w->bw = e->border_width;
        w->or = e->override_redirect;
        if (!(w->x == w->want_x && w->y == w->want_y && w->w == w->want_w && w->h == w->want_h)) {
            struct bh_gui_configure c = { (uint32_t)w->x, (uint32_t)w->y, w->w, w->h, w->or };
            send_msg(BH_GUI_MSG_CONFIGURE, w->id, &c, sizeof c, -1);
        }
        if (resized && w->mapped)
            new_buffer(w);
        break;
    }
    case XCB_PROPERTY_NOTIFY: {
        xcb_property_notify_event_t *e = (void *)ev;
        struct awin *w = find(e->window);
        if (!w || !w->mapped)
            break;
        if (e->atom == XCB_ATOM_WM_NAME || e->atom == A.a_net_wm_name)
            send_title(w);
        else if (e->atom == XCB_ATOM_WM_CLASS)
            send_class(w);
        else if (e->atom == XCB_ATOM_WM_NORMAL_HINTS)
            send_hints(w);
        else if (e->atom == XCB_ATOM_WM_HINTS) {
            send_urgency(w);
            send_icon(w); /* the icon pixmap may have changed */
        }
        else if (e->atom == A.a_net_wm_icon)
            send_icon(w);
        break;
    }
    case XCB_CLIENT_MESSAGE: {
        xcb_client_message_event_t *e = (void *)ev;
        if (e->window == A.helper && e->type == A.a_tray_opcode && e->format == 32) {
            if (e->data.data32[1] == 0) /* SYSTEM_TRAY_REQUEST_DOCK */
                dock_request(e->data.data32[2]);
            break;
        }
        struct awin *w = find(e->window);
        if (!w || !w->mapped || e->type != A.a_net_wm_state || e->format != 32)
            break;
        uint32_t action = e->data.data32[0];
        if (e->data.data32[1] != A.a_state_fullscreen && e->data.data32[2] != A.a_state_fullscreen)
            break;
        send_fullscreen(w, action == 1 ? true : action == 0 ? false : !w->fullscreen);
        break;
    }
    case XCB_SELECTION_NOTIFY: {
        /* the qube's clipboard, asked for by the daemon's Ctrl+Shift+C */
        xcb_selection_notify_event_t *e = (void *)ev;
        uint8_t *data = NULL;
        size_t len = 0;
        xcb_get_property_reply_t *r = NULL;
        if (e->property != XCB_NONE) {
            r = xcb_get_property_reply(A.x, xcb_get_property(A.x, 1, A.helper, A.a_prop, XCB_ATOM_ANY, 0,
                                                              BH_GUI_MAX_CLIPBOARD / 4 + 1), NULL);
            if (r) {
                data = xcb_get_property_value(r);
                len = (size_t)xcb_get_property_value_length(r);
                if (len > BH_GUI_MAX_CLIPBOARD)
                    len = BH_GUI_MAX_CLIPBOARD; /* as Qubes: the excess is cut */
            }
        }
        send_msg(BH_GUI_MSG_CLIPBOARD_DATA, 0, data, len, -1);
        free(r);
        break;
    }
    case XCB_SELECTION_REQUEST: {
        /* an application in the qube pastes what the daemon gave us */
        xcb_selection_request_event_t *e = (void *)ev;
        xcb_selection_notify_event_t n = { .response_type = XCB_SELECTION_NOTIFY, .time = e->time,
                                           .requestor = e->requestor, .selection = e->selection,
                                           .target = e->target, .property = XCB_NONE };
        xcb_atom_t prop = e->property ? e->property : e->target;
        if (e->target == A.a_targets) {
            xcb_atom_t t[] = { A.a_targets, A.a_utf8, XCB_ATOM_STRING };
            xcb_change_property(A.x, XCB_PROP_MODE_REPLACE, e->requestor, prop, XCB_ATOM_ATOM, 32, 3, t);
            n.property = prop;
        } else if (e->target == A.a_utf8 || e->target == XCB_ATOM_STRING) {
            xcb_change_property(A.x, XCB_PROP_MODE_REPLACE, e->requestor, prop, e->target, 8,
                                (uint32_t)A.cliplen, A.clip ? (void *)A.clip : (void *)"");
            n.property = prop;
        }
        xcb_send_event(A.x, 0, e->requestor, 0, (const char *)&n);
        break;
    }
    default:
        break;
    }
}

/* X cursor font glyph names (X11/cursorfont.h order; glyph = 2 * index) */
static const char *const cursor_names[] = {
    "X_cursor", "arrow", "based_arrow_down", "based_arrow_up", "boat", "bogosity", "bottom_left_corner",
    "bottom_right_corner", "bottom_side", "bottom_tee", "box_spiral", "center_ptr", "circle", "clock",
    "coffee_mug", "cross", "cross_reverse", "crosshair", "diamond_cross", "dot", "dotbox", "double_arrow",
    "draft_large", "draft_small", "draped_box", "exchange", "fleur", "gobbler", "gumby", "hand1", "hand2",
    "heart", "icon", "iron_cross", "left_ptr", "left_side", "left_tee", "leftbutton", "ll_angle", "lr_angle",
    "man", "middlebutton", "mouse", "pencil", "pirate", "plus", "question_arrow", "right_ptr", "right_side",
    "right_tee", "rightbutton", "rtl_logo", "sailboat", "sb_down_arrow", "sb_h_double_arrow", "sb_left_arrow",
    "sb_right_arrow", "sb_up_arrow", "sb_v_double_arrow", "shuttle", "sizing", "spider", "spraycan", "star",
    "target", "tcross", "top_left_arrow", "top_left_corner", "top_right_corner", "top_side", "top_tee", "trek",
    "ul_angle", "umbrella", "ur_angle", "watch", "xterm",
};

/* The names browsers and CSS use (Chromium's cursor loader asks themes for these), and
 * the cursor-font glyph Qubes' agent shows for each; a name without one is the default. */
static const struct { const char *css, *glyph; } cursor_aliases[] = {
    { "pointer", "hand2" }, { "grabbing", "hand2" }, { "all-scroll", "fleur" }, { "v-scroll", "fleur" },
    { "h-scroll", "fleur" }, { "col-resize", "sb_h_double_arrow" }, { "row-resize", "sb_v_double_arrow" },
    { "ew-resize", "sb_h_double_arrow" }, { "ns-resize", "sb_v_double_arrow" }, { "n-resize", "top_side" },
    { "e-resize", "right_side" }, { "s-resize", "bottom_side" }, { "w-resize", "left_side" },
    { "ne-resize", "top_right_corner" }, { "nw-resize", "top_left_corner" }, { "se-resize", "bottom_right_corner" },
    { "sw-resize", "bottom_left_corner" }, { "dnd-none", "hand2" }, { "dnd-move", "hand2" },
    { "dnd-copy", "hand2" }, { "dnd-link", "hand2" },
};

static uint32_t cursor_by_name(const char *s, int n)
{
    for (size_t i = 0; i < sizeof cursor_aliases / sizeof *cursor_aliases; i++)
        if ((int)strlen(cursor_aliases[i].css) == n && !memcmp(cursor_aliases[i].css, s, (size_t)n)) {
            s = cursor_aliases[i].glyph;
            n = (int)strlen(s);
            break;
        }
    for (size_t i = 0; i < sizeof cursor_names / sizeof *cursor_names; i++)
        if ((int)strlen(cursor_names[i]) == n && !memcmp(cursor_names[i], s, (size_t)n))
            return BH_GUI_CURSOR_X11 + 2 * (uint32_t)i;
    return BH_GUI_CURSOR_DEFAULT;
}

/* The qube's current cursor (XFIXES names it when a cursor theme made it) as a
 * cursor-font glyph for the daemon; anything else (an image the application drew
 * itself) is the default cursor: the protocol has no images, as Qubes'. */
static void cursor_changed(xcb_atom_t name)
{
    uint32_t c = BH_GUI_CURSOR_DEFAULT;
    xcb_get_atom_name_reply_t *r = name ? xcb_get_atom_name_reply(A.x, xcb_get_atom_name(A.x, name), NULL) : NULL;
    if (r) {
        c = cursor_by_name(xcb_get_atom_name_name(r), xcb_get_atom_name_name_length(r));
        free(r);
    }
    if (A.pointer_win && find(A.pointer_win))
        send_msg(BH_GUI_MSG_CURSOR, A.pointer_win, &(struct bh_gui_cursor){ c }, sizeof(struct bh_gui_cursor), -1);
}

static void fake(uint8_t type, uint8_t detail, int16_t x, int16_t y)
{
    xcb_test_fake_input(A.x, type, detail, XCB_CURRENT_TIME, A.screen->root, x, y, 0);
}

static void focus(struct awin *w)
{
    if (A.focused == w->id)
        return;
    A.focused = w->id;
    uint32_t above = XCB_STACK_MODE_ABOVE;
    xcb_configure_window(A.x, w->id, XCB_CONFIG_WINDOW_STACK_MODE, &above);
    xcb_set_input_focus(A.x, XCB_INPUT_FOCUS_POINTER_ROOT, w->id, XCB_CURRENT_TIME);
}

/* The keyboard layout the daemon chose (Qubes: QubesDB's /keyboard-layout, applied by
 * qubes-keymap.sh with setxkbmap). Checked again here although the daemon is trusted:
 * the parts become setxkbmap's arguments (no shell). */
static void set_layout(const uint8_t *body)
{
    char l[BH_GUI_LAYOUT_MAX], v[BH_GUI_LAYOUT_MAX], o[BH_GUI_LAYOUT_MAX], disp[16];
    bh_error err;
    if (bh_gui_parse_keyboard_layout((const char *)body, BH_GUI_LAYOUT_MAX, l, v, o, &err) < 0) {
        bh_warn("keyboard layout: %s", err.msg);
        return;
    }
    snprintf(disp, sizeof disp, ":%d", A.display);
    pid_t pid = fork();
    if (pid == 0) {
        /* -option "" clears the options of the previous layout first */
        execlp("setxkbmap", "setxkbmap", "-display", disp, "-layout", l, "-variant", v, "-option", "",
               o[0] ? "-option" : (char *)NULL, o, (char *)NULL);
        _exit(127);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bh_warn("setxkbmap %s+%s+%s failed (status %d)", l, v, o, st);
    else
        bh_info("keyboard layout %s+%s+%s", l, v, o);
}

/* Keys the qube holds down that the host does not (released while another window had
 * the focus) are released here, as Qubes' agent does. */
static void keymap_notify(const uint8_t *remote)
{
    xcb_query_keymap_reply_t *r = xcb_query_keymap_reply(A.x, xcb_query_keymap(A.x), NULL);
    if (!r)
        return;
    for (int k = 8; k < 256; k++) {
        bool local = (r->keys[k / 8] >> (k % 8)) & 1, host = (remote[k / 8] >> (k % 8)) & 1;
        if (local && !host)
            fake(XCB_KEY_RELEASE, (uint8_t)k, 0, 0);
    }
    free(r);
}

static void daemon_message(const struct bh_gui_hdr *h, const uint8_t *body)
{
    struct awin *w = find(h->window);
    switch (h->type) {
    case BH_GUI_MSG_KEYPRESS: {
        struct bh_gui_keypress k;
        memcpy(&k, body, sizeof k);
        if (w)
            focus(w);
        if ((k.type == XCB_KEY_PRESS || k.type == XCB_KEY_RELEASE) && k.keycode >= 8 && k.keycode <= 255)
            fake((uint8_t)k.type, (uint8_t)k.keycode, 0, 0);
        break;
    }
    case BH_GUI_MSG_BUTTON: {
        struct bh_gui_button b;
        memcpy(&b, body, sizeof b);
        if (!w || b.button == 0 || b.button > 15 || (b.type != XCB_BUTTON_PRESS && b.type != XCB_BUTTON_RELEASE))
            break;
        if (b.type == XCB_BUTTON_PRESS)
            focus(w);
        fake(XCB_MOTION_NOTIFY, 0, (int16_t)(w->x + (int32_t)b.x), (int16_t)(w->y + (int32_t)b.y));
        fake((uint8_t)b.type, (uint8_t)b.button, 0, 0);
        break;
    }
    case BH_GUI_MSG_MOTION: {
        struct bh_gui_motion m;
        memcpy(&m, body, sizeof m);
        if (w) {
            A.pointer_win = w->id;
            fake(XCB_MOTION_NOTIFY, 0, (int16_t)(w->x + (int32_t)m.x), (int16_t)(w->y + (int32_t)m.y));
        }
        break;
    }
    case BH_GUI_MSG_FOCUS: {
        struct bh_gui_focus f;
        memcpy(&f, body, sizeof f);
        if (w && f.type == XCB_FOCUS_IN)
            focus(w);
        else if (w && f.type == XCB_FOCUS_OUT && A.focused == w->id)
            A.focused = 0;
        break;
    }
    case BH_GUI_MSG_CONFIGURE: {
        struct bh_gui_configure c;
        memcpy(&c, body, sizeof c);
        if (!w || c.width < 2u * w->bw + 1 || c.height < 2u * w->bw + 1 || c.width > BH_GUI_MAX_WIDTH ||
            c.height > BH_GUI_MAX_HEIGHT)
            break;
        w->want_x = (int32_t)c.x, w->want_y = (int32_t)c.y, w->want_w = c.width, w->want_h = c.height;
        if (w->icon) { /* the desktop's tray sized the icon: the icon fills its embedder */
            uint32_t iv[] = { 0, 0, c.width, c.height };
            xcb_configure_window(A.x, w->icon,
                                 XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y | XCB_CONFIG_WINDOW_WIDTH |
                                     XCB_CONFIG_WINDOW_HEIGHT, iv);
        }
        uint32_t v[] = { c.x, c.y, c.width - 2u * w->bw, c.height - 2u * w->bw };
        xcb_configure_window(A.x, w->id,
                             XCB_CONFIG_WINDOW_X | XCB_CONFIG_WINDOW_Y | XCB_CONFIG_WINDOW_WIDTH |
                                 XCB_CONFIG_WINDOW_HEIGHT, v);
        break;
    }
    case BH_GUI_MSG_CLOSE: {
        if (!w)
            break;
        xcb_get_property_reply_t *r = xcb_get_property_reply(
            A.x, xcb_get_property(A.x, 0, w->id, A.a_wm_protocols, XCB_ATOM_ATOM, 0, 32), NULL);
        bool del = false;
        if (r) {
            xcb_atom_t *a = xcb_get_property_value(r);
            for (int i = 0; i < xcb_get_property_value_length(r) / 4; i++)
                del |= a[i] == A.a_wm_delete;
            free(r);
        }
        if (del) {
            xcb_client_message_event_t m = { .response_type = XCB_CLIENT_MESSAGE, .format = 32, .window = w->id,
                                             .type = A.a_wm_protocols };
            m.data.data32[0] = A.a_wm_delete;
            m.data.data32[1] = XCB_CURRENT_TIME;
            xcb_send_event(A.x, 0, w->id, 0, (const char *)&m);
        } else {
            xcb_kill_client(A.x, w->id);
        }
        break;
    }
    case BH_GUI_MSG_CLIPBOARD_REQ:
        xcb_convert_selection(A.x, A.helper, A.a_clipboard, A.a_utf8, A.a_prop, XCB_CURRENT_TIME);
        break;
    case BH_GUI_MSG_CLIPBOARD_DATA: {
        free(A.clip);
        A.cliplen = h->untrusted_len;
        A.clip = malloc(A.cliplen ? A.cliplen : 1);
        if (!A.clip) {
            A.cliplen = 0;
            break;
        }
        memcpy(A.clip, body, A.cliplen);
        xcb_set_selection_owner(A.x, A.helper, A.a_clipboard, XCB_CURRENT_TIME);
        xcb_set_selection_owner(A.x, A.helper, XCB_ATOM_PRIMARY, XCB_CURRENT_TIME);
        break;
    }
    case BH_GUI_MSG_KEYMAP_NOTIFY:
        keymap_notify(body);
        break;
    case BH_GUI_MSG_KEYBOARD_LAYOUT:
        set_layout(body);
        break;
    case BH_GUI_MSG_WINDOW_FLAGS: {
        struct bh_gui_window_flags f;
        memcpy(&f, body, sizeof f);
        if (w)
            apply_daemon_flags(w, &f);
        break;
    }
    default:
        break; /* CROSSING, MAP: nothing to do here */
    }
}

/* In a VM qube (its kernel was booted by Bulkhead's vm engine, whose command line names
 * the qube: bh.qid=) the channel to the daemon crosses the virtio-serial bridge, which
 * carries bytes and no file descriptors: the pixels go inline. BULKHEAD_GUI_INLINE=0/1
 * decides instead. */
static bool in_a_vm(void)
{
    const char *e = getenv("BULKHEAD_GUI_INLINE");
    if (e && *e)
        return strcmp(e, "0") != 0;
    char line[4096] = "";
    int fd = open("/proc/cmdline", O_RDONLY | O_CLOEXEC);
    ssize_t n = fd >= 0 ? read(fd, line, sizeof line - 1) : -1;
    if (fd >= 0)
        close(fd);
    line[n > 0 ? n : 0] = '\0';
    return !strncmp(line, "bh.qid=", 7) || strstr(line, " bh.qid=");
}

/* Inline mode: the damaged rectangle's pixels, in pieces of at most
 * BH_GUI_PIXELS_MAX_LEN bytes (bands of whole rows of the rectangle, or parts of one
 * row for a window wider than a piece). */
static void send_pixels(struct awin *w, int32_t x0, int32_t y0, int32_t x1, int32_t y1)
{
    static uint8_t msg[BH_GUI_PIXELS_MAX_LEN];
    const uint32_t room = (BH_GUI_PIXELS_MAX_LEN - sizeof(struct bh_gui_pixels_hdr)) / 4; /* pixels */
    for (int32_t y = y0; y < y1;) {
        uint32_t cols = (uint32_t)(x1 - x0) < room ? (uint32_t)(x1 - x0) : room;
        uint32_t rows = room / cols;
        if (rows > (uint32_t)(y1 - y))
            rows = (uint32_t)(y1 - y);
        for (int32_t x = x0; x < x1; x += (int32_t)cols) {
            uint32_t c = (uint32_t)(x1 - x) < cols ? (uint32_t)(x1 - x) : cols;
            struct bh_gui_pixels_hdr h = { (uint32_t)x, (uint32_t)y, c, rows };
            memcpy(msg, &h, sizeof h);
            for (uint32_t i = 0; i < rows; i++)
                memcpy(msg + sizeof h + (size_t)i * c * 4, w->map + (((size_t)y + i) * w->buf_w + (size_t)x) * 4,
                       (size_t)c * 4);
            send_msg(BH_GUI_MSG_PIXELS, w->id, msg, sizeof h + (size_t)c * rows * 4, -1);
        }
        y += (int32_t)rows;
    }
}

/* Copies damaged windows into their buffers and tells the daemon. */
static void flush_damage(void)
{
    for (unsigned i = 0; i < A.n; i++) {
        struct awin *w = &A.w[i];
        if (!w->dirty || !w->seg || !w->mapped)
            continue;
        w->dirty = false;
        int32_t x0 = w->dx0 < 0 ? 0 : w->dx0, y0 = w->dy0 < 0 ? 0 : w->dy0;
        int32_t x1 = w->dx1 > (int32_t)w->buf_w ? (int32_t)w->buf_w : w->dx1;
        int32_t y1 = w->dy1 > (int32_t)w->buf_h ? (int32_t)w->buf_h : w->dy1;
        if (x1 <= x0 || y1 <= y0)
            continue;
        /* only the damaged rows: full-width rows are contiguous in the buffer, so the
         * band lands in place at its row offset */
        xcb_shm_get_image_reply_t *r = xcb_shm_get_image_reply(
            A.x, xcb_shm_get_image(A.x, w->pix, 0, (int16_t)y0, (uint16_t)w->buf_w, (uint16_t)(y1 - y0), ~0u,
                                   XCB_IMAGE_FORMAT_Z_PIXMAP, w->seg, (uint32_t)y0 * w->buf_w * 4), NULL);
        if (!r)
            continue;
        free(r);
        if (A.inline_px) {
            send_pixels(w, x0, y0, x1, y1);
            continue;
        }
        struct bh_gui_shmimage s = { (uint32_t)x0, (uint32_t)y0, (uint32_t)(x1 - x0), (uint32_t)(y1 - y0) };
        send_msg(BH_GUI_MSG_SHMIMAGE, w->id, &s, sizeof s, -1);
    }
}

static int start_xvfb(int display, uint32_t w, uint32_t h)
{
    char sock[64];
    snprintf(sock, sizeof sock, "/tmp/.X11-unix/X%d", display);
    struct stat st;
    if (stat(sock, &st) == 0)
        return 0; /* already running (an earlier session of this agent) */
    mkdir("/tmp/.X11-unix", 01777);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        char disp[16], geom[64], fd[16];
        snprintf(disp, sizeof disp, ":%d", display);
        snprintf(geom, sizeof geom, "%ux%ux24", w, h);
        snprintf(fd, sizeof fd, "%d", p[1]);
        fcntl(p[1], F_SETFD, 0);
        int null = open("/dev/null", O_RDWR);
        dup2(null, 0);
        execlp("Xvfb", "Xvfb", disp, "-screen", "0", geom, "-nolisten", "tcp", "-noreset", "-displayfd", fd,
               (char *)NULL);
        _exit(127);
    }
    close(p[1]);
    /* Xvfb writes the number and then "\n" in a second write: read up to the newline,
     * or closing the pipe early kills it with EPIPE */
    char buf[16];
    size_t got = 0;
    bool ok = false;
    while (got < sizeof buf) {
        struct pollfd pf = { .fd = p[0], .events = POLLIN };
        if (poll(&pf, 1, 15000) <= 0)
            break;
        ssize_t n = read(p[0], buf + got, sizeof buf - got);
        if (n <= 0)
            break;
        got += (size_t)n;
        if (memchr(buf, '\n', got)) {
            ok = true;
            break;
        }
    }
    close(p[0]);
    if (!ok)
        return bh_err("Xvfb did not start"), -1;
    A.xvfb = pid;
    return 0;
}

static int open_x(int display)
{
    char disp[16];
    snprintf(disp, sizeof disp, ":%d", display);
    A.x = xcb_connect(disp, NULL);
    if (xcb_connection_has_error(A.x))
        return bh_err("cannot connect to the qube's X server %s", disp), -1;
    A.screen = xcb_setup_roots_iterator(xcb_get_setup(A.x)).data;
    const xcb_query_extension_reply_t *d = xcb_get_extension_data(A.x, &xcb_damage_id);
    if (!d || !d->present)
        return bh_err("no DAMAGE extension"), -1;
    A.damage_event = d->first_event;
    xcb_discard_reply(A.x, xcb_damage_query_version(A.x, 1, 1).sequence);
    xcb_discard_reply(A.x, xcb_composite_query_version(A.x, 0, 4).sequence);
    xcb_discard_reply(A.x, xcb_test_get_version(A.x, 2, 2).sequence);
    const xcb_query_extension_reply_t *xf = xcb_get_extension_data(A.x, &xcb_xfixes_id);
    if (xf && xf->present) {
        free(xcb_xfixes_query_version_reply(A.x, xcb_xfixes_query_version(A.x, 4, 0), NULL));
        A.xfixes_event = xf->first_event;
        xcb_xfixes_select_cursor_input(A.x, A.screen->root, XCB_XFIXES_CURSOR_NOTIFY_MASK_DISPLAY_CURSOR);
    }
    xcb_composite_redirect_subwindows(A.x, A.screen->root, XCB_COMPOSITE_REDIRECT_AUTOMATIC);
    uint32_t mask = XCB_EVENT_MASK_SUBSTRUCTURE_NOTIFY;
    xcb_change_window_attributes(A.x, A.screen->root, XCB_CW_EVENT_MASK, &mask);
    A.helper = xcb_generate_id(A.x);
    xcb_create_window(A.x, 0, A.helper, A.screen->root, -10, -10, 1, 1, 0, XCB_WINDOW_CLASS_INPUT_ONLY,
                      XCB_COPY_FROM_PARENT, 0, NULL);
    A.a_clipboard = atom("CLIPBOARD");
    A.a_utf8 = atom("UTF8_STRING");
    A.a_targets = atom("TARGETS");
    A.a_prop = atom("_BULKHEAD_CLIPBOARD");
    A.a_net_wm_name = atom("_NET_WM_NAME");
    A.a_wm_protocols = atom("WM_PROTOCOLS");
    A.a_wm_delete = atom("WM_DELETE_WINDOW");
    A.a_net_wm_icon = atom("_NET_WM_ICON");
    A.a_net_wm_state = atom("_NET_WM_STATE");
    A.a_state_fullscreen = atom("_NET_WM_STATE_FULLSCREEN");
    /* the qube's system tray: the helper window owns the selection, and says so */
    A.a_tray_selection = atom("_NET_SYSTEM_TRAY_S0");
    A.a_tray_opcode = atom("_NET_SYSTEM_TRAY_OPCODE");
    A.a_xembed = atom("_XEMBED");
    A.a_xembed_info = atom("_XEMBED_INFO");
    xcb_set_selection_owner(A.x, A.helper, A.a_tray_selection, XCB_CURRENT_TIME);
    xcb_client_message_event_t m = { .response_type = XCB_CLIENT_MESSAGE, .format = 32, .window = A.screen->root,
                                     .type = atom("MANAGER") };
    m.data.data32[0] = XCB_CURRENT_TIME;
    m.data.data32[1] = A.a_tray_selection;
    m.data.data32[2] = A.helper;
    xcb_send_event(A.x, 0, A.screen->root, XCB_EVENT_MASK_STRUCTURE_NOTIFY, (const char *)&m);
    xcb_flush(A.x);
    return 0;
}

static int handshake(int fd, struct bh_gui_xconf *xc)
{
    bh_error err;
    struct bh_gui_version v = { BH_GUI_PROTOCOL_VERSION };
    if (bh_gui_write_blocking(fd, &v, sizeof v, -1, &err) < 0)
        return -1;
    struct {
        struct bh_gui_version v;
        struct bh_gui_xconf x;
    } in;
    struct timeval tv = { 10, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (recv(fd, &in, sizeof in, MSG_WAITALL) != (ssize_t)sizeof in)
        return bh_err("daemon handshake failed"), -1;
    struct timeval none = { 0, 0 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &none, sizeof none);
    if ((in.v.version >> 16) != (BH_GUI_PROTOCOL_VERSION >> 16))
        return bh_err("daemon speaks protocol %u.%u", in.v.version >> 16, in.v.version & 0xffff), -1;
    if (in.x.w == 0 || in.x.h == 0 || in.x.w > BH_GUI_MAX_WIDTH || in.x.h > BH_GUI_MAX_HEIGHT)
        in.x.w = 1920, in.x.h = 1080;
    *xc = in.x;
    return 0;
}

/* Serves one daemon connection until it goes away. */
static void serve(int fd, int display)
{
    struct bh_gui_xconf xc;
    if (handshake(fd, &xc) < 0)
        return;
    if (!A.x) {
        A.display = display;
        if (start_xvfb(display, xc.w, xc.h) < 0 || open_x(display) < 0)
            exit(1);
    }
    bh_gui_chan_init(&A.ch, fd, false);
    A.connected = true;
    announce_all();
    flush_damage();
    xcb_flush(A.x);
    bh_error err;
    bool chan_ready = false;
    while (A.connected) {
        xcb_generic_event_t *ev;
        while ((ev = xcb_poll_for_event(A.x))) {
            x_event(ev);
            free(ev);
        }
        if (xcb_connection_has_error(A.x)) {
            bh_err("lost the qube's X server");
            exit(1);
        }
        if (chan_ready) {
            ssize_t n;
            while ((n = bh_gui_chan_fill(&A.ch, &err)) > 0) {
                struct bh_gui_hdr h;
                const uint8_t *body;
                int mfd, r;
                while ((r = bh_gui_chan_next(&A.ch, &h, &body, &mfd, &err)) == 1)
                    daemon_message(&h, body);
                if (r < 0) {
                    bh_warn("daemon: %s", err.msg);
                    A.connected = false;
                    break;
                }
            }
            if (n == 0 || n == -1)
                A.connected = false;
        }
        flush_damage();
        xcb_flush(A.x);
        /* the replies flush_damage waited for may have pulled events off the socket into
         * xcb's queue: poll() would not see them, so serve them first */
        if ((ev = xcb_poll_for_queued_event(A.x))) {
            x_event(ev);
            free(ev);
            chan_ready = false;
            continue;
        }
        struct pollfd p[2] = { { .fd = xcb_get_file_descriptor(A.x), .events = POLLIN },
                               { .fd = fd, .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            break;
        chan_ready = p[1].revents != 0;
    }
    A.connected = false;
    bh_gui_chan_release(&A.ch);
    for (unsigned i = 0; i < A.n; i++)
        drop_buffer(&A.w[i]);
    xcb_flush(A.x);
    bh_info("daemon disconnected; waiting for the next one");
}

int main(int argc, char **argv)
{
    bh_log_init("gui-agent");
    static const struct option opts[] = { { "background", no_argument, 0, 'b' },
                                          { "vchan-dir", required_argument, 0, 'v' },
                                          { "domid", required_argument, 0, 'd' },
                                          { "display", required_argument, 0, 'D' },
                                          { "set-monitor-layout", no_argument, 0, 'M' }, { 0, 0, 0, 0 } };
    const char *dir = NULL;
    int domid = -1, display = 0, o;
    bool background = false, set_layout_only = false;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'M': set_layout_only = true; break;
        case 'b': background = true; break;
        case 'v': dir = optarg; break;
        case 'd': domid = atoi(optarg); break;
        case 'D': display = atoi(optarg); break;
        default: return 2;
        }
    }
    if (set_layout_only) /* the qubes.SetMonitorLayout service (gui-monitors.c) */
        return gui_set_monitor_layout(display);
    A.inline_px = in_a_vm();
    if (!dir)
        dir = bh_vchan_dir();
    if (domid < 0)
        domid = bh_vchan_own_domain(dir);
    /* one agent per qube and display */
    char lockp[64];
    snprintf(lockp, sizeof lockp, "/tmp/.bulkhead-gui-agent.%d.lock", display);
    int lk = open(lockp, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lk < 0 || flock(lk, LOCK_EX | LOCK_NB) < 0)
        return 0; /* already running */
    bh_error err;
    int lfd = bh_vchan_listen(dir, (uint32_t)domid, 0, BH_GUI_VCHAN_PORT, &err);
    if (lfd < 0) {
        bh_err("%s", err.msg);
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    if (background) {
        /* the qrexec call that started us returns; we stay, in our own session */
        pid_t pid = fork();
        if (pid < 0)
            return 1;
        if (pid > 0)
            _exit(0);
        setsid();
        int null = open("/dev/null", O_RDWR);
        int log = open("/tmp/.bulkhead-gui-agent.log", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
        dup2(null, 0);
        dup2(null, 1);
        dup2(log >= 0 ? log : null, 2);
    }
    signal(SIGCHLD, SIG_DFL);
    for (;;) {
        int fd = bh_vchan_accept(lfd, dir, (uint32_t)domid, 0, BH_GUI_VCHAN_PORT, -1, &err);
        close(lfd);
        if (fd >= 0) {
            serve(fd, display);
            close(fd);
        } else {
            bh_warn("%s", err.msg);
            sleep(1);
        }
        lfd = bh_vchan_listen(dir, (uint32_t)domid, 0, BH_GUI_VCHAN_PORT, &err);
        if (lfd < 0) {
            bh_err("%s", err.msg);
            return 1;
        }
    }
}
