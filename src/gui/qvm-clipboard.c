/* qvm-clipboard: dom0's side of the global clipboard (what Qubes 4.3's clipboard widget
 * offers as "Copy dom0 clipboard", and the way out that Bulkhead adds with policy).
 *
 *   qvm-clipboard                 show the global clipboard's source and size
 *   qvm-clipboard --copy          the desktop's CLIPBOARD becomes the global clipboard,
 *                                 with source dom0 (paste it into a qube with
 *                                 Ctrl+Shift+V; policy decides, source @adminvm)
 *   qvm-clipboard --paste         the global clipboard becomes the desktop's CLIPBOARD,
 *                                 if policy allows qubes.ClipboardPaste from its source
 *                                 to dom0 (@adminvm); then it is emptied, as any paste
 *   qvm-clipboard --clear         empties the global clipboard
 *   options: [--runtime DIR] [--clipboard-dir DIR] [--policy-dir DIR]
 *
 * The global clipboard is the GUI daemons' <runtime>/gui/clipboard.{bin,source} (the
 * same lock). Qubes' default policy never allows a qube's data into dom0 (@anyvm does
 * not match dom0): --paste works only where the user wrote a rule for @adminvm. After
 * --paste the program stays in the background holding the selection until another
 * program on the desktop takes the clipboard. */
#include "cleanup.h"
#include "io.h"
#include "log.h"
#include "names.h"
#include "proto.h"
#include "qrexec/daemon_paths.h"
#include "qrexec/decide.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>
#include <xcb/xcb.h>

static const char *clip_dir;

static int lock_dir(void)
{
    if (bh_mkdir_p(clip_dir, 0700) < 0)
        return -1;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/clipboard.lock", clip_dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_clip(const void *data, size_t len, const char *source)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/clipboard.bin", clip_dir);
    if (bh_write_file_atomic(p, data, len, 0600) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/clipboard.source", clip_dir);
    return bh_write_file_atomic(p, source, strlen(source), 0600);
}

/* The global clipboard: *src and *data allocated (NULL when empty). */
static void read_clip(char **src, char **data, size_t *dlen)
{
    char p[PATH_MAX];
    size_t slen = 0;
    snprintf(p, sizeof p, "%s/clipboard.source", clip_dir);
    *src = bh_read_file(p, 64, &slen);
    snprintf(p, sizeof p, "%s/clipboard.bin", clip_dir);
    *data = bh_read_file(p, BH_GUI_MAX_CLIPBOARD, dlen);
    if (*src && (!slen || !bh_qube_name_valid(*src, NULL))) {
        free(*src);
        *src = NULL;
    }
}

static xcb_atom_t atom(xcb_connection_t *x, const char *name)
{
    xcb_intern_atom_reply_t *r = xcb_intern_atom_reply(x, xcb_intern_atom(x, 0, (uint16_t)strlen(name), name), NULL);
    xcb_atom_t a = r ? r->atom : XCB_ATOM_NONE;
    free(r);
    return a;
}

static xcb_connection_t *open_display(xcb_screen_t **screen)
{
    int sn;
    xcb_connection_t *x = xcb_connect(NULL, &sn);
    if (!x || xcb_connection_has_error(x)) {
        fprintf(stderr, "qvm-clipboard: cannot open the display %s\n", getenv("DISPLAY") ? getenv("DISPLAY") : "");
        return NULL;
    }
    xcb_screen_iterator_t it = xcb_setup_roots_iterator(xcb_get_setup(x));
    for (int i = 0; i < sn && it.rem; i++)
        xcb_screen_next(&it);
    *screen = it.data;
    return x;
}

static xcb_window_t helper_window(xcb_connection_t *x, xcb_screen_t *s)
{
    xcb_window_t w = xcb_generate_id(x);
    uint32_t mask = XCB_EVENT_MASK_PROPERTY_CHANGE;
    xcb_create_window(x, 0, w, s->root, -10, -10, 1, 1, 0, XCB_WINDOW_CLASS_INPUT_ONLY, XCB_COPY_FROM_PARENT,
                      XCB_CW_EVENT_MASK, &mask);
    return w;
}

