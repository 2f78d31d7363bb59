/* Unit tests for the GUI protocol checks (proto.c) and framing (chan.c). */
#include "../../tests/unit/tap.h"
#include "chan.h"
#include "proto.h"
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

static struct bh_gui_hdr hdr(uint32_t t, uint32_t w, uint32_t l) { return (struct bh_gui_hdr){ t, w, l }; }

static void test_headers(void)
{
    bh_error e;
    struct bh_gui_hdr h = hdr(BH_GUI_MSG_CREATE, 5, sizeof(struct bh_gui_create));
    CHECK(bh_gui_check_agent_hdr(&h, &e) == 0);
    h.untrusted_len = 1000; /* a lying length is refused, never used to read */
    CHECK(bh_gui_check_agent_hdr(&h, &e) < 0);
    h = hdr(BH_GUI_MSG_KEYPRESS, 5, sizeof(struct bh_gui_keypress)); /* input comes from the daemon only */
    CHECK(bh_gui_check_agent_hdr(&h, &e) < 0);
    h = hdr(BH_GUI_MSG_MFNDUMP, 5, 0);
    CHECK(bh_gui_check_agent_hdr(&h, &e) < 0);
    h = hdr(BH_GUI_MSG_EXECUTE, 5, 255);
    CHECK(bh_gui_check_agent_hdr(&h, &e) < 0);
    h = hdr(9999, 5, 0);
    CHECK(bh_gui_check_agent_hdr(&h, &e) < 0);
    h = hdr(BH_GUI_MSG_CLIPBOARD_DATA, 0, BH_GUI_MAX_CLIPBOARD);
    CHECK(bh_gui_check_agent_hdr(&h, &e) == 0);
    h.untrusted_len = BH_GUI_MAX_CLIPBOARD + 1;
    CHECK(bh_gui_check_agent_hdr(&h, &e) < 0);
    h = hdr(BH_GUI_MSG_MAP, 0, 8);
    CHECK(bh_gui_check_agent_hdr(&h, &e) < 0);
    h = hdr(BH_GUI_MSG_KEYPRESS, 5, sizeof(struct bh_gui_keypress));
    CHECK(bh_gui_check_daemon_hdr(&h, &e) == 0);
    CHECK(strcmp(bh_gui_msg_name(BH_GUI_MSG_SHMIMAGE), "SHMIMAGE") == 0);
}

static void test_create(void)
{
    bh_error e;
    struct bh_gui_rect r;
    bool orr;
    uint32_t parent;
    struct bh_gui_create c = { 10, 20, 300, 200, 0, 0 };
    CHECK(bh_gui_parse_create(&c, sizeof c, &r, &orr, &parent, &e) == 0 && r.w == 300 && r.x == 10 && !orr);
    c.x = (uint32_t)-50;
    CHECK(bh_gui_parse_create(&c, sizeof c, &r, &orr, &parent, &e) == 0 && r.x == -50);
    c.x = 0x80000000u;
    CHECK(bh_gui_parse_create(&c, sizeof c, &r, &orr, &parent, &e) < 0);
    c.x = 0;
    c.width = 0;
    CHECK(bh_gui_parse_create(&c, sizeof c, &r, &orr, &parent, &e) < 0);
    c.width = BH_GUI_MAX_WIDTH + 1;
    CHECK(bh_gui_parse_create(&c, sizeof c, &r, &orr, &parent, &e) < 0);
    c.width = (uint32_t)-1; /* "negative" size */
    CHECK(bh_gui_parse_create(&c, sizeof c, &r, &orr, &parent, &e) < 0);
    c.width = 10;
    c.override_redirect = 2;
    CHECK(bh_gui_parse_create(&c, sizeof c, &r, &orr, &parent, &e) < 0);
    CHECK(bh_gui_parse_create(&c, sizeof c - 1, &r, &orr, &parent, &e) < 0);
}

