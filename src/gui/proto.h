/* The GUI protocol between a qube's gui-agent and its GUI daemon on the host.
 *
 * Qubes' message set and layouts (qubes-gui-common, protocol 1.4): a 12-byte header
 * {type, window, untrusted_len} in host byte order, then a fixed-size body per type.
 * The transport is the qube's own vchan socket (port 6000, the qube is the server), a
 * byte stream. Instead of Xen grant references, a window's pixels live in a sealed
 * memfd that travels with MSG_WINDOW_DUMP as SCM_RIGHTS ancillary data (dump type
 * BH_GUI_DUMP_MEMFD); SHMIMAGE then names a damaged rectangle of that buffer.
 *
 * Everything an agent sends is untrusted. The daemon never uses untrusted_len to size a
 * read: each type has one exact body length (CLIPBOARD_DATA: at most
 * BH_GUI_MAX_CLIPBOARD), and a header whose untrusted_len differs is a protocol error
 * (Qubes only skips; we are stricter, an honest agent always sends the exact length).
 * The parse functions below are the only code that turns agent bytes into values; they
 * check every field and never read past `len`. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BH_GUI_PROTOCOL_VERSION ((1u << 16) | 4u) /* 1.4, as qubes-gui-common */
#define BH_GUI_VCHAN_PORT 6000u

/* Qubes' limits (qubes-gui-protocol.h) */
#define BH_GUI_MAX_CLIPBOARD 65000u
#define BH_GUI_MAX_WIDTH 16384u
#define BH_GUI_MAX_HEIGHT 6144u
#define BH_GUI_BPP 32u
/* Ours: windows a qube may have at once, and the largest coordinate we accept. */
#define BH_GUI_MAX_WINDOWS 512u
#define BH_GUI_MAX_COORD 32767
#define BH_GUI_CURSOR_DEFAULT 0u
#define BH_GUI_CURSOR_X11 0x100u
#define BH_GUI_CURSOR_X11_MAX 0x19au

enum bh_gui_msg_type {
    BH_GUI_MSG_MIN = 123,
    BH_GUI_MSG_KEYPRESS,      /* 124 daemon -> agent */
    BH_GUI_MSG_BUTTON,        /* daemon -> agent */
    BH_GUI_MSG_MOTION,        /* daemon -> agent */
    BH_GUI_MSG_CROSSING,      /* daemon -> agent */
    BH_GUI_MSG_FOCUS,         /* daemon -> agent */
    BH_GUI_MSG_RESIZE,        /* obsolete */
    BH_GUI_MSG_CREATE,        /* 130 agent -> daemon */
    BH_GUI_MSG_DESTROY,       /* agent -> daemon */
    BH_GUI_MSG_MAP,           /* both */
    BH_GUI_MSG_UNMAP,         /* agent -> daemon */
    BH_GUI_MSG_CONFIGURE,     /* both */
    BH_GUI_MSG_MFNDUMP,       /* Xen only: refused */
    BH_GUI_MSG_SHMIMAGE,      /* agent -> daemon */
    BH_GUI_MSG_CLOSE,         /* daemon -> agent */
    BH_GUI_MSG_EXECUTE,       /* obsolete: refused */
    BH_GUI_MSG_CLIPBOARD_REQ, /* daemon -> agent */
    BH_GUI_MSG_CLIPBOARD_DATA,/* 140 both */
    BH_GUI_MSG_WMNAME,        /* agent -> daemon */
    BH_GUI_MSG_KEYMAP_NOTIFY, /* daemon -> agent */
    BH_GUI_MSG_DOCK,          /* agent -> daemon */
    BH_GUI_MSG_WINDOW_HINTS,  /* agent -> daemon */
    BH_GUI_MSG_WINDOW_FLAGS,  /* both */
    BH_GUI_MSG_WMCLASS,       /* agent -> daemon */
    BH_GUI_MSG_WINDOW_DUMP,   /* agent -> daemon, with the buffer's memfd */
    BH_GUI_MSG_CURSOR,        /* agent -> daemon */
    BH_GUI_MSG_MAX,
};

/* Bulkhead's additions, daemon -> agent only (a qube never sends them, so the daemon
 * parses nothing new). Qubes passes the keyboard layout through QubesDB
 * (/keyboard-layout, read by the agent's qubes-keymap.sh); we have no QubesDB, so the
 * daemon sends the same "layout+variant+options" string on the GUI channel. */
