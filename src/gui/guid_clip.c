/* bulkhead-guid: Qubes' secure clipboard.
 *
 * Ctrl+Shift+C in a qube's window asks that qube's agent for its clipboard
 * (CLIPBOARD_REQ); the answer (CLIPBOARD_DATA, at most 65000 bytes) becomes the global
 * clipboard: <clipboard-dir>/clipboard.bin with the source qube's name (from us, not
 * the qube) in clipboard.source, as Qubes' /run/qubes/qubes-clipboard.bin{,.source}.
 * Every qube's daemon shares these files (an flock serialises them).
 * Ctrl+Shift+V in a window of qube T asks policy about qubes.ClipboardPaste from the
 * source to T (allow/deny/ask, through the qrexec policy engine); when allowed, the
 * data goes to T's agent and the global clipboard is emptied. The host's own X
 * clipboard is never touched. */
#include "guid.h"
#include "cleanup.h"
#include "io.h"
#include "log.h"
#include "names.h"
#include "qrexec/decide.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

void guid_notify(struct guid *g, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    bh_info("%s: %s", g->qube, msg);
    /* a desktop notification when the session has a notifier; never waited for */
    pid_t pid = fork();
    if (pid == 0) {
        if (fork() == 0) {
            int null = open("/dev/null", O_RDWR);
            if (null >= 0) {
                dup2(null, 0);
                dup2(null, 1);
                dup2(null, 2);
            }
            execlp("notify-send", "notify-send", "-a", "Bulkhead", "Qubes clipboard", msg, (char *)NULL);
            _exit(127);
        }
        _exit(0);
    }
    if (pid > 0)
        waitpid(pid, NULL, 0);
}

static int lock_dir(struct guid *g)
{
    if (bh_mkdir_p(g->clip_dir, 0700) < 0)
        return -1;
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/clipboard.lock", g->clip_dir);
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0 && flock(fd, LOCK_EX) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static int write_clip(struct guid *g, const void *data, size_t len, const char *source)
{
    char p[PATH_MAX];
    snprintf(p, sizeof p, "%s/clipboard.bin", g->clip_dir);
    if (bh_write_file_atomic(p, data, len, 0600) < 0)
        return -1;
    snprintf(p, sizeof p, "%s/clipboard.source", g->clip_dir);
    return bh_write_file_atomic(p, source, strlen(source), 0600);
}

void guid_clip_copy_request(struct guid *g, uint32_t remote)
{
    bh_error err;
    g->clip_copy_pending = true;
    if (bh_gui_chan_send(&g->ch, BH_GUI_MSG_CLIPBOARD_REQ, remote, NULL, 0, -1, &err) < 0)
        bh_warn("%s: %s", g->qube, err.msg);
}

void guid_clip_copy_data(struct guid *g, const uint8_t *data, size_t len)
{
    int lk = lock_dir(g);
    if (lk < 0) {
        bh_warn("%s: clipboard dir %s: %s", g->qube, g->clip_dir, strerror(errno));
        return;
    }
    int r = write_clip(g, data, len, g->qube);
    close(lk);
    if (r < 0)
        bh_warn("%s: cannot store the global clipboard", g->qube);
    else
        guid_notify(g, "Copied %zu bytes from %s to the global clipboard; press Ctrl+Shift+V in a qube's window "
                       "to paste", len, g->qube);
}

void guid_clip_paste(struct guid *g, uint32_t remote)
{
    int lk = lock_dir(g);
    if (lk < 0)
        return;
    char p[PATH_MAX];
    size_t slen = 0, dlen = 0;
    snprintf(p, sizeof p, "%s/clipboard.source", g->clip_dir);
    _cleanup_free_ char *src = bh_read_file(p, 64, &slen);
    snprintf(p, sizeof p, "%s/clipboard.bin", g->clip_dir);
    _cleanup_free_ char *data = bh_read_file(p, BH_GUI_MAX_CLIPBOARD, &dlen);
    if (!src || !slen || !data || !bh_qube_name_valid(src, NULL)) {
        close(lk);
        guid_notify(g, "The global clipboard is empty");
        return;
    }
    struct bh_qx_policy_ctx ctx = { .policy_dir = g->policy_dir, .ask_program = g->ask_program };
    struct bh_qx_decision d;
    bh_error err;
    if (bh_qx_policy_decide(&ctx, src, g->qube, "qubes.ClipboardPaste", &d, &err) < 0) {
        d.verdict = BH_QX_DENY;
        snprintf(d.rule, sizeof d.rule, "%s", err.msg);
    }
    if (d.verdict != BH_QX_ALLOW || strcmp(d.target, g->qube)) {
        close(lk);
        guid_notify(g, "Paste from %s into %s denied by policy (%s)", src, g->qube, d.rule);
        return;
    }
    if (bh_gui_chan_send(&g->ch, BH_GUI_MSG_CLIPBOARD_DATA, remote, data, dlen, -1, &err) < 0) {
        close(lk);
        bh_warn("%s: %s", g->qube, err.msg);
        return;
    }
    /* pasted once: the global clipboard is emptied, as in Qubes */
    write_clip(g, "", 0, "");
    close(lk);
    guid_notify(g, "Pasted %zu bytes from %s into %s", dlen, src, g->qube);
}
