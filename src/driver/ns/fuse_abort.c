/* Aborting a dying qube's FUSE connections. Why: a FUSE server in the qube that reads a
 * request and never answers it, made by another thread of its own process, leaves that
 * thread in an uninterruptible wait that SIGKILL does not end (the kernel waits for the
 * answer; the server's own /dev/fuse descriptor keeps the connection open). The qube's
 * init would then never exit: Kill would cost bulkheadd its whole wait, the next start
 * would find the qube "already running" and its private image would stay bound. The
 * kernel's fusectl filesystem aborts a connection on request (every waiter gets
 * ENOTCONN), so the engine aborts each FUSE mount of the qube's mount namespace before
 * it kills. fusectl is reached through a detached mount (fsopen + fsmount: a mount fd
 * attached to no mount namespace, gone when closed), so the host's mount table is not
 * changed (systemd usually has it at /sys/fs/fuse/connections, a host without systemd
 * may not). Where the new mount API is refused, a short-lived child mounts it in a
 * private mount namespace instead: a fork of bulkheadd and an unshare(CLONE_NEWNS),
 * ~10 ms at every kill on this guest, against ~0.2 ms for the detached mount. */
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
#include <sys/syscall.h>
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

/* Writes "1" to each connection's abort file under the fusectl root dirfd; how many failed. */
static int abort_each(int ctl, const unsigned *minors, size_t n)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        char p[32];
        snprintf(p, sizeof p, "%u/abort", minors[i]);
        int fd = openat(ctl, p, O_WRONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || write(fd, "1", 1) != 1)
            bad++;
        if (fd >= 0)
            close(fd);
    }
    return bad;
}

/* A detached fusectl mount: its root as an fd, or -1 (errno) where the new mount API
 * is not available or refused. fusectl has one superblock for the whole host. */
static int fusectl_detached(void)
{
    int fs = (int)syscall(SYS_fsopen, "fusectl", FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int m = -1;
    if (syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        m = (int)syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
    int e = errno;
    close(fs);
    errno = e;
    return m;
}

/* The detached fusectl mount, made once per process and kept: closing it unmounts it,
 * and an unmount waits for an RCU grace period (1-2 ms here, in the Kill's path before
 * its SIGKILL). Kept by the process that made it only: a forked child (the Kill's, which
 * closes every inherited fd) makes its own. */
static int fusectl_fd = -1;
static pid_t fusectl_owner;

static int fusectl_root(void)
{
    if (fusectl_fd >= 0 && fusectl_owner == getpid())
        return fusectl_fd;
    fusectl_fd = fusectl_detached();
    fusectl_owner = getpid();
    return fusectl_fd;
}

void bh_ns_fusectl_forget_inherited(void)
{
    if (fusectl_fd >= 0 && fusectl_owner != getpid()) {
        close(fusectl_fd); /* the daemon's copy stays: no unmount here */
        fusectl_fd = -1;
    }
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
    int ctl = fusectl_root();
    if (ctl >= 0) {
        int bad = abort_each(ctl, minors, n);
        if (bad)
            bh_warn("aborting %d of %zu FUSE connection(s) of a dying qube failed", bad, n);
        return;
    }
    pid_t c = fork();
    if (c < 0) {
        bh_warn("aborting the FUSE connections of a dying qube: fork: %s", strerror(errno));
        return;
    }
    if (c == 0) {
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(1);
        const char *path = "/sys/fs/fuse/connections";
        if (mount("fusectl", path, "fusectl", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0 && errno != EBUSY)
            _exit(2);
        int dir = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        _exit(dir < 0 ? 2 : abort_each(dir, minors, n) ? 3 : 0);
    }
    int st;
    while (waitpid(c, &st, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(st) || WEXITSTATUS(st))
        bh_warn("aborting %zu FUSE connection(s) of a dying qube failed (status %d)", n, st);
}
