/* Feeds bytes to the GUI daemon's parser exactly as a hostile gui-agent would send
 * them: through the channel framing (chan.c, header checks) and then every body parser
 * of proto.c, with window sizes taken from the input. The bytes go into the channel's
 * buffer in memory (bh_gui_chan_feed), in pieces whose size the first byte chooses, so
 * that framing across reads is exercised without a socket per input. The agent's own
 * parsers of what a daemon sends (keyboard layout) and the host-layout reader are
 * driven too, and so is the qube's parser of qubes.SetMonitorLayout's input (with a
 * print-and-parse-again check). */
#include "gui/chan.h"
#include "gui/proto.h"
#include <stdint.h>
#include <string.h>

/* The body doubles as qubes.SetMonitorLayout's input (parsed in the qube): what parses
 * is in range and prints back to the same positions and sizes. */
static void check_monitor_layout(const uint8_t *b, size_t len)
{
    bh_error e;
    struct bh_gui_monitor m[BH_GUI_MAX_MONITORS], m2[BH_GUI_MAX_MONITORS];
    int n = bh_gui_parse_monitor_layout((const char *)b, len, m, &e);
    if (n > BH_GUI_MAX_MONITORS || n == 0)
        __builtin_trap();
    for (int i = 0; i < n; i++)
        if (m[i].w < 1 || m[i].h < 1 || m[i].w > BH_GUI_MAX_WIDTH || m[i].h > BH_GUI_MAX_HEIGHT || m[i].x < 0 ||
            m[i].y < 0 || m[i].x + (int64_t)m[i].w > BH_GUI_MAX_COORD || m[i].y + (int64_t)m[i].h > BH_GUI_MAX_COORD)
            __builtin_trap();
    if (n < 1)
        return;
    char text[BH_GUI_LAYOUT_TEXT_MAX];
    bh_gui_format_monitor_layout(m, (unsigned)n, text);
    if (bh_gui_parse_monitor_layout(text, strlen(text), m2, &e) != n)
        __builtin_trap();
    for (int i = 0; i < n; i++)
        if (m2[i].x != m[i].x || m2[i].y != m[i].y || m2[i].w != m[i].w || m2[i].h != m[i].h)
            __builtin_trap();
}

