/* bulkhead-guid: the host-side GUI daemon of one qube (Qubes' qubes-guid).
 *
 * It connects to the qube's gui-agent over the qube's vchan socket (port 6000) and shows
 * the qube's windows on the host display: every window is a host "frame" window whose
 * background is the qube's label colour, with the qube's pixels in a child window inset
 * by BH_GUID_BORDER, so the frame shows under any (or no) window manager and the qube
 * cannot draw on it. The label colour, name and index come from the command line, which
 * qvm-start-daemon fills from bulkheadd's store; nothing of it comes from the qube. */
#pragma once
#include "chan.h"
#include "proto.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <xcb/shm.h>
#include <xcb/xcb.h>

#define BH_GUID_BORDER 2

struct guid_win {
    uint32_t remote;              /* the agent's window id */
    xcb_window_t frame, content;  /* ours */
    struct bh_gui_rect r;         /* content geometry on the host screen (clamped) */
    bool override_redirect, mapped, reparented;
    bool docked;                  /* in the desktop's system tray (guid_tray.c) */
    bool embedded;                /* docked, and the tray said EMBEDDED_NOTIFY since its
                                   * last reparent: only then may the frameless window show */
    /* a fullscreen request: with allow_fullscreen the qube's pixels cover the whole
     * screen (inset 0, no frame showing, as under Qubes' window manager); without, the
     * window is maximised inside its frame (Qubes turns it into a maximise) */
    bool fullscreen, attention;
    /* the window manager (the user) made the window fullscreen on its own: the frame's
     * _NET_WM_STATE has _NET_WM_STATE_FULLSCREEN that the daemon did not put there */
    bool wm_fullscreen;
    uint32_t inset;               /* where the content sits in the frame: BORDER or 0 */
    struct bh_gui_rect saved;     /* geometry before fullscreen */
    struct bh_gui_rect fs_rect;   /* where fullscreen (or its maximise) put the content */
    uint16_t cfg_seq;             /* our last ConfigureWindow on the frame */
    uint32_t transient_for;
    int memfd;                    /* the sealed buffer, -1 until WINDOW_DUMP */
    uint32_t buf_w, buf_h;
    xcb_shm_seg_t seg;            /* host X attachment of memfd, 0 if none */
    uint8_t *map;                 /* read-only mapping when the host has no MIT-SHM fds */
    size_t maplen;
    uint8_t *inl;                 /* inline buffer (VM agent): our writable mapping of memfd */
    bool dirty;
    int32_t dx0, dy0, dx1, dy1;   /* damaged area not drawn yet */
    char title[BH_GUI_TITLE_MAX];
    /* rate limits (guid_rate.c): titles and icons applied this second; what came past
     * the limit waits here, the latest one only, until the next second */
    uint8_t titles_now, icons_now;
    bool title_pending;
    char pending_title[BH_GUI_TITLE_MAX];
    uint32_t *pending_icon;       /* {w, h, raw ARGB...} or NULL */
    uint32_t flags_acked;         /* WINDOW_FLAGS the agent was last told (FULLSCREEN) */
};

/* At most this many title and icon changes of one window reach the host display per
 * second; a qube that sends more has the excess coalesced (the newest one is kept and
 * shown in the next second), so it cannot keep the daemon, the X server and the
 * desktop's taskbar busy with property changes. */
#define BH_GUID_TITLES_PER_SEC 8
#define BH_GUID_ICONS_PER_SEC 4
/* Tray icons one qube may have in the desktop's tray (Qubes has no limit but its window
 * count): the panel is shared by all qubes and dom0. */
#define BH_GUID_MAX_DOCKED 16