static void test_shmimage(void)
{
    bh_error e;
    struct bh_gui_rect r;
    bool empty;
    struct bh_gui_shmimage s = { (uint32_t)-10, 5, 0xffffffffu, 0xffffffffu };
    CHECK(bh_gui_parse_shmimage(&s, sizeof s, 100, 50, &r, &empty, &e) == 0);
    /* clipped to the window in 64-bit arithmetic: no wrap-around */
    CHECK(!empty && r.x == 0 && r.y == 5 && r.w == 100 && r.h == 45);
    s = (struct bh_gui_shmimage){ 200, 0, 10, 10 };
    CHECK(bh_gui_parse_shmimage(&s, sizeof s, 100, 50, &r, &empty, &e) == 0 && empty);
    s = (struct bh_gui_shmimage){ 0x7fffffffu, 0x7fffffffu, 0x7fffffffu, 1 };
    CHECK(bh_gui_parse_shmimage(&s, sizeof s, 100, 50, &r, &empty, &e) == 0 && empty);
}

static void test_strings(void)
{
    bh_error e;
    char out[BH_GUI_TITLE_MAX];
    struct bh_gui_wmname n;
    memset(&n, 0, sizeof n);
    strcpy(n.data, "ok\x1b[31mred\x07 \xc3\xa9t\xc3\xa9 \xe2\x80\xae" "evil \xff\xfe end");
    CHECK(bh_gui_parse_wmname(&n, sizeof n, out, sizeof out, &e) == 0);
    CHECK(strcmp(out, "ok_[31mred_ \xc3\xa9t\xc3\xa9 _evil __ end") == 0);
    memset(n.data, 'A', sizeof n.data); /* no NUL: stops at 128 */
    CHECK(bh_gui_parse_wmname(&n, sizeof n, out, sizeof out, &e) == 0 && strlen(out) == 128);
    bh_gui_sanitize_utf8("\xc0\x80\xed\xa0\x80", 5, out, sizeof out); /* overlong NUL, surrogate */
    CHECK(strcmp(out, "_____") == 0 || strcmp(out, "__") == 0 || strspn(out, "_") == strlen(out));
    struct bh_gui_wmclass c;
    memset(&c, 0, sizeof c);
    strcpy(c.res_class, "XTerm");
    strcpy(c.res_name, "x term\n:dom0");
    char cls[64], nm[64];
    CHECK(bh_gui_parse_wmclass(&c, sizeof c, cls, nm, sizeof cls, &e) == 0);
    CHECK(strcmp(cls, "XTerm") == 0 && strcmp(nm, "x_term__dom0") == 0);
    CHECK(bh_gui_parse_color("0xcc0000") == 0xcc0000 && bh_gui_parse_color("cc0000") < 0 &&
          bh_gui_parse_color("0xgg0000") < 0);
}