#define BH_GUI_MSG_KEYBOARD_LAYOUT 0x10001u
#define BH_GUI_LAYOUT_MAX 256u /* as the keyboard_layout property */
struct bh_gui_keyboard_layout { char layout[BH_GUI_LAYOUT_MAX]; };

/* Agent -> daemon: a window's icon, {width, height} then width*height pixels as in
 * _NET_WM_ICON (uint32 ARGB, host order). Qubes sends icons through the
 * qubes.WindowIconUpdater qrexec service to a receiver in the desktop session; Bulkhead's
 * desktop session has no qrexec service socket, and its GUI daemon already owns the
 * windows, so the same pixels take the GUI channel. At most BH_GUI_ICON_MAX square (the
 * agent scales larger ones down), so a message stays small. */
#define BH_GUI_MSG_WINDOW_ICON 0x10002u
#define BH_GUI_ICON_MAX 64u
struct bh_gui_window_icon_hdr { uint32_t width, height; };
#define BH_GUI_ICON_MAX_LEN (sizeof(struct bh_gui_window_icon_hdr) + BH_GUI_ICON_MAX * BH_GUI_ICON_MAX * 4u)

/* Agent -> daemon, from an agent that cannot pass file descriptors: a VM qube, whose
 * channel crosses the virtio-serial bridge, which carries bytes only (Qubes shares the
 * pixels as Xen grant pages). Its WINDOW_DUMP has type BH_GUI_DUMP_INLINE and comes
 * without a memfd: the daemon makes the window's buffer itself, and PIXELS carries a
 * rectangle of it, {x, y, width, height} then width*height pixels (uint32, host order,
 * row after row), whole within the buffer and at most BH_GUI_PIXELS_MAX_LEN bytes in
 * all (the agent splits larger damage); the daemon then draws it as after a SHMIMAGE. */
#define BH_GUI_MSG_PIXELS 0x10003u
struct bh_gui_pixels_hdr { uint32_t x, y, width, height; };
#define BH_GUI_PIXELS_MAX_LEN BH_GUI_MAX_CLIPBOARD

/* Wire layouts (all fields uint32_t in host byte order, as Qubes) */
struct bh_gui_hdr { uint32_t type, window, untrusted_len; };
struct bh_gui_map_info { uint32_t transient_for, override_redirect; };
struct bh_gui_create { uint32_t x, y, width, height, parent, override_redirect; };
struct bh_gui_keypress { uint32_t type, x, y, state, keycode; };
struct bh_gui_button { uint32_t type, x, y, state, button; };
struct bh_gui_motion { uint32_t x, y, state, is_hint; };
struct bh_gui_crossing { uint32_t type, x, y, state, mode, detail, focus; };
struct bh_gui_configure { uint32_t x, y, width, height, override_redirect; };
struct bh_gui_shmimage { uint32_t x, y, width, height; };
struct bh_gui_focus { uint32_t type, mode, detail; };
struct bh_gui_version { uint32_t version; };
struct bh_gui_xconf { uint32_t w, h, depth, mem; };
struct bh_gui_wmname { char data[128]; };
struct bh_gui_keymap_notify { char keys[32]; };
struct bh_gui_window_hints {
    uint32_t flags, min_width, min_height, max_width, max_height, width_inc, height_inc,
        base_width, base_height;
};
struct bh_gui_window_flags { uint32_t flags_set, flags_unset; };
struct bh_gui_wmclass { char res_class[64], res_name[64]; };
struct bh_gui_window_dump_hdr { uint32_t type, width, height, bpp; };
struct bh_gui_cursor { uint32_t cursor; };

#define BH_GUI_WINDOW_FLAG_FULLSCREEN (1u << 0)
#define BH_GUI_WINDOW_FLAG_DEMANDS_ATTENTION (1u << 1)
#define BH_GUI_WINDOW_FLAG_MINIMIZE (1u << 2)
/* WM_NORMAL_HINTS flag bits that carry meaning in msg_window_hints (ICCCM) */
#define BH_GUI_HINT_PMINSIZE (1u << 4)
#define BH_GUI_HINT_PMAXSIZE (1u << 5)
#define BH_GUI_HINT_PRESIZEINC (1u << 6)
#define BH_GUI_HINT_PBASESIZE (1u << 8)