struct guid {
    /* who we are (from dom0) */
    const char *qube;
    uint32_t qid;
    uint32_t color;               /* 0xRRGGBB */
    const char *label;
    uint32_t label_index;
    const char *policy_dir, *ask_program, *clip_dir;
    /* host display */
    xcb_connection_t *x;
    xcb_screen_t *screen;
    bool have_shm_fd;
    size_t inline_bytes;          /* buffers made for an inline agent (ours, not the qube's) */
    xcb_gcontext_t gc;
    xcb_atom_t a_net_wm_name, a_utf8, a_wm_protocols, a_wm_delete, a_vmname, a_label, a_label_color,
        a_vmwindowid, a_net_wm_state, a_state_attention, a_wm_transient, a_xkb_names, a_net_wm_icon, a_state_fullscreen,
        a_state_max_vert, a_state_max_horz, a_tray_selection, a_tray_opcode, a_xembed, a_xembed_info, a_manager;
    xcb_keysym_t *keysyms;        /* keyboard mapping of the host */
    uint8_t min_keycode, keysyms_per_code;
    int nkeycodes;
    xcb_font_t cursor_font;
    /* the daemon's own cursor-font cursors, made on first use and kept (Qubes makes them
     * all at start): a qube's CURSOR only picks one of them */
    xcb_cursor_t cursors[(BH_GUI_CURSOR_X11_MAX - BH_GUI_CURSOR_X11 + 1) / 2];
    /* the desktop's selected XKB group: a qube following the desktop gets that group's
     * layout only, as Qubes (0 without XKB) */
    uint8_t xkb_event;            /* XKB's event number, 0 without XKB */
    unsigned host_group;
    /* the desktop's monitors (guid_monitors.c) */
    uint32_t root_w, root_h;      /* the host's root window, followed through RandR */
    bool have_randr15;
    uint8_t randr_event;          /* RandR's first event number */
    struct bh_gui_monitor mons[BH_GUI_MAX_MONITORS];
    unsigned nmons;
    uint64_t monitors_read_ms;
    bool send_monitor_layout;
    bool monitors_forced;         /* a RandR event came: read them now */     /* to the qube's qubes.SetMonitorLayout (Qubes' default) */
    bool layout_started, layout_again;
    pid_t layout_pid;             /* the qrexec call under way, -1 if none */
    char layout_sent[BH_GUI_LAYOUT_TEXT_MAX];
    uint64_t rate_second;         /* the second the rate counters count (CLOCK_MONOTONIC) */
    unsigned long long rate_dropped; /* title/icon changes coalesced away */
    /* the qube's keyboard_layout when set explicitly in the store ("" = follow the
     * host's layout, as a Qubes qube follows its GUI qube's) */
    char layout[BH_GUI_LAYOUT_MAX];
    char sent_layout[BH_GUI_LAYOUT_MAX]; /* last one sent to the agent */
    /* the qube */
    struct bh_gui_chan ch;
    struct guid_win *wins;
    unsigned nwins;
    bool clip_copy_pending;
    bool allow_fullscreen;        /* Qubes' gui-allow-fullscreen feature */
    bool from_store;              /* identity and keyboard_layout from bulkheadd */
    unsigned long long refused;   /* messages refused (logged) */
};

/* guid_win.c: host windows */
int guid_x_open(struct guid *g, bh_error *err);
struct guid_win *guid_find_remote(struct guid *g, uint32_t remote);
struct guid_win *guid_find_x(struct guid *g, xcb_window_t w);
int guid_win_create(struct guid *g, uint32_t remote, const struct bh_gui_rect *r, bool override_redirect);
void guid_win_destroy(struct guid *g, struct guid_win *w);
void guid_win_configure(struct guid *g, struct guid_win *w, const struct bh_gui_rect *r);
void guid_win_map(struct guid *g, struct guid_win *w, uint32_t transient_for, bool override_redirect);
void guid_win_unmap(struct guid *g, struct guid_win *w);
void guid_win_title(struct guid *g, struct guid_win *w, const char *title);
void guid_win_class(struct guid *g, struct guid_win *w, const char *cls, const char *name);
void guid_win_hints(struct guid *g, struct guid_win *w, const struct bh_gui_window_hints *h);
/* Returns true when the window's geometry changed (the agent must be told). */
bool guid_win_flags(struct guid *g, struct guid_win *w, uint32_t set, uint32_t unset);
/* The frame's _NET_WM_STATE changed (the window manager, or the daemon itself): true
 * when the window's fullscreen as the desktop has it is not what the agent was told. */
bool guid_win_wm_state(struct guid *g, struct guid_win *w);
void guid_win_cursor(struct guid *g, struct guid_win *w, uint32_t cursor);
/* pixels: iw*ih ARGB values (unaligned) already checked by bh_gui_parse_window_icon */
void guid_win_icon(struct guid *g, struct guid_win *w, uint32_t iw, uint32_t ih, const uint8_t *pixels);
/* takes ownership of memfd (closes it on refusal) */
int guid_win_buffer(struct guid *g, struct guid_win *w, int memfd, uint32_t bw, uint32_t bh, bh_error *err);
/* A buffer of our own for an agent that sends its pixels inline (PIXELS); all of a
 * qube's together at most BH_GUID_INLINE_MAX bytes (a 4K screen is 32 MiB). */