/* Waits for the next event of one type (or an error) for at most ms. */
static xcb_generic_event_t *wait_event(xcb_connection_t *x, uint8_t type, int ms)
{
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        xcb_generic_event_t *ev;
        while ((ev = xcb_poll_for_event(x))) {
            if ((ev->response_type & 0x7f) == type)
                return ev;
            free(ev);
        }
        struct timespec t;
        clock_gettime(CLOCK_MONOTONIC, &t);
        int left = ms - (int)((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
        if (left <= 0 || xcb_connection_has_error(x))
            return NULL;
        struct pollfd p = { .fd = xcb_get_file_descriptor(x), .events = POLLIN };
        poll(&p, 1, left);
    }
}

/* --copy: the desktop's CLIPBOARD (UTF-8 text, at most Qubes' 65000 bytes) becomes the
 * global clipboard with source dom0. */
static int do_copy(void)
{
    xcb_screen_t *s;
    xcb_connection_t *x = open_display(&s);
    if (!x)
        return 1;
    xcb_window_t w = helper_window(x, s);
    xcb_atom_t clip = atom(x, "CLIPBOARD"), utf8 = atom(x, "UTF8_STRING"), prop = atom(x, "_BULKHEAD_CLIPBOARD"),
               incr = atom(x, "INCR");
    xcb_convert_selection(x, w, clip, utf8, prop, XCB_CURRENT_TIME);
    xcb_flush(x);
    xcb_selection_notify_event_t *n = (void *)wait_event(x, XCB_SELECTION_NOTIFY, 5000);
    int rc = 1;
    if (!n || n->property == XCB_NONE) {
        fprintf(stderr, "qvm-clipboard: the desktop's clipboard is empty or holds no text\n");
        goto out;
    }
    xcb_get_property_reply_t *r = xcb_get_property_reply(
        x, xcb_get_property(x, 1, w, prop, XCB_ATOM_ANY, 0, BH_GUI_MAX_CLIPBOARD / 4 + 1), NULL);
    if (!r) {
        fprintf(stderr, "qvm-clipboard: cannot read the desktop's clipboard\n");
        goto out;
    }
    size_t len = (size_t)xcb_get_property_value_length(r);
    if (r->type == incr || r->bytes_after || len > BH_GUI_MAX_CLIPBOARD) {
        fprintf(stderr, "qvm-clipboard: the desktop's clipboard holds more than %u bytes: not copied\n",
                BH_GUI_MAX_CLIPBOARD);
        free(r);
        goto out;
    }
    int lk = lock_dir();
    if (lk < 0 || write_clip(xcb_get_property_value(r), len, "dom0") < 0) {
        fprintf(stderr, "qvm-clipboard: cannot store the global clipboard in %s: %s\n", clip_dir, strerror(errno));
    } else {
        printf("Copied %zu bytes from dom0 to the global clipboard; press Ctrl+Shift+V in a qube's window to paste\n",
               len);
        rc = 0;
    }
    if (lk >= 0)
        close(lk);
    free(r);
out:
    free(n);
    xcb_disconnect(x);
    return rc;
}

/* Serves the desktop's requests for the CLIPBOARD we own until another program takes it. */
static void serve_selection(xcb_connection_t *x, xcb_window_t w, const char *data, size_t len)
{
    xcb_atom_t targets = atom(x, "TARGETS"), utf8 = atom(x, "UTF8_STRING"), clip = atom(x, "CLIPBOARD");
    xcb_generic_event_t *ev;
    while ((ev = xcb_wait_for_event(x))) {
        uint8_t type = ev->response_type & 0x7f;
        if (type == XCB_SELECTION_CLEAR) {
            free(ev);
            return;
        }
        if (type == XCB_SELECTION_REQUEST) {
            xcb_selection_request_event_t *e = (void *)ev;
            xcb_selection_notify_event_t n = { .response_type = XCB_SELECTION_NOTIFY, .time = e->time,
                                               .requestor = e->requestor, .selection = e->selection,
                                               .target = e->target, .property = XCB_NONE };
            xcb_atom_t prop = e->property ? e->property : e->target;
            if (e->selection == clip && e->target == targets) {
                xcb_atom_t t[] = { targets, utf8, XCB_ATOM_STRING };
                xcb_change_property(x, XCB_PROP_MODE_REPLACE, e->requestor, prop, XCB_ATOM_ATOM, 32, 3, t);
                n.property = prop;
            } else if (e->selection == clip && (e->target == utf8 || e->target == XCB_ATOM_STRING)) {
                xcb_change_property(x, XCB_PROP_MODE_REPLACE, e->requestor, prop, e->target, 8, (uint32_t)len,
                                    data);
                n.property = prop;
            }
            xcb_send_event(x, 0, e->requestor, 0, (const char *)&n);
            xcb_flush(x);
        }
        free(ev);
    }
}

/* The global clipboard, under its lock: returns the lock's fd (close to unlock), or -1
 * after saying why. */
static int lock_and_read(char **src, char **data, size_t *len)
{
    int lk = lock_dir();
    if (lk < 0) {
        fprintf(stderr, "qvm-clipboard: %s: %s\n", clip_dir, strerror(errno));
        return -1;
    }
    read_clip(src, data, len);
    return lk;
}

/* --paste: the global clipboard to the desktop, if policy allows it into dom0. */
static int do_paste(const char *policy_dir)
{
    _cleanup_free_ char *src = NULL, *data = NULL;
    size_t len = 0;
    int lk = lock_and_read(&src, &data, &len);
    if (lk < 0)
        return 1;
    if (!src || !data) {
        close(lk);
        fprintf(stderr, "qvm-clipboard: the global clipboard is empty\n");
        return 1;
    }
    if (strcmp(src, "dom0")) {
        /* a qube's data into dom0: Qubes' qubes.ClipboardPaste policy, target @adminvm */
        const char *ask = getenv("BULKHEAD_QREXEC_ASK");
        struct bh_qx_policy_ctx ctx = { .policy_dir = policy_dir, .ask_program = ask };
        struct bh_qx_decision d;
        bh_error err;
        if (bh_qx_policy_decide(&ctx, src, "@adminvm", "qubes.ClipboardPaste", &d, &err) < 0) {
            d.verdict = BH_QX_DENY;
            snprintf(d.rule, sizeof d.rule, "%s", err.msg);
        }
        if (d.verdict != BH_QX_ALLOW || (strcmp(d.target, "dom0") && strcmp(d.target, "@adminvm"))) {
            close(lk);
            fprintf(stderr, "qvm-clipboard: Paste from %s into dom0 denied by policy (%s)\n", src, d.rule);
            return 1;
        }
    }
    xcb_screen_t *s;
    xcb_connection_t *x = open_display(&s);
    if (!x) {
        close(lk);
        return 1;
    }
    xcb_window_t w = helper_window(x, s);
    xcb_atom_t clip = atom(x, "CLIPBOARD");
    xcb_set_selection_owner(x, w, clip, XCB_CURRENT_TIME);
    xcb_get_selection_owner_reply_t *o = xcb_get_selection_owner_reply(x, xcb_get_selection_owner(x, clip), NULL);
    bool owner = o && o->owner == w;
    free(o);
    if (!owner) {
        close(lk);
        fprintf(stderr, "qvm-clipboard: cannot take the desktop's clipboard\n");
        return 1;
    }
    /* pasted once: emptied, as every paste from the global clipboard */
    write_clip("", 0, "");
    close(lk);
    printf("Pasted %zu bytes from %s into the desktop's clipboard\n", len, src);
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return 1;
    if (pid > 0)
        _exit(0); /* the child holds the selection; our X connection is shared with it */
    setsid();
    int null = open("/dev/null", O_RDWR);
    if (null >= 0) {
        dup2(null, 0);
        dup2(null, 1);
        dup2(null, 2);
    }
    serve_selection(x, w, data, len);
    xcb_disconnect(x);
    return 0;
}

static int do_show(void)
{
    _cleanup_free_ char *src = NULL, *data = NULL;
    size_t len = 0;
    int lk = lock_and_read(&src, &data, &len);
    if (lk < 0)
        return 1;
    close(lk);
    if (!src)
        printf("The global clipboard is empty\n");
    else
        printf("%zu bytes from %s\n", len, src);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: qvm-clipboard [--copy | --paste | --clear] [--runtime DIR] [--clipboard-dir DIR]\n"
               "                     [--policy-dir DIR]\n");
}