static void parse_body(const struct bh_gui_hdr *h, const uint8_t *b, size_t len)
{
    bh_error e;
    struct bh_gui_rect r;
    bool orr, empty;
    uint32_t a, c;
    char t[BH_GUI_TITLE_MAX], n1[64], n2[64];
    char l[BH_GUI_LAYOUT_MAX], v[BH_GUI_LAYOUT_MAX], o[BH_GUI_LAYOUT_MAX];
    struct bh_gui_window_hints wh;
    switch (h->type) {
    case BH_GUI_MSG_CREATE: bh_gui_parse_create(b, len, &r, &orr, &a, &e); break;
    case BH_GUI_MSG_CONFIGURE: bh_gui_parse_configure(b, len, &r, &orr, &e); break;
    case BH_GUI_MSG_MAP: bh_gui_parse_map(b, len, &a, &orr, &e); break;
    case BH_GUI_MSG_SHMIMAGE: bh_gui_parse_shmimage(b, len, h->window & 0x3fff, (h->window >> 14) & 0x1fff, &r, &empty, &e);
        if (!empty && (r.x < 0 || r.y < 0 || (uint32_t)r.x + r.w > (h->window & 0x3fff) ||
                       (uint32_t)r.y + r.h > ((h->window >> 14) & 0x1fff)))
            __builtin_trap();
        break;
    case BH_GUI_MSG_WINDOW_DUMP: {
        uint32_t dt;
        if (bh_gui_parse_window_dump(b, len, &dt, &a, &c, &e) == 0 &&
            ((dt != BH_GUI_DUMP_MEMFD && dt != BH_GUI_DUMP_INLINE) || dt != bh_gui_window_dump_type(b, len)))
            __builtin_trap();
        break;
    }
    case BH_GUI_MSG_PIXELS: {
        /* the buffer's size from the window field, as for SHMIMAGE */
        uint32_t bw = h->window & 0x3fff, bh = (h->window >> 14) & 0x1fff;
        const uint8_t *px;
        if (bh_gui_parse_pixels(b, len, bw, bh, &r, &px, &e) == 0) {
            if (r.x < 0 || r.y < 0 || r.w == 0 || r.h == 0 || (uint64_t)(uint32_t)r.x + r.w > bw ||
                (uint64_t)(uint32_t)r.y + r.h > bh || px + (size_t)r.w * r.h * 4 != b + len)
                __builtin_trap();
            /* what the daemon then copies: every row inside the buffer and the body */
            volatile uint8_t sink = 0;
            for (uint32_t row = 0; row < r.h; row++)
                sink ^= px[(size_t)row * r.w * 4 + (size_t)r.w * 4 - 1];
            (void)sink;
        }
        break;
    }
    case BH_GUI_MSG_WMNAME: bh_gui_parse_wmname(b, len, t, sizeof t, &e);
        /* the body doubles as a keyboard layout and as _XKB_RULES_NAMES */
        if (bh_gui_parse_keyboard_layout((const char *)b, len, l, v, o, &e) == 0 &&
            (strlen(l) + strlen(v) + strlen(o) + 2 >= BH_GUI_LAYOUT_MAX || !l[0]))
            __builtin_trap();
        if (bh_gui_layout_from_xkb_names((const char *)b, len, l, &e) == 0) {
            /* one group of it: still a valid layout, never longer */
            char one[BH_GUI_LAYOUT_MAX];
            if (bh_gui_layout_group(l, h->window & 7, one, &e) == 0 &&
                (strlen(one) > strlen(l) || bh_gui_parse_keyboard_layout(one, sizeof one, v, o, t, &e) < 0))
                __builtin_trap();
        }
        break;
    case BH_GUI_MSG_WMCLASS: bh_gui_parse_wmclass(b, len, n1, n2, sizeof n1, &e); break;
    case BH_GUI_MSG_WINDOW_HINTS: bh_gui_parse_window_hints(b, len, &wh, &e); break;
    case BH_GUI_MSG_WINDOW_FLAGS: bh_gui_parse_window_flags(b, len, &a, &c, &e); break;
    case BH_GUI_MSG_CURSOR: bh_gui_parse_cursor(b, len, &a, &e); break;
    case BH_GUI_MSG_CLIPBOARD_DATA: bh_gui_parse_clipboard(b, len, &e);
        check_monitor_layout(b, len);
        bh_gui_sanitize_utf8((const char *)b, len, t, sizeof t);
        bh_gui_parse_keyboard_layout((const char *)b, len, l, v, o, &e);
        bh_gui_layout_from_xkb_names((const char *)b, len, l, &e);
        break;
    case BH_GUI_MSG_WINDOW_ICON: {
        const uint8_t *px;
        if (bh_gui_parse_window_icon(b, len, &a, &c, &px, &e) == 0) {
            if (a == 0 || c == 0 || a > BH_GUI_ICON_MAX || c > BH_GUI_ICON_MAX || px + (size_t)a * c * 4 != b + len)
                __builtin_trap();
            uint32_t p, label;
            memcpy(&label, b, 4);
            for (size_t i = 0; i < (size_t)a * c; i++) {
                memcpy(&p, px + 4 * i, 4);
                if ((bh_gui_tint_argb(p, label & 0xffffff) ^ p) >> 24) /* alpha is kept */
                    __builtin_trap();
            }
        }
        break;
    }
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bh_gui_chan c;
    bh_gui_chan_init(&c, -1, true);
    if (size > 200000)
        size = 200000;
    /* pieces of 1..256 bytes (0: all at once), chosen by the first byte */
    size_t piece = size ? data[0] : 0;
    if (piece == 0)
        piece = size ? size : 1;
    bh_error e;
    const uint8_t *body;
    struct bh_gui_hdr h;
    int fd, r = 0;
    size_t off = 0;
    while (off < size && r >= 0) {
        size_t n = size - off < piece ? size - off : piece;
        size_t took = bh_gui_chan_feed(&c, data + off, n, &e);
        if (took == 0)
            break; /* a full buffer: the daemon ends that connection */
        off += took;
        while ((r = bh_gui_chan_next(&c, &h, &body, &fd, &e)) == 1)
            parse_body(&h, body, h.untrusted_len);
    }
    bh_gui_chan_release(&c);
    return 0;
}