static void test_misc(void)
{
    bh_error e;
    uint32_t a, b, t;
    struct bh_gui_window_dump_hdr d = { BH_GUI_DUMP_MEMFD, 640, 480, 32 };
    CHECK(bh_gui_parse_window_dump(&d, sizeof d, &t, &a, &b, &e) == 0 && a == 640 && t == BH_GUI_DUMP_MEMFD);
    d.type = BH_GUI_DUMP_INLINE;
    CHECK(bh_gui_parse_window_dump(&d, sizeof d, &t, &a, &b, &e) == 0 && t == BH_GUI_DUMP_INLINE);
    CHECK(bh_gui_window_dump_type(&d, sizeof d) == BH_GUI_DUMP_INLINE && bh_gui_window_dump_type(&d, 3) == 0);
    d.type = 0; /* Xen grant refs */
    CHECK(bh_gui_parse_window_dump(&d, sizeof d, &t, &a, &b, &e) < 0);
    d.type = 3;
    CHECK(bh_gui_parse_window_dump(&d, sizeof d, &t, &a, &b, &e) < 0);
    d = (struct bh_gui_window_dump_hdr){ BH_GUI_DUMP_MEMFD, 640, 480, 24 };
    CHECK(bh_gui_parse_window_dump(&d, sizeof d, &t, &a, &b, &e) < 0);
    /* PIXELS: a rectangle wholly inside the buffer, exactly its pixels */
    struct {
        struct bh_gui_pixels_hdr h;
        uint32_t px[6];
    } pm = { { 2, 3, 3, 2 }, { 1, 2, 3, 4, 5, 6 } };
    struct bh_gui_rect r;
    const uint8_t *px;
    CHECK(bh_gui_parse_pixels(&pm, sizeof pm, 5, 5, &r, &px, &e) == 0 && r.x == 2 && r.y == 3 && r.w == 3 &&
          r.h == 2 && px == (const uint8_t *)pm.px);
    CHECK(bh_gui_parse_pixels(&pm, sizeof pm, 4, 5, &r, &px, &e) < 0);     /* x + width past the edge */
    CHECK(bh_gui_parse_pixels(&pm, sizeof pm, 5, 4, &r, &px, &e) < 0);     /* y + height past it */
    CHECK(bh_gui_parse_pixels(&pm, sizeof pm - 4, 5, 5, &r, &px, &e) < 0); /* a pixel short */
    pm.h = (struct bh_gui_pixels_hdr){ 0xffffffffu, 0, 2, 1 };             /* x wraps */
    CHECK(bh_gui_parse_pixels(&pm, sizeof pm.h + 8, 5, 5, &r, &px, &e) < 0);
    pm.h = (struct bh_gui_pixels_hdr){ 0, 0, 0x40000000u, 1 };             /* width*4 wraps 32 bits */
    CHECK(bh_gui_parse_pixels(&pm, sizeof pm, 0xffffffffu, 5, &r, &px, &e) < 0);
    pm.h = (struct bh_gui_pixels_hdr){ 0, 0, 0, 1 };
    CHECK(bh_gui_parse_pixels(&pm, sizeof pm.h, 5, 5, &r, &px, &e) < 0);
    struct bh_gui_hdr ph = { BH_GUI_MSG_PIXELS, 7, sizeof pm };
    CHECK(bh_gui_check_agent_hdr(&ph, &e) == 0);
    ph.untrusted_len = BH_GUI_PIXELS_MAX_LEN + 4;
    CHECK(bh_gui_check_agent_hdr(&ph, &e) < 0);
    ph.untrusted_len = sizeof pm.h + 3;
    CHECK(bh_gui_check_agent_hdr(&ph, &e) < 0);
    ph = (struct bh_gui_hdr){ BH_GUI_MSG_PIXELS, 0, sizeof pm };
    CHECK(bh_gui_check_agent_hdr(&ph, &e) < 0);
    struct bh_gui_cursor c = { BH_GUI_CURSOR_X11 + 68 };
    CHECK(bh_gui_parse_cursor(&c, sizeof c, &a, &e) == 0);
    c.cursor = BH_GUI_CURSOR_X11_MAX;
    CHECK(bh_gui_parse_cursor(&c, sizeof c, &a, &e) < 0);
    c.cursor = BH_GUI_CURSOR_X11 + 1; /* a mask: accepted, shown as the default (Qubes) */
    CHECK(bh_gui_parse_cursor(&c, sizeof c, &a, &e) == 0 && a == BH_GUI_CURSOR_X11 + 1);
    c.cursor = 0xff;
    CHECK(bh_gui_parse_cursor(&c, sizeof c, &a, &e) < 0);
    c.cursor = BH_GUI_CURSOR_X11 | 0x10000; /* the bit alone is not enough */
    CHECK(bh_gui_parse_cursor(&c, sizeof c, &a, &e) < 0);
    struct bh_gui_window_flags f = { 1, 1 };
    CHECK(bh_gui_parse_window_flags(&f, sizeof f, &a, &b, &e) < 0);
    f = (struct bh_gui_window_flags){ 8, 0 };
    CHECK(bh_gui_parse_window_flags(&f, sizeof f, &a, &b, &e) < 0);
    struct bh_gui_window_hints h = { 0xffffffffu, 1, 1, 0xffffffffu, 10, 0, 0, 0, 0 };
    CHECK(bh_gui_parse_window_hints(&h, sizeof h, &h, &e) == 0);
    CHECK(!(h.flags & BH_GUI_HINT_PMAXSIZE) && (h.flags & BH_GUI_HINT_PMINSIZE) && !(h.flags & 1));
}