int main(int argc, char **argv)
{
    bh_log_init("qvm-clipboard");
    static const struct option opts[] = {
        { "copy", no_argument, 0, 'c' }, { "paste", no_argument, 0, 'p' }, { "clear", no_argument, 0, 'x' },
        { "runtime", required_argument, 0, 'r' }, { "clipboard-dir", required_argument, 0, 'C' },
        { "policy-dir", required_argument, 0, 'P' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    int mode = 0, o;
    const char *runtime_opt = NULL, *policy_dir = NULL;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'c': case 'p': case 'x':
            if (mode) {
                usage(stderr);
                return 2;
            }
            mode = o;
            break;
        case 'r': runtime_opt = optarg; break;
        case 'C': clip_dir = optarg; break;
        case 'P': policy_dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    char cbuf[PATH_MAX], pbuf[PATH_MAX];
    if (!clip_dir) {
        snprintf(cbuf, sizeof cbuf, "%s/gui", bh_qx_runtime(runtime_opt));
        clip_dir = cbuf;
    }
    if (!policy_dir) {
        const char *root = getenv("BULKHEAD_ROOT");
        snprintf(pbuf, sizeof pbuf, "%s/policy.d", root && *root ? root : "/var/lib/bulkhead");
        policy_dir = pbuf;
    }
    switch (mode) {
    case 'c': return do_copy();
    case 'p': return do_paste(policy_dir);
    case 'x': {
        int lk = lock_dir();
        int rc = lk >= 0 && write_clip("", 0, "") == 0 ? 0 : 1;
        if (lk >= 0)
            close(lk);
        return rc;
    }
    default: return do_show();
    }
}
