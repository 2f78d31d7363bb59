/* Parsers and checks for GUI messages (see proto.h). Pure functions on byte buffers, so
 * that fuzz/gui_msg.c can drive every one of them. */
#include "proto.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const names[] = {
    "KEYPRESS", "BUTTON", "MOTION", "CROSSING", "FOCUS", "RESIZE", "CREATE", "DESTROY", "MAP",
    "UNMAP", "CONFIGURE", "MFNDUMP", "SHMIMAGE", "CLOSE", "EXECUTE", "CLIPBOARD_REQ",
    "CLIPBOARD_DATA", "WMNAME", "KEYMAP_NOTIFY", "DOCK", "WINDOW_HINTS", "WINDOW_FLAGS",
    "WMCLASS", "WINDOW_DUMP", "CURSOR",
};

const char *bh_gui_msg_name(uint32_t type)
{
    if (type > BH_GUI_MSG_MIN && type < BH_GUI_MSG_MAX)
        return names[type - BH_GUI_MSG_MIN - 1];
    if (type == BH_GUI_MSG_KEYBOARD_LAYOUT)
        return "KEYBOARD_LAYOUT";
    if (type == BH_GUI_MSG_WINDOW_ICON)
        return "WINDOW_ICON";
    if (type == BH_GUI_MSG_PIXELS)
        return "PIXELS";
    return "unknown";
}

long bh_gui_agent_body_len(uint32_t type)
{
    switch (type) {
    case BH_GUI_MSG_CREATE: return sizeof(struct bh_gui_create);
    case BH_GUI_MSG_DESTROY: return 0;
    case BH_GUI_MSG_MAP: return sizeof(struct bh_gui_map_info);
    case BH_GUI_MSG_UNMAP: return 0;
    case BH_GUI_MSG_CONFIGURE: return sizeof(struct bh_gui_configure);
    case BH_GUI_MSG_SHMIMAGE: return sizeof(struct bh_gui_shmimage);
    case BH_GUI_MSG_WMNAME: return sizeof(struct bh_gui_wmname);
    case BH_GUI_MSG_DOCK: return 0;
    case BH_GUI_MSG_WINDOW_HINTS: return sizeof(struct bh_gui_window_hints);
    case BH_GUI_MSG_WINDOW_FLAGS: return sizeof(struct bh_gui_window_flags);
    case BH_GUI_MSG_WMCLASS: return sizeof(struct bh_gui_wmclass);
    case BH_GUI_MSG_WINDOW_DUMP: return sizeof(struct bh_gui_window_dump_hdr);
    case BH_GUI_MSG_CURSOR: return sizeof(struct bh_gui_cursor);
    default: return -1; /* MFNDUMP (Xen), EXECUTE, input messages, unknown */
    }
}

/* Our two messages of a header and then pixels (4 bytes each, at least one), up to max
 * bytes in all, for a window. */
static int check_pixel_msg(const struct bh_gui_hdr *h, size_t hl, size_t max, bh_error *err)
{
    const char *name = bh_gui_msg_name(h->type);
    if (h->untrusted_len < hl + 4 || h->untrusted_len > max || (h->untrusted_len - hl) % 4)
        return bh_fail(err, 0, "%s with length %u", name, h->untrusted_len);
    if (h->window == 0)
        return bh_fail(err, 0, "%s for window 0", name);
    return 0;
}

int bh_gui_check_agent_hdr(const struct bh_gui_hdr *h, bh_error *err)
{
    if (h->type == BH_GUI_MSG_WINDOW_ICON)
        return check_pixel_msg(h, sizeof(struct bh_gui_window_icon_hdr), BH_GUI_ICON_MAX_LEN, err);
    if (h->type == BH_GUI_MSG_PIXELS)
        return check_pixel_msg(h, sizeof(struct bh_gui_pixels_hdr), BH_GUI_PIXELS_MAX_LEN, err);
    if (h->type == BH_GUI_MSG_CLIPBOARD_DATA) {
        if (h->untrusted_len > BH_GUI_MAX_CLIPBOARD)
            return bh_fail(err, 0, "CLIPBOARD_DATA of %u bytes (limit %u)", h->untrusted_len,
                           BH_GUI_MAX_CLIPBOARD);
        return 0;
    }
    long want = bh_gui_agent_body_len(h->type);
    if (want < 0)
        return bh_fail(err, 0, "message type %u (%s) not allowed from an agent", h->type, bh_gui_msg_name(h->type));
    if (h->untrusted_len != (uint32_t)want)
        return bh_fail(err, 0, "%s with length %u (must be %ld)", bh_gui_msg_name(h->type), h->untrusted_len, want);
    /* window 0 is the agent's own (root) id only for CLIPBOARD_DATA; every other
     * message names a window */
    if (h->window == 0)
        return bh_fail(err, 0, "%s for window 0", bh_gui_msg_name(h->type));
    return 0;
}

