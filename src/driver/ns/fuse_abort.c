/* Aborting a dying qube's FUSE connections. Why: a FUSE server in the qube that reads a
 * request and never answers it, made by another thread of its own process, leaves that
 * thread in an uninterruptible wait that SIGKILL does not end (the kernel waits for the
 * answer; the server's own /dev/fuse descriptor keeps the connection open). The qube's
 * init would then never exit: Kill would cost bulkheadd its whole wait, the next start
 * would find the qube "already running" and its private image would stay bound. The
 * kernel's fusectl filesystem aborts a connection on request (every waiter gets
 * ENOTCONN), so the engine aborts each FUSE mount of the qube's mount namespace before
 * it kills. fusectl is mounted in a short-lived child's private mount namespace, so the
 * host's mount table is not changed (systemd usually has it at /sys/fs/fuse/connections,
 * a host without systemd may not). */
#include "ns.h"
#include "io.h"
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_CONNS 256
#define MOUNTINFO_MAX (4u << 20)

/* The device minors (major 0: FUSE superblocks are anonymous devices, whose fusectl
 * directory is named by the number) of the FUSE mounts in a mountinfo text. */
static size_t fuse_minors(const char *mi, unsigned *out, size_t max)
{
    size_t n = 0;
    for (const char *l = mi; l && *l && n < max;) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        char line[4096];
        if (len < sizeof line) {
            memcpy(line, l, len);
            line[len] = 0;
            unsigned id, parent, major, minor;
            const char *sep = strstr(line, " - ");
            if (sep && sscanf(line, "%u %u %u:%u", &id, &parent, &major, &minor) == 4 && major == 0 &&
                !strncmp(sep + 3, "fuse", 4) && (sep[7] == ' ' || sep[7] == '.' || !strncmp(sep + 7, "blk ", 4))) {
                bool seen = false;
                for (size_t i = 0; i < n; i++)
                    seen |= out[i] == minor;
                if (!seen)
                    out[n++] = minor;
            }
        }
        l = nl ? nl + 1 : NULL;
    }
    return n;
}

void bh_ns_abort_fuse(pid_t init_pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/mountinfo", (int)init_pid);
    size_t len = 0;
    char *mi = bh_read_file(path, MOUNTINFO_MAX, &len);
    if (!mi)
        return;
    unsigned minors[MAX_CONNS];
    size_t n = fuse_minors(mi, minors, MAX_CONNS);
    free(mi);
    if (!n)
        return;
    pid_t c = fork();
    if (c < 0) {
        bh_warn("aborting the FUSE connections of a dying qube: fork: %s", strerror(errno));
        return;
    }
    if (c == 0) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(1);
        const char *ctl = "/sys/fs/fuse/connections";
        if (mount("fusectl", ctl, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 && errno != EBUSY)
            _exit(2);
        int bad = 0;
        for (size_t i = 0; i < n; i++) {
            char p[96];
            snprintf(p, sizeof p, "%s/%u/abort", ctl, minors[i]);
            int fd = open(p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
            if (fd < 0 || write(fd, "1", 1) != 1)
                bad++;
            if (fd >= 0)
                close(fd);
        }
        _exit(bad ? 3 : 0);
    }
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        bh_warn("aborting %zu FUSE connection(s) of a dying qube failed (status %d)", n, st);
}