/* Framing: messages split across reads, an fd with its WINDOW_DUMP, a stray fd. */
static void test_chan(void)
{
    int sv[2];
    bh_error e;
    CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
    static struct bh_gui_chan c;
    bh_gui_chan_init(&c, sv[0], true);
    struct bh_gui_hdr h = { BH_GUI_MSG_UNMAP, 7, 0 };
    struct bh_gui_window_dump_hdr d = { BH_GUI_DUMP_MEMFD, 2, 2, 32 };
    struct bh_gui_hdr dh = { BH_GUI_MSG_WINDOW_DUMP, 7, sizeof d };
    uint8_t buf[sizeof dh + sizeof d];
    memcpy(buf, &dh, sizeof dh);
    memcpy(buf + sizeof dh, &d, sizeof d);
    int mfd = memfd_create("t", MFD_CLOEXEC | MFD_ALLOW_SEALING);
    CHECK(write(sv[1], &h, 5) == 5);
    const uint8_t *body;
    int fd;
    struct bh_gui_hdr got;
    CHECK(bh_gui_chan_fill(&c, &e) == 5);
    CHECK(bh_gui_chan_next(&c, &got, &body, &fd, &e) == 0); /* partial header */
    CHECK(write(sv[1], (char *)&h + 5, sizeof h - 5) == (ssize_t)(sizeof h - 5));
    CHECK(bh_gui_write_blocking(sv[1], buf, sizeof buf, mfd, &e) == 0);
    while (bh_gui_chan_fill(&c, &e) > 0)
        ;
    CHECK(bh_gui_chan_next(&c, &got, &body, &fd, &e) == 1 && got.type == BH_GUI_MSG_UNMAP && fd == -1);
    CHECK(bh_gui_chan_next(&c, &got, &body, &fd, &e) == 1 && got.type == BH_GUI_MSG_WINDOW_DUMP && fd >= 0);
    if (fd >= 0)
        close(fd);
    CHECK(bh_gui_chan_next(&c, &got, &body, &fd, &e) == 0);
    /* an fd with a message that is not a WINDOW_DUMP */
    CHECK(bh_gui_write_blocking(sv[1], &h, sizeof h, mfd, &e) == 0);
    CHECK(bh_gui_chan_fill(&c, &e) > 0);
    CHECK(bh_gui_chan_next(&c, &got, &body, &fd, &e) == 1);
    CHECK(bh_gui_chan_next(&c, &got, &body, &fd, &e) < 0);
    bh_gui_chan_release(&c);
    /* a lying length ends the stream before any body byte is used */
    bh_gui_chan_init(&c, sv[0], true);
    struct bh_gui_hdr big = { BH_GUI_MSG_CREATE, 7, 0x7fffffff };
    CHECK(write(sv[1], &big, sizeof big) == sizeof big);
    CHECK(bh_gui_chan_fill(&c, &e) > 0);
    CHECK(bh_gui_chan_next(&c, &got, &body, &fd, &e) < 0);
    bh_gui_chan_release(&c);
    close(mfd);
    close(sv[0]);
    close(sv[1]);
}