int bh_gui_check_daemon_hdr(const struct bh_gui_hdr *h, bh_error *err)
{
    long want;
    switch (h->type) {
    case BH_GUI_MSG_KEYPRESS: want = sizeof(struct bh_gui_keypress); break;
    case BH_GUI_MSG_BUTTON: want = sizeof(struct bh_gui_button); break;
    case BH_GUI_MSG_MOTION: want = sizeof(struct bh_gui_motion); break;
    case BH_GUI_MSG_CROSSING: want = sizeof(struct bh_gui_crossing); break;
    case BH_GUI_MSG_FOCUS: want = sizeof(struct bh_gui_focus); break;
    case BH_GUI_MSG_MAP: want = sizeof(struct bh_gui_map_info); break;
    case BH_GUI_MSG_CONFIGURE: want = sizeof(struct bh_gui_configure); break;
    case BH_GUI_MSG_CLOSE: want = 0; break;
    case BH_GUI_MSG_CLIPBOARD_REQ: want = 0; break;
    case BH_GUI_MSG_KEYMAP_NOTIFY: want = sizeof(struct bh_gui_keymap_notify); break;
    case BH_GUI_MSG_WINDOW_FLAGS: want = sizeof(struct bh_gui_window_flags); break;
    case BH_GUI_MSG_KEYBOARD_LAYOUT: want = sizeof(struct bh_gui_keyboard_layout); break;
    case BH_GUI_MSG_CLIPBOARD_DATA:
        if (h->untrusted_len > BH_GUI_MAX_CLIPBOARD)
            return bh_fail(err, 0, "CLIPBOARD_DATA of %u bytes", h->untrusted_len);
        return 0;
    default: return bh_fail(err, 0, "message type %u from the daemon", h->type);
    }
    if (h->untrusted_len != (uint32_t)want)
        return bh_fail(err, 0, "%s with length %u", bh_gui_msg_name(h->type), h->untrusted_len);
    return 0;
}

static int need_len(size_t len, size_t want, const char *what, bh_error *err)
{
    if (len != want)
        return bh_fail(err, 0, "%s body of %zu bytes (must be %zu)", what, len, want);
    return 0;
}

/* The agent sends signed coordinates in uint32 fields. */
static int coord(uint32_t v, int32_t *out, const char *what, bh_error *err)
{
    int32_t s = (int32_t)v;
    if (s < -BH_GUI_MAX_COORD || s > BH_GUI_MAX_COORD)
        return bh_fail(err, 0, "%s %d out of range", what, s);
    *out = s;
    return 0;
}

static int size_ok(uint32_t w, uint32_t h, bh_error *err)
{
    if (w == 0 || h == 0 || w > BH_GUI_MAX_WIDTH || h > BH_GUI_MAX_HEIGHT)
        return bh_fail(err, 0, "window size %ux%u out of range (1..%ux1..%u)", w, h, BH_GUI_MAX_WIDTH,
                       BH_GUI_MAX_HEIGHT);
    return 0;
}

static int bool_field(uint32_t v, bool *out, bh_error *err)
{
    if (v > 1)
        return bh_fail(err, 0, "override_redirect %u is not 0 or 1", v);
    *out = v == 1;
    return 0;
}

/* CREATE and CONFIGURE carry the same placement: position, size, override_redirect. */
static int placement(uint32_t x, uint32_t y, uint32_t w, uint32_t h, uint32_t override_redirect,
                     struct bh_gui_rect *r, bool *or_out, bh_error *err)
{
    if (coord(x, &r->x, "x", err) < 0 || coord(y, &r->y, "y", err) < 0 || size_ok(w, h, err) < 0 ||
        bool_field(override_redirect, or_out, err) < 0)
        return -1;
    r->w = w;
    r->h = h;
    return 0;
}