#define BH_GUID_INLINE_MAX ((size_t)256 << 20)
int guid_win_buffer_inline(struct guid *g, struct guid_win *w, uint32_t bw, uint32_t bh, bh_error *err);
/* PIXELS: the rectangle's rows into the inline buffer, then drawn. */
int guid_win_pixels(struct guid_win *w, const struct bh_gui_rect *r, const uint8_t *pixels, bh_error *err);
void guid_win_damage(struct guid_win *w, const struct bh_gui_rect *r);
void guid_win_draw(struct guid *g, struct guid_win *w);
xcb_keysym_t guid_keysym(struct guid *g, uint8_t keycode);
/* (Re)reads the host's keyboard mapping (for the clipboard keys). */
void guid_load_keymap(struct guid *g);
/* An XKB event: true when the desktop's selected group changed. */
bool guid_xkb_event(struct guid *g, const xcb_generic_event_t *ev);
/* The host display's current XKB layout as "layout+variant+options", of its selected
 * group only; -1 if unknown. */
int guid_host_layout(struct guid *g, char out[BH_GUI_LAYOUT_MAX]);

/* Fits a window to the monitors again after they changed (clamped to its monitor,
 * fullscreen to its monitor's size); true when it moved (the agent must be told). */
bool guid_win_refit(struct guid *g, struct guid_win *w);

/* guid_monitors.c: the desktop's monitor layout */
void guid_monitors_init(struct guid *g);
/* Reads the monitors again; true when they changed. */
bool guid_monitors_read(struct guid *g);
/* The monitor a rectangle overlaps most, else the nearest one. */
const struct bh_gui_monitor *guid_monitor_of(struct guid *g, const struct bh_gui_rect *r);
/* Called every round (forced: RandR event or SIGHUP): reads the monitors when due,
 * refits the windows and sends the layout to the qube when it changed. */
void guid_monitors_tick(struct guid *g, bool forced);
/* The next tick sends the monitor layout to the qube even if it has not changed. */
void guid_monitors_resend(struct guid *g);
/* guid.c: every window refitted, the agent told of those that moved */
void guid_windows_replace(struct guid *g);

/* guid_tray.c: DOCK, a qube's tray icons in the desktop's system tray */
void guid_tray_init(struct guid *g, int screen_number);
void guid_tray_dock(struct guid *g, struct guid_win *w);
/* A client message on the root window or a docked window: true when it was the tray's. */
bool guid_tray_client_message(struct guid *g, const xcb_client_message_event_t *e);
/* The window got (in) or lost the keyboard focus: FOCUS to the agent, after the host's
 * pressed keys (KEYMAP_NOTIFY) when it got it, as for a FocusIn on the frame. */
void guid_send_focus(struct guid *g, struct guid_win *w, bool in, uint8_t mode, uint8_t detail);
/* A docked window was reparented (into a tray, or back to the root window when its
 * tray went) or mapped by someone else: it shows only while a tray holds it. */
void guid_tray_reparented(struct guid *g, struct guid_win *w, xcb_window_t parent);
void guid_tray_mapped(struct guid *g, struct guid_win *w);
/* Draws the clipped damage x0..x1, y0..y1 of a docked window, tinted. */
bool guid_tray_draw(struct guid *g, struct guid_win *w, int32_t x0, int32_t y0, int32_t x1, int32_t y1);

/* guid_rate.c: the per-window limits on title and icon changes */
void guid_rate_title(struct guid *g, struct guid_win *w, const char *title);
void guid_rate_icon(struct guid *g, struct guid_win *w, uint32_t iw, uint32_t ih, const uint8_t *pixels);
/* A new second: the counters start again and what waited is shown. Returns the ms
 * until the next second when something still waits, else -1. */
int guid_rate_tick(struct guid *g);
void guid_rate_forget(struct guid_win *w);

/* guid_clip.c: the global clipboard (Ctrl+Shift+C / Ctrl+Shift+V) */
void guid_clip_copy_request(struct guid *g, uint32_t remote);
void guid_clip_copy_data(struct guid *g, const uint8_t *data, size_t len);
void guid_clip_paste(struct guid *g, uint32_t remote);
void guid_notify(struct guid *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