static void test_keyboard_layout(void)
{
    bh_error e;
    char l[BH_GUI_LAYOUT_MAX], v[BH_GUI_LAYOUT_MAX], o[BH_GUI_LAYOUT_MAX], out[BH_GUI_LAYOUT_MAX];
    CHECK(bh_gui_parse_keyboard_layout("de+nodeadkeys+grp:alt_shift_toggle", 64, l, v, o, &e) == 0);
    CHECK(!strcmp(l, "de") && !strcmp(v, "nodeadkeys") && !strcmp(o, "grp:alt_shift_toggle"));
    CHECK(bh_gui_parse_keyboard_layout("us++", 4, l, v, o, &e) == 0 && !strcmp(l, "us") && !v[0] && !o[0]);
    /* what setxkbmap or a shell could read as more than a name */
    CHECK(bh_gui_parse_keyboard_layout("us+;rm -rf+", 32, l, v, o, &e) < 0);
    CHECK(bh_gui_parse_keyboard_layout("us+-display:1+", 32, l, v, o, &e) == 0); /* an argument, not an option */
    CHECK(bh_gui_parse_keyboard_layout("us", 2, l, v, o, &e) < 0);
    CHECK(bh_gui_parse_keyboard_layout("us+++", 5, l, v, o, &e) < 0);
    CHECK(bh_gui_parse_keyboard_layout("++", 2, l, v, o, &e) < 0);
    CHECK(bh_gui_parse_keyboard_layout("fr(oss)++", 9, l, v, o, &e) < 0);
    char big[BH_GUI_LAYOUT_MAX + 8];
    memset(big, 'a', sizeof big);
    big[1] = big[3] = '+';
    CHECK(bh_gui_parse_keyboard_layout(big, sizeof big, l, v, o, &e) < 0); /* unterminated, too long */
    big[BH_GUI_LAYOUT_MAX - 1] = '\0';
    CHECK(bh_gui_parse_keyboard_layout(big, sizeof big, l, v, o, &e) == 0); /* 255 bytes fit */
    static const char names[] = "evdev\0pc105\0de,us\0nodeadkeys,\0grp:alt_shift_toggle";
    CHECK(bh_gui_layout_from_xkb_names(names, sizeof names, out, &e) == 0);
    CHECK(!strcmp(out, "de,us+nodeadkeys,+grp:alt_shift_toggle"));
    CHECK(bh_gui_layout_from_xkb_names(names, sizeof names - 1, out, &e) == 0); /* last NUL missing */
    CHECK(bh_gui_layout_from_xkb_names("evdev\0pc105\0de", 15, out, &e) < 0); /* three fields */
    CHECK(bh_gui_layout_from_xkb_names("", 0, out, &e) < 0);
    static const char nolayout[] = "evdev\0pc105\0\0\0";
    CHECK(bh_gui_layout_from_xkb_names(nolayout, sizeof nolayout, out, &e) < 0);
}

static void test_icon(void)
{
    bh_error e;
    uint8_t body[8 + 16];
    uint32_t hw[2] = { 2, 2 }, w, h;
    const uint8_t *px;
    memcpy(body, hw, 8);
    memset(body + 8, 0x7f, 16);
    CHECK(bh_gui_parse_window_icon(body, sizeof body, &w, &h, &px, &e) == 0 && w == 2 && h == 2 && px == body + 8);
    CHECK(bh_gui_parse_window_icon(body, sizeof body - 4, &w, &h, &px, &e) < 0); /* a pixel short */
    hw[0] = 0;
    memcpy(body, hw, 8);
    CHECK(bh_gui_parse_window_icon(body, sizeof body, &w, &h, &px, &e) < 0);
    hw[0] = 65, hw[1] = 1;
    memcpy(body, hw, 8);
    CHECK(bh_gui_parse_window_icon(body, sizeof body, &w, &h, &px, &e) < 0);
    CHECK(bh_gui_parse_window_icon(body, 4, &w, &h, &px, &e) < 0);
    struct bh_gui_hdr hd = { BH_GUI_MSG_WINDOW_ICON, 5, 8 + 64 * 64 * 4 };
    CHECK(bh_gui_check_agent_hdr(&hd, &e) == 0);
    hd.untrusted_len += 4;
    CHECK(bh_gui_check_agent_hdr(&hd, &e) < 0);
    hd.untrusted_len = 8 + 6; /* not whole pixels */
    CHECK(bh_gui_check_agent_hdr(&hd, &e) < 0);
    hd.untrusted_len = 8;
    CHECK(bh_gui_check_agent_hdr(&hd, &e) < 0);
    hd = (struct bh_gui_hdr){ BH_GUI_MSG_WINDOW_ICON, 0, 12 };
    CHECK(bh_gui_check_agent_hdr(&hd, &e) < 0);
    /* tint: values from qubesimgconverter's formula; alpha kept */
    CHECK(bh_gui_tint_argb(0xff00ff00, 0xcc0000) == 0xffff0000);
    CHECK(bh_gui_tint_argb(0x80000000, 0xcc0000) == 0x803f0000);
    CHECK(bh_gui_tint_argb(0x00ffffff, 0x3465a4) == 0x00bfdbff); /* white takes a quarter of the hue */
    CHECK(bh_gui_tint_argb(0xff808080, 0x555753) == 0xff7f9f60); /* the hue of "gray" (0x555753) at full saturation */
}