int bh_gui_parse_create(const void *body, size_t len, struct bh_gui_rect *r, bool *override_redirect,
                        uint32_t *parent, bh_error *err)
{
    struct bh_gui_create m;
    if (need_len(len, sizeof m, "CREATE", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    if (placement(m.x, m.y, m.width, m.height, m.override_redirect, r, override_redirect, err) < 0)
        return -1;
    *parent = m.parent;
    return 0;
}

int bh_gui_parse_configure(const void *body, size_t len, struct bh_gui_rect *r, bool *override_redirect,
                           bh_error *err)
{
    struct bh_gui_configure m;
    if (need_len(len, sizeof m, "CONFIGURE", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    return placement(m.x, m.y, m.width, m.height, m.override_redirect, r, override_redirect, err);
}

int bh_gui_parse_map(const void *body, size_t len, uint32_t *transient_for, bool *override_redirect,
                     bh_error *err)
{
    struct bh_gui_map_info m;
    if (need_len(len, sizeof m, "MAP", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    if (bool_field(m.override_redirect, override_redirect, err) < 0)
        return -1;
    *transient_for = m.transient_for;
    return 0;
}

int bh_gui_parse_shmimage(const void *body, size_t len, uint32_t win_w, uint32_t win_h,
                          struct bh_gui_rect *r, bool *empty, bh_error *err)
{
    struct bh_gui_shmimage m;
    if (need_len(len, sizeof m, "SHMIMAGE", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    /* Qubes' daemon clips rather than refuses; so do we, in 64-bit arithmetic. */
    int64_t x0 = (int32_t)m.x, y0 = (int32_t)m.y;
    int64_t x1 = x0 + (int64_t)m.width, y1 = y0 + (int64_t)m.height;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > win_w) x1 = win_w;
    if (y1 > win_h) y1 = win_h;
    *empty = x1 <= x0 || y1 <= y0;
    if (*empty) {
        *r = (struct bh_gui_rect){ 0, 0, 0, 0 };
        return 0;
    }
    *r = (struct bh_gui_rect){ (int32_t)x0, (int32_t)y0, (uint32_t)(x1 - x0), (uint32_t)(y1 - y0) };
    return 0;
}

uint32_t bh_gui_window_dump_type(const void *body, size_t len)
{
    struct bh_gui_window_dump_hdr m;
    if (len < sizeof m)
        return 0;
    memcpy(&m, body, sizeof m);
    return m.type;
}

int bh_gui_parse_pixels(const void *body, size_t len, uint32_t buf_w, uint32_t buf_h, struct bh_gui_rect *r,
                        const uint8_t **pixels, bh_error *err)
{
    struct bh_gui_pixels_hdr m;
    if (len < sizeof m || len > BH_GUI_PIXELS_MAX_LEN)
        return bh_fail(err, 0, "PIXELS of %zu bytes", len);
    memcpy(&m, body, sizeof m);
    /* 64-bit: no field may wrap another */
    if (m.width == 0 || m.height == 0 || (uint64_t)m.x + m.width > buf_w || (uint64_t)m.y + m.height > buf_h)
        return bh_fail(err, 0, "PIXELS %ux%u at %u,%u outside the %ux%u buffer", m.width, m.height, m.x, m.y, buf_w,
                       buf_h);
    if ((uint64_t)m.width * m.height * 4 != len - sizeof m)
        return bh_fail(err, 0, "PIXELS %ux%u with %zu bytes of pixels", m.width, m.height, len - sizeof m);
    *r = (struct bh_gui_rect){ (int32_t)m.x, (int32_t)m.y, m.width, m.height };
    *pixels = (const uint8_t *)body + sizeof m;
    return 0;
}

int bh_gui_parse_window_dump(const void *body, size_t len, uint32_t *type, uint32_t *w, uint32_t *h, bh_error *err)
{
    struct bh_gui_window_dump_hdr m;
    if (need_len(len, sizeof m, "WINDOW_DUMP", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    if (m.type != BH_GUI_DUMP_MEMFD && m.type != BH_GUI_DUMP_INLINE)
        return bh_fail(err, 0, "WINDOW_DUMP type %u (only memfd or inline buffers)", m.type);
    *type = m.type;
    if (m.bpp != BH_GUI_BPP)
        return bh_fail(err, 0, "WINDOW_DUMP with %u bpp", m.bpp);
    if (size_ok(m.width, m.height, err) < 0)
        return -1;
    *w = m.width;
    *h = m.height;
    return 0;
}

/* Length of the valid UTF-8 sequence at s (max n bytes) and its code point; 0 if invalid. */
static size_t utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t len;
    uint32_t v, min;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xc2 && c <= 0xdf) { len = 2; v = c & 0x1f; min = 0x80; }
    else if (c >= 0xe0 && c <= 0xef) { len = 3; v = c & 0x0f; min = 0x800; }
    else if (c >= 0xf0 && c <= 0xf4) { len = 4; v = c & 0x07; min = 0x10000; }
    else return 0;
    if (len > n)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static bool unsafe_cp(uint32_t cp)
{
    return cp < 0x20 || cp == 0x7f || (cp >= 0x80 && cp <= 0x9f) || /* C0, DEL, C1 */
           (cp >= 0x200b && cp <= 0x200f) ||                          /* zero width, LRM/RLM */
           (cp >= 0x202a && cp <= 0x202e) ||                          /* embeddings, overrides */
           (cp >= 0x2066 && cp <= 0x2069) ||                          /* isolates */
           cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb);           /* BOM, annotations */
}

void bh_gui_sanitize_utf8(const char *in, size_t len, char *out, size_t outsz)
{
    const unsigned char *s = (const unsigned char *)in;
    size_t o = 0;
    if (outsz == 0)
        return;
    for (size_t i = 0; i < len && s[i];) {
        uint32_t cp;
        size_t n = utf8_seq(s + i, len - i, &cp);
        if (n == 0 || unsafe_cp(cp)) {
            if (o + 1 >= outsz)
                break;
            out[o++] = '_';
            i += n ? n : 1;
            continue;
        }
        if (o + n >= outsz)
            break;
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
}

int bh_gui_parse_wmname(const void *body, size_t len, char *out, size_t outsz, bh_error *err)
{
    if (need_len(len, sizeof(struct bh_gui_wmname), "WMNAME", err) < 0)
        return -1;
    bh_gui_sanitize_utf8(body, len, out, outsz);
    return 0;
}

static void class_name(const char *in, size_t n, char *out, size_t outsz)
{
    size_t o = 0;
    for (size_t i = 0; i < n && in[i] && o + 1 < outsz; i++) {
        char c = in[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '-' || c == '.' || c == '+';
        out[o++] = ok ? c : '_';
    }
    out[o] = '\0';
}

int bh_gui_parse_wmclass(const void *body, size_t len, char *cls, char *name, size_t outsz, bh_error *err)
{
    struct bh_gui_wmclass m;
    if (need_len(len, sizeof m, "WMCLASS", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    class_name(m.res_class, sizeof m.res_class, cls, outsz);
    class_name(m.res_name, sizeof m.res_name, name, outsz);
    return 0;
}

int bh_gui_parse_window_hints(const void *body, size_t len, struct bh_gui_window_hints *out, bh_error *err)
{
    if (need_len(len, sizeof *out, "WINDOW_HINTS", err) < 0)
        return -1;
    memcpy(out, body, sizeof *out);
    out->flags &= BH_GUI_HINT_PMINSIZE | BH_GUI_HINT_PMAXSIZE | BH_GUI_HINT_PRESIZEINC | BH_GUI_HINT_PBASESIZE;
    if (out->min_width > BH_GUI_MAX_WIDTH || out->min_height > BH_GUI_MAX_HEIGHT)
        out->flags &= ~BH_GUI_HINT_PMINSIZE;
    if (out->max_width > BH_GUI_MAX_WIDTH || out->max_height > BH_GUI_MAX_HEIGHT || out->max_width == 0 ||
        out->max_height == 0)
        out->flags &= ~BH_GUI_HINT_PMAXSIZE;
    if (out->width_inc > BH_GUI_MAX_WIDTH || out->height_inc > BH_GUI_MAX_HEIGHT)
        out->flags &= ~BH_GUI_HINT_PRESIZEINC;
    if (out->base_width > BH_GUI_MAX_WIDTH || out->base_height > BH_GUI_MAX_HEIGHT)
        out->flags &= ~BH_GUI_HINT_PBASESIZE;
    return 0;
}

int bh_gui_parse_window_flags(const void *body, size_t len, uint32_t *set, uint32_t *unset, bh_error *err)
{
    struct bh_gui_window_flags m;
    if (need_len(len, sizeof m, "WINDOW_FLAGS", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    const uint32_t known = BH_GUI_WINDOW_FLAG_FULLSCREEN | BH_GUI_WINDOW_FLAG_DEMANDS_ATTENTION |
                           BH_GUI_WINDOW_FLAG_MINIMIZE;
    if ((m.flags_set | m.flags_unset) & ~known)
        return bh_fail(err, 0, "WINDOW_FLAGS with unknown bits %#x", (m.flags_set | m.flags_unset) & ~known);
    if (m.flags_set & m.flags_unset)
        return bh_fail(err, 0, "WINDOW_FLAGS sets and unsets %#x", m.flags_set & m.flags_unset);
    *set = m.flags_set;
    *unset = m.flags_unset;
    return 0;
}

int bh_gui_parse_cursor(const void *body, size_t len, uint32_t *cursor, bh_error *err)
{
    struct bh_gui_cursor m;
    if (need_len(len, sizeof m, "CURSOR", err) < 0)
        return -1;
    memcpy(&m, body, sizeof m);
    /* As Qubes' daemon: CURSOR_DEFAULT, or CURSOR_X11 + a number below XC_num_glyphs
     * (154). Cursor-font glyphs are the even numbers; an odd one (a glyph's mask) is
     * accepted and shows the default cursor, as Qubes' table has no cursor there. */
    if (m.cursor != BH_GUI_CURSOR_DEFAULT && (m.cursor < BH_GUI_CURSOR_X11 || m.cursor >= BH_GUI_CURSOR_X11_MAX))
        return bh_fail(err, 0, "CURSOR %#x is not a cursor-font glyph", m.cursor);
    *cursor = m.cursor;
    return 0;
}

int bh_gui_parse_window_icon(const void *body, size_t len, uint32_t *w, uint32_t *h, const uint8_t **pixels,
                             bh_error *err)
{
    struct bh_gui_window_icon_hdr m;
    if (len < sizeof m || len > BH_GUI_ICON_MAX_LEN)
        return bh_fail(err, 0, "WINDOW_ICON body of %zu bytes", len);
    memcpy(&m, body, sizeof m);
    if (m.width == 0 || m.height == 0 || m.width > BH_GUI_ICON_MAX || m.height > BH_GUI_ICON_MAX)
        return bh_fail(err, 0, "icon of %ux%u (1..%u each way)", m.width, m.height, BH_GUI_ICON_MAX);
    if ((size_t)m.width * m.height * 4 != len - sizeof m)
        return bh_fail(err, 0, "icon of %ux%u with %zu bytes of pixels", m.width, m.height, len - sizeof m);
    *w = m.width;
    *h = m.height;
    *pixels = (const uint8_t *)body + sizeof m;
    return 0;
}

uint32_t bh_gui_tint_argb(uint32_t argb, uint32_t label_rgb)
{
    /* integer arithmetic as qubesimgconverter's, so a qube's icon looks the same as in Qubes */
    uint64_t tr = (label_rgb >> 16) & 0xff, tg = (label_rgb >> 8) & 0xff, tb = label_rgb & 0xff;
    uint64_t tM = tr > tg ? (tr > tb ? tr : tb) : (tg > tb ? tg : tb);
    uint64_t tm = tr < tg ? (tr < tb ? tr : tb) : (tg < tb ? tg : tb);
    uint64_t trn, tgn, tbn, tdn;
    if (tM == tm)
        trn = tgn = tbn = 1, tdn = 2;
    else
        trn = tr - tm, tgn = tg - tm, tbn = tb - tm, tdn = tM - tm;
    uint64_t r = (argb >> 16) & 0xff, g = (argb >> 8) & 0xff, b = argb & 0xff;
    uint64_t M = r > g ? (r > b ? r : b) : (g > b ? g : b);
    uint64_t m = r < g ? (r < b ? r : b) : (g < b ? g : b);
    uint64_t c = M - m;
    const uint64_t Tn = 1, Td = 4;
    uint64_t c2 = Tn * 255 + (Td - Tn) * c, c2d = Td;
    uint64_t m2 = (255 * c2d - c2) * m;
    uint64_t m2d = (255 - c) * c2d;
    if (m2d < 1)
        m2d = 1;
    uint64_t c2d_tdn = tdn * c2d;
    uint64_t num = m2 * c2d_tdn, den = m2d * c2d_tdn, c2_m2d = c2 * m2d;
    uint32_t rt = (uint32_t)((num + trn * c2_m2d) / den) & 0xff;
    uint32_t gt = (uint32_t)((num + tgn * c2_m2d) / den) & 0xff;
    uint32_t bt = (uint32_t)((num + tbn * c2_m2d) / den) & 0xff;
    return (argb & 0xff000000u) | (rt << 16) | (gt << 8) | bt;
}

int bh_gui_parse_clipboard(const void *body, size_t len, bh_error *err)
{
    (void)body;
    if (len > BH_GUI_MAX_CLIPBOARD)
        return bh_fail(err, 0, "clipboard of %zu bytes (limit %u)", len, BH_GUI_MAX_CLIPBOARD);
    return 0;
}

static bool layout_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ',' ||
           c == ':' || c == '-';
}

int bh_gui_parse_keyboard_layout(const char *s, size_t len, char *layout, char *variant, char *options,
                                 bh_error *err)
{
    size_t n = strnlen(s, len);
    if (n >= BH_GUI_LAYOUT_MAX)
        return bh_fail(err, 0, "keyboard layout longer than %u bytes", BH_GUI_LAYOUT_MAX - 1);
    char *part[3] = { layout, variant, options };
    size_t k = 0, o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '+') {
            if (k == 2)
                return bh_fail(err, 0, "keyboard layout with more than three parts");
            part[k++][o] = '\0';
            o = 0;
            continue;
        }
        if (!layout_char(s[i]))
            return bh_fail(err, 0, "keyboard layout with byte 0x%02x", (unsigned char)s[i]);
        part[k][o++] = s[i];
    }
    if (k != 2)
        return bh_fail(err, 0, "keyboard layout is not layout+variant+options");
    part[2][o] = '\0';
    if (!layout[0])
        return bh_fail(err, 0, "keyboard layout without a layout");
    return 0;
}

int bh_gui_layout_from_xkb_names(const char *names, size_t len, char *out, bh_error *err)
{
    const char *f[5];
    size_t off = 0;
    for (int i = 0; i < 5; i++) {
        if (off > len)
            return bh_fail(err, 0, "_XKB_RULES_NAMES has %d fields (need 5)", i);
        f[i] = names + off;
        size_t n = strnlen(names + off, len - off);
        if (off + n == len && i < 4)
            return bh_fail(err, 0, "_XKB_RULES_NAMES has %d fields (need 5)", i + 1);
        off += n + 1;
    }
    size_t l3 = strnlen(f[2], len - (size_t)(f[2] - names)), l4 = strnlen(f[3], len - (size_t)(f[3] - names));
    size_t l5 = strnlen(f[4], len - (size_t)(f[4] - names));
    if (l3 + l4 + l5 + 2 >= BH_GUI_LAYOUT_MAX)
        return bh_fail(err, 0, "host keyboard layout too long");
    char buf[BH_GUI_LAYOUT_MAX], a[BH_GUI_LAYOUT_MAX], b[BH_GUI_LAYOUT_MAX], c[BH_GUI_LAYOUT_MAX];
    snprintf(buf, sizeof buf, "%.*s+%.*s+%.*s", (int)l3, f[2], (int)l4, f[3], (int)l5, f[4]);
    if (bh_gui_parse_keyboard_layout(buf, sizeof buf, a, b, c, err) < 0)
        return -1;
    memcpy(out, buf, strlen(buf) + 1);
    return 0;
}

long bh_gui_parse_color(const char *s)
{
    if (!s || strncmp(s, "0x", 2) || strlen(s) != 8)
        return -1;
    long v = 0;
    for (const char *p = s + 2; *p; p++) {
        int d = (*p >= '0' && *p <= '9') ? *p - '0' : (*p >= 'a' && *p <= 'f') ? *p - 'a' + 10
                : (*p >= 'A' && *p <= 'F') ? *p - 'A' + 10 : -1;
        if (d < 0)
            return -1;
        v = v * 16 + d;
    }
    return v;
}

/* One decimal field of a monitor line: digits only, at most 6 of them. */
static int layout_field(const char **p, const char *end, uint32_t *v)
{
    const char *q = *p;
    uint32_t n = 0;
    int digits = 0;
    while (q < end && *q >= '0' && *q <= '9') {
        if (++digits > 6)
            return -1;
        n = n * 10u + (uint32_t)(*q++ - '0');
    }
    if (!digits)
        return -1;
    *v = n;
    *p = q;
    return 0;
}

int bh_gui_parse_monitor_layout(const char *s, size_t len, struct bh_gui_monitor *out, bh_error *err)
{
    if (len == 0 || len > BH_GUI_LAYOUT_TEXT_MAX)
        return bh_fail(err, 0, "monitor layout of %zu bytes (1..%u)", len, BH_GUI_LAYOUT_TEXT_MAX);
    const char *p = s, *end = s + len;
    int n = 0;
    while (p < end) {
        const char *eol = memchr(p, '\n', (size_t)(end - p));
        if (!eol)
            return bh_fail(err, 0, "monitor line %d does not end with a newline", n + 1);
        if (n == BH_GUI_MAX_MONITORS)
            return bh_fail(err, 0, "more than %u monitors", BH_GUI_MAX_MONITORS);
        uint32_t v[6] = { 0 };
        int k = 0;
        while (p < eol && k < 6) {
            if (k && *p++ != ' ')
                return bh_fail(err, 0, "monitor line %d: fields are separated by one space", n + 1);
            if (layout_field(&p, eol, &v[k]) < 0)
                return bh_fail(err, 0, "monitor line %d: field %d is not a number", n + 1, k + 1);
            k++;
        }
        if (p != eol || (k != 4 && k != 6))
            return bh_fail(err, 0, "monitor line %d: want W H X Y [W_MM H_MM]", n + 1);
        struct bh_gui_monitor m = { (int32_t)v[2], (int32_t)v[3], v[0], v[1], v[4], v[5] };
        if (m.w < 1 || m.w > BH_GUI_MAX_WIDTH || m.h < 1 || m.h > BH_GUI_MAX_HEIGHT)
            return bh_fail(err, 0, "monitor %d: size %ux%u out of range", n + 1, m.w, m.h);
        if (v[2] + m.w > BH_GUI_MAX_COORD || v[3] + m.h > BH_GUI_MAX_COORD)
            return bh_fail(err, 0, "monitor %d: %ux%u+%u+%u reaches past %d", n + 1, m.w, m.h, v[2], v[3],
                           BH_GUI_MAX_COORD);
        if (k == 6 && (m.w_mm < 1 || m.h_mm < 1 || m.w_mm > 100000 || m.h_mm > 100000))
            return bh_fail(err, 0, "monitor %d: physical size %ux%u mm out of range", n + 1, m.w_mm, m.h_mm);
        out[n++] = m;
        p = eol + 1;
    }
    return n;
}

void bh_gui_format_monitor_layout(const struct bh_gui_monitor *m, unsigned n, char *out)
{
    size_t o = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < n && i < BH_GUI_MAX_MONITORS; i++) {
        char phys[32] = "";
        if (m[i].w_mm) {
            /* Qubes' qvm-start-daemon: the DPI, rounded down to a common one, gives the
             * physical size the qube sees (its fonts scale right, and no real sizes leak) */
            uint32_t dpi = m[i].w * 254u / m[i].w_mm / 10u;
            dpi = dpi > 300 ? 300 : dpi > 200 ? 200 : dpi > 150 ? 150 : 96;
            uint32_t pw = m[i].w * 254u / dpi / 10u, ph = m[i].h * 254u / dpi / 10u;
            if (pw && ph)
                snprintf(phys, sizeof phys, " %u %u", pw, ph);
        }
        int k = snprintf(out + o, BH_GUI_LAYOUT_TEXT_MAX - o, "%u %u %d %d%s\n", m[i].w, m[i].h, m[i].x, m[i].y, phys);
        if (k < 0 || (size_t)k >= BH_GUI_LAYOUT_TEXT_MAX - o)
            break;
        o += (size_t)k;
    }
}

/* The n-th comma-separated element of s (empty when there is none). */
static void list_item(const char *s, unsigned n, char *out, size_t outsz)
{
    for (unsigned i = 0; i < n && s; i++) {
        s = strchr(s, ',');
        if (s)
            s++;
    }
    size_t len = s ? strcspn(s, ",") : 0;
    if (len >= outsz)
        len = outsz - 1;
    memcpy(out, s ? s : "", len);
    out[len] = '\0';
}

int bh_gui_layout_group(const char *layout, unsigned group, char *out, bh_error *err)
{
    char l[BH_GUI_LAYOUT_MAX], v[BH_GUI_LAYOUT_MAX], o[BH_GUI_LAYOUT_MAX];
    if (bh_gui_parse_keyboard_layout(layout, BH_GUI_LAYOUT_MAX, l, v, o, err) < 0)
        return -1;
    unsigned groups = 1;
    for (const char *p = l; (p = strchr(p, ',')); p++)
        groups++;
    if (group >= groups)
        group = 0;
    char gl[BH_GUI_LAYOUT_MAX], gv[BH_GUI_LAYOUT_MAX];
    list_item(l, group, gl, sizeof gl);
    list_item(v, group, gv, sizeof gv);
    if (!gl[0])
        return bh_fail(err, 0, "keyboard layout %s has no layout in group %u", l, group + 1);
    /* the three parts came from one string shorter than BH_GUI_LAYOUT_MAX: they fit */
    size_t a = strlen(gl), b = strlen(gv), c = strlen(o);
    if (a + b + c + 2 >= BH_GUI_LAYOUT_MAX)
        return bh_fail(err, 0, "keyboard layout too long");
    memcpy(out, gl, a);
    out[a] = '+';
    memcpy(out + a + 1, gv, b);
    out[a + 1 + b] = '+';
    memcpy(out + a + 2 + b, o, c + 1);
    return 0;
}

/* HLS as the usual definition (Python's colorsys, which Qubes' tray tint follows):
 * lightness the mean of the largest and smallest channel, saturation relative to it. */
static void rgb_hls(uint32_t rgb, double *h, double *l, double *s)
{
    double r = ((rgb >> 16) & 255) / 255.0, g = ((rgb >> 8) & 255) / 255.0, b = (rgb & 255) / 255.0;
    double hi = fmax(r, fmax(g, b)), lo = fmin(r, fmin(g, b));
    *l = (hi + lo) / 2.0;
    if (hi == lo) {
        *h = *s = 0.0;
        return;
    }
    double d = hi - lo;
    *s = *l <= 0.5 ? d / (hi + lo) : d / (2.0 - hi - lo);
    double rc = (hi - r) / d, gc = (hi - g) / d, bc = (hi - b) / d;
    double hh = r == hi ? bc - gc : g == hi ? 2.0 + rc - bc : 4.0 + gc - rc;
    *h = hh / 6.0 - floor(hh / 6.0);
}

static uint32_t hls_channel(double m1, double m2, double hue)
{
    hue -= floor(hue);
    double v = hue < 1.0 / 6.0 ? m1 + (m2 - m1) * hue * 6.0
             : hue < 0.5       ? m2
             : hue < 2.0 / 3.0 ? m1 + (m2 - m1) * (2.0 / 3.0 - hue) * 6.0
                               : m1;
    return (uint32_t)(uint8_t)(v * 255.0);
}

uint32_t bh_gui_tint_tray(uint32_t rgb, uint32_t label_rgb)
{
    double th, ts, h, l, s;
    rgb_hls(label_rgb, &th, &l, &ts);
    rgb_hls(rgb, &h, &l, &s);
    if (ts == 0.0) {
        uint32_t v = (uint32_t)(uint8_t)(l * 255.0);
        return v << 16 | v << 8 | v;
    }
    double m2 = l <= 0.5 ? l * (1.0 + ts) : l + ts - l * ts, m1 = 2.0 * l - m2;
    return hls_channel(m1, m2, th + 1.0 / 3.0) << 16 | hls_channel(m1, m2, th) << 8 | hls_channel(m1, m2, th - 1.0 / 3.0);
}
