/* Feeds bytes to the GUI daemon's parser exactly as a hostile gui-agent would send
 * them: through the channel framing (chan.c, header checks) and then every body parser
 * of proto.c, with window sizes taken from the input. */
#include "gui/chan.h"
#include "gui/proto.h"
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void parse_body(const struct bh_gui_hdr *h, const uint8_t *b, size_t len)
{
    bh_error e;
    struct bh_gui_rect r;
    bool orr, empty;
    uint32_t a, c;
    char t[BH_GUI_TITLE_MAX], n1[64], n2[64];
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
    case BH_GUI_MSG_WINDOW_DUMP: bh_gui_parse_window_dump(b, len, &a, &c, &e); break;
    case BH_GUI_MSG_WMNAME: bh_gui_parse_wmname(b, len, t, sizeof t, &e); break;
    case BH_GUI_MSG_WMCLASS: bh_gui_parse_wmclass(b, len, n1, n2, sizeof n1, &e); break;
    case BH_GUI_MSG_WINDOW_HINTS: bh_gui_parse_window_hints(b, len, &wh, &e); break;
    case BH_GUI_MSG_WINDOW_FLAGS: bh_gui_parse_window_flags(b, len, &a, &c, &e); break;
    case BH_GUI_MSG_CURSOR: bh_gui_parse_cursor(b, len, &a, &e); break;
    case BH_GUI_MSG_CLIPBOARD_DATA: bh_gui_parse_clipboard(b, len, &e);
        bh_gui_sanitize_utf8((const char *)b, len, t, sizeof t); break;
    default: break;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bh_gui_chan c;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) < 0)
        return 0;
    bh_gui_chan_init(&c, sv[0], true);
    /* write in two pieces so that framing across reads is exercised */
    size_t half = size ? data[0] % (size + 1) : 0;
    if (size > 200000)
        size = 200000;
    if (half > size)
        half = size;
    bh_error e;
    const uint8_t *body;
    struct bh_gui_hdr h;
    int fd, r = 0;
    for (int piece = 0; piece < 2 && r >= 0; piece++) {
        const uint8_t *p = piece ? data + half : data;
        size_t n = piece ? size - half : half;
        while (n) {
            ssize_t w = write(sv[1], p, n);
            if (w <= 0)
                break;
            p += w;
            n -= (size_t)w;
            for (;;) {
                ssize_t got = bh_gui_chan_fill(&c, &e);
                while ((r = bh_gui_chan_next(&c, &h, &body, &fd, &e)) == 1)
                    parse_body(&h, body, h.untrusted_len);
                if (r < 0 || got <= 0)
                    break;
            }
            if (r < 0)
                break;
        }
    }
    bh_gui_chan_release(&c);
    close(sv[0]);
    close(sv[1]);
    return 0;
}