static void test_monitor_layout(void)
{
    bh_error e;
    struct bh_gui_monitor m[BH_GUI_MAX_MONITORS];
    const char *ok = "1920 1080 0 0 508 285\n1280 1024 1920 0\n";
    CHECK(bh_gui_parse_monitor_layout(ok, strlen(ok), m, &e) == 2);
    CHECK(m[0].w == 1920 && m[0].h == 1080 && m[0].w_mm == 508 && m[1].x == 1920 && m[1].w_mm == 0);
    const char *bad[] = { "", "1920 1080 0 0", "1920 1080 0\n", "1920 1080 0 0 5\n", "1920  1080 0 0\n",
                          "-1 1080 0 0\n", "0 1080 0 0\n", "20000 1080 0 0\n", "100 100 32700 0\n",
                          "100 100 0 0 0 10\n", "1920 1080 0 0 1 1 1\n", "1920 1080 0 0\n\n", "1e3 10 0 0\n",
                          "9999999 10 0 0\n", "10 10 0 0\r\n" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int r = bh_gui_parse_monitor_layout(bad[i], strlen(bad[i]), m, &e);
        CHECK(r < 0);
        if (r >= 0)
            fprintf(stderr, "accepted: %s\n", bad[i]);
    }
    char many[BH_GUI_LAYOUT_TEXT_MAX + 64] = "";
    for (int i = 0; i < 17; i++)
        strcat(many, "10 10 0 0\n");
    CHECK(bh_gui_parse_monitor_layout(many, strlen(many), m, &e) < 0); /* 17 monitors */
    /* what the daemon sends parses back; the physical size follows Qubes' DPI steps:
     * 1920 px on 600 mm is 81 DPI -> 96 -> 508 x 285 mm */
    struct bh_gui_monitor in[2] = { { 0, 0, 1920, 1080, 600, 340 }, { 1920, 0, 1280, 1024, 0, 0 } };
    char text[BH_GUI_LAYOUT_TEXT_MAX];
    bh_gui_format_monitor_layout(in, 2, text);
    CHECK(!strcmp(text, "1920 1080 0 0 508 285\n1280 1024 1920 0\n"));
    CHECK(bh_gui_parse_monitor_layout(text, strlen(text), m, &e) == 2);
    struct bh_gui_monitor hidpi = { 0, 0, 3840, 2160, 300, 170 }; /* 325 DPI -> 300 */
    bh_gui_format_monitor_layout(&hidpi, 1, text);
    CHECK(!strcmp(text, "3840 2160 0 0 325 182\n"));
}

static void test_layout_group(void)
{
    bh_error e;
    char out[BH_GUI_LAYOUT_MAX];
    CHECK(bh_gui_layout_group("us,de+,nodeadkeys+grp:caps_toggle", 1, out, &e) == 0 &&
          !strcmp(out, "de+nodeadkeys+grp:caps_toggle"));
    CHECK(bh_gui_layout_group("us,de+,nodeadkeys+grp:caps_toggle", 0, out, &e) == 0 &&
          !strcmp(out, "us++grp:caps_toggle"));
    CHECK(bh_gui_layout_group("us,de++", 3, out, &e) == 0 && !strcmp(out, "us++")); /* wraps */
    CHECK(bh_gui_layout_group("fr++", 0, out, &e) == 0 && !strcmp(out, "fr++"));
    CHECK(bh_gui_layout_group("us,,de++", 1, out, &e) < 0);   /* an empty group */
    CHECK(bh_gui_layout_group("us;rm -rf++", 0, out, &e) < 0); /* still checked */
}

int main(void)
{
    test_layout_group();
    test_monitor_layout();
    test_icon();
    test_keyboard_layout();
    test_headers();
    test_create();
    test_shmimage();
    test_strings();
    test_misc();
    test_chan();
    return tap_done();
}