/* Qubes' WINDOW_DUMP_TYPE_GRANT_REFS is 0; ours is the memfd that comes with the
 * message, or no memfd and the pixels in PIXELS messages. */
#define BH_GUI_DUMP_MEMFD 1u
#define BH_GUI_DUMP_INLINE 2u

/* Exact body length of a message from the agent (-1: the agent may not send this type).
 * CLIPBOARD_DATA is variable: see bh_gui_agent_body_ok(). */
long bh_gui_agent_body_len(uint32_t type);
/* Whether a header from the agent is acceptable: a type it may send, and untrusted_len
 * exactly the body length (CLIPBOARD_DATA: at most BH_GUI_MAX_CLIPBOARD). */
int bh_gui_check_agent_hdr(const struct bh_gui_hdr *h, bh_error *err);
/* Same for the agent reading what the daemon sends. */
int bh_gui_check_daemon_hdr(const struct bh_gui_hdr *h, bh_error *err);
const char *bh_gui_msg_name(uint32_t type);

/* Validated values. Coordinates are signed (Qubes sends them as uint32 holding int). */
struct bh_gui_rect { int32_t x, y; uint32_t w, h; };

/* CREATE and CONFIGURE: size 1..MAX, position within +-BH_GUI_MAX_COORD. */
int bh_gui_parse_create(const void *body, size_t len, struct bh_gui_rect *r, bool *override_redirect,
                        uint32_t *parent, bh_error *err);
int bh_gui_parse_configure(const void *body, size_t len, struct bh_gui_rect *r, bool *override_redirect,
                           bh_error *err);
int bh_gui_parse_map(const void *body, size_t len, uint32_t *transient_for, bool *override_redirect,
                     bh_error *err);
/* SHMIMAGE: clipped to a win_w x win_h window; *empty is set when nothing remains. */
int bh_gui_parse_shmimage(const void *body, size_t len, uint32_t win_w, uint32_t win_h,
                          struct bh_gui_rect *r, bool *empty, bh_error *err);
/* WINDOW_DUMP header: our memfd or inline type (into *type), 32 bpp, size 1..MAX. */
int bh_gui_parse_window_dump(const void *body, size_t len, uint32_t *type, uint32_t *w, uint32_t *h, bh_error *err);
/* PIXELS for a buf_w x buf_h buffer: a rectangle of 1.. pixels each way wholly inside it,
 * exactly width*height pixels after the header; *pixels points into body. */
int bh_gui_parse_pixels(const void *body, size_t len, uint32_t buf_w, uint32_t buf_h, struct bh_gui_rect *r,
                        const uint8_t **pixels, bh_error *err);
/* The WINDOW_DUMP type in a complete message body (the channel asks, to know whether a
 * memfd belongs to it); 0 if the body is too short. */
uint32_t bh_gui_window_dump_type(const void *body, size_t len);
/* WMNAME: out (>= 128*3+1 bytes... use BH_GUI_TITLE_MAX) gets a sanitised UTF-8 title. */
#define BH_GUI_TITLE_MAX 512
int bh_gui_parse_wmname(const void *body, size_t len, char *out, size_t outsz, bh_error *err);
/* WMCLASS: both names reduced to [A-Za-z0-9_.+-] (others become '_'). */
int bh_gui_parse_wmclass(const void *body, size_t len, char *cls, char *name, size_t outsz, bh_error *err);
/* WINDOW_HINTS: values outside 0..MAX are dropped from flags. */
int bh_gui_parse_window_hints(const void *body, size_t len, struct bh_gui_window_hints *out, bh_error *err);
int bh_gui_parse_window_flags(const void *body, size_t len, uint32_t *set, uint32_t *unset, bh_error *err);
/* CURSOR: 0 (default) or CURSOR_X11 + n, n < 154 (an X11 cursor-font glyph when even;
 * an odd n is a mask and means the default cursor, as in Qubes). */
int bh_gui_parse_cursor(const void *body, size_t len, uint32_t *cursor, bh_error *err);
/* WINDOW_ICON: size 1..BH_GUI_ICON_MAX each way, exactly width*height pixels after the
 * header; *pixels points into body (4-byte values, possibly unaligned: use memcpy). */
int bh_gui_parse_window_icon(const void *body, size_t len, uint32_t *w, uint32_t *h, const uint8_t **pixels,
                             bh_error *err);
/* Qubes' icon tint (qubesimgconverter Image.tint): the pixel keeps its lightness and
 * alpha, its hue becomes the label colour's, so an icon shows which qube it is from. */
uint32_t bh_gui_tint_argb(uint32_t argb, uint32_t label_rgb);
/* Qubes' tray-icon tint (qubes-guid's default trayicon_mode "tint"): the pixel keeps its
 * lightness (HLS), hue and saturation become the label colour's. 0xRRGGBB in and out. */
uint32_t bh_gui_tint_tray(uint32_t rgb, uint32_t label_rgb);
/* CLIPBOARD_DATA from an agent: at most BH_GUI_MAX_CLIPBOARD bytes, any content. */
int bh_gui_parse_clipboard(const void *body, size_t len, bh_error *err);

/* Title sanitiser (also for the clipboard notification): copies valid UTF-8 and replaces
 * control characters (C0, DEL, C1), invalid sequences and bidi/format controls that could
 * reorder the daemon's "[qube] " prefix with '_'. Stops at the first NUL or at len.
 * out always NUL-terminated. */
void bh_gui_sanitize_utf8(const char *in, size_t len, char *out, size_t outsz);

/* "layout+variant+options" (Qubes' keyboard_layout): exactly two '+', a non-empty layout,
 * and only [A-Za-z0-9_,:-] (what setxkbmap names are made of; nothing a shell or
 * setxkbmap's own option parser would read as more). On success the three parts are
 * copied to layout, variant, options (each at least BH_GUI_LAYOUT_MAX bytes). */
int bh_gui_parse_keyboard_layout(const char *s, size_t len, char *layout, char *variant, char *options,
                                 bh_error *err);
/* XKB's _XKB_RULES_NAMES root property (rules, model, layout, variant, options, each
 * NUL-terminated) -> "layout+variant+options" in out (BH_GUI_LAYOUT_MAX bytes);
 * -1 when it does not hold a valid layout. */
int bh_gui_layout_from_xkb_names(const char *names, size_t len, char *out, bh_error *err);

/* Monitor layout, as Qubes' qubes.SetMonitorLayout service takes it on its stdin: one
 * line per monitor, "W H X Y" or "W H X Y W_MM H_MM" (decimal, space-separated, "\n"
 * at the end of each line). dom0 sends it; the qube's side still checks every value:
 * at most BH_GUI_MAX_MONITORS lines, sizes 1..MAX_WIDTH/MAX_HEIGHT, positions
 * 0..BH_GUI_MAX_COORD with the monitor's far edge within it too, millimetres 1..100000. */
#define BH_GUI_MAX_MONITORS 16
#define BH_GUI_LAYOUT_TEXT_MAX (BH_GUI_MAX_MONITORS * 64)
struct bh_gui_monitor { int32_t x, y; uint32_t w, h, w_mm, h_mm; /* mm 0: not given */ };
/* Returns the number of monitors (>= 1), or -1. */
int bh_gui_parse_monitor_layout(const char *s, size_t len, struct bh_gui_monitor *out, bh_error *err);
/* The text for monitors m[0..n) (n <= BH_GUI_MAX_MONITORS); out holds at least
 * BH_GUI_LAYOUT_TEXT_MAX bytes. Physical sizes go out as Qubes' qvm-start-daemon sends
 * them: not the real ones (a fingerprint of the user's screens), but the size the
 * monitor would have at its DPI rounded to 96, 150, 200 or 300. */
void bh_gui_format_monitor_layout(const struct bh_gui_monitor *m, unsigned n, char *out);

/* "l1,l2,..+v1,v2,..+options" -> the layout of one XKB group, "lN+vN+options", as Qubes'
 * qvm-start-daemon gives a qube the desktop's selected group only (a qube's own XKB
 * state would otherwise stay in its first group whatever the desktop switched to).
 * A group past the list is the first one (XKB wraps it). out: BH_GUI_LAYOUT_MAX bytes. */
int bh_gui_layout_group(const char *layout, unsigned group, char *out, bh_error *err);

/* Label colour "0xRRGGBB" -> 0xRRGGBB; -1 when malformed. */
long bh_gui_parse_color(const char *s);
