#include "vchan.h"
#include "cleanup.h"
#include "log.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

long long bh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

const char *bh_vchan_dir(void)
{
    const char *d = getenv("VCHAN_SOCKET_DIR");
    return d && *d ? d : BH_VCHAN_DEFAULT_DIR;
}

int bh_vchan_own_domain(const char *dir)
{
    const char *e = getenv("VCHAN_DOMAIN");
    if (!e || !*e)
        e = getenv("BULKHEAD_QID");
    if (e && *e)
        return atoi(e);
    _cleanup_closedir_ DIR *d = opendir(dir);
    if (!d)
        return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        unsigned me, zero, port;
        char tail[8];
        if (sscanf(de->d_name, "vchan.%u.%u.%u.%7s", &me, &zero, &port, tail) == 4 && zero == 0 &&
            port == 512 && !strcmp(tail, "sock"))
            return (int)me;
    }
    return 0;
}

int bh_vchan_path(char *out, size_t size, const char *dir, uint32_t server, uint32_t client,
                  uint32_t port)
{
    int n = snprintf(out, size, "%s/vchan.%u.%u.%u.sock", dir, server, client, port);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof *sa);
    sa->sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa->sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

int bh_unix_listen(const char *path, unsigned mode, bh_error *err)
{
    struct sockaddr_un sa;
    if (fill_addr(&sa, path) < 0)
        return bh_fail_errno(err, "socket path %s", path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bh_fail_errno(err, "socket");
    /* unlink never follows a symlink: it only removes the name in that dir. */
    if (unlink(path) < 0 && errno != ENOENT)
        return bh_fail_errno(err, "removing stale %s", path);
    mode_t old = umask(~mode & 0777);
    int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0)
        return bh_fail_errno(err, "bind %s", path);
    if (listen(fd, 64) < 0)
        return bh_fail_errno(err, "listen %s", path);
    return steal_fd(&fd);
}

int bh_unix_connect(const char *path, bh_error *err)
{
    struct sockaddr_un sa;
    if (fill_addr(&sa, path) < 0)
        return bh_fail_errno(err, "socket path %s", path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bh_fail_errno(err, "socket");
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return bh_fail_errno(err, "connect %s", path);
    return steal_fd(&fd);
}

int bh_vchan_listen(const char *dir, uint32_t server, uint32_t client, uint32_t port, bh_error *err)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (bh_vchan_path(path, sizeof path, dir, server, client, port) < 0)
        return bh_fail_errno(err, "vchan path in %s", dir);
    return bh_unix_listen(path, 0666, err);
}

int bh_vchan_accept(int lfd, const char *dir, uint32_t server, uint32_t client, uint32_t port,
                    int timeout_ms, bh_error *err)
{
    return bh_vchan_accept_peer(lfd, dir, server, client, port, (uid_t)-1, 0, timeout_ms, err);
}

static bool uid_in(uid_t uid, uid_t first, uint32_t count)
{
    return uid >= first && (uint64_t)uid - first < (count ? count : 1);
}

int bh_vchan_accept_peer(int lfd, const char *dir, uint32_t server, uint32_t client, uint32_t port,
                         uid_t want_uid, uint32_t uid_count, int timeout_ms, bh_error *err)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    bool have_path = bh_vchan_path(path, sizeof path, dir, server, client, port) == 0;
    long long deadline = timeout_ms < 0 ? -1 : bh_now_ms() + timeout_ms;
    unsigned dropped = 0;
    long wrong_uid = -1;
    int fd = -1;
    for (;;) {
        int wait_ms = -1;
        if (deadline >= 0) {
            long long left = deadline - bh_now_ms();
            wait_ms = left > 0 ? (int)(left > 0x7fffffff ? 0x7fffffff : left) : 0;
        }
        struct pollfd p = { .fd = lfd, .events = POLLIN };
        int r = poll(&p, 1, wait_ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return bh_fail_errno(err, "poll");
        if (r == 0)
            break;
        fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN)
                continue;
            return bh_fail_errno(err, "accept");
        }
        if (want_uid == (uid_t)-1)
            break;
        /* Anyone who may reach the dir (the ns engine's is 1777, the VM engine's host
         * side 1770 with the call group every qube's call processes have) could connect
         * first: only the expected qube's side gets the stream. */
        struct ucred uc = { .pid = 0, .uid = (uid_t)-1, .gid = (gid_t)-1 };
        socklen_t ul = sizeof uc;
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) == 0 && uid_in(uc.uid, want_uid, uid_count))
            break;
        if (!dropped++)
            bh_warn("%s/vchan.%u.%u.%u.sock: connection from UID %ld (pid %ld), not the qube's %u%s: dropped",
                    dir, server, client, port, (long)uc.uid, (long)uc.pid, (unsigned)want_uid,
                    uid_count > 1 ? " range" : "");
        wrong_uid = (long)uc.uid;
        close(fd);
        fd = -1;
    }
    if (dropped > 1)
        bh_warn("%s/vchan.%u.%u.%u.sock: %u connections of other UIDs dropped", dir, server, client, port, dropped);
    if (fd < 0) {
        if (dropped)
            return bh_fail(err, EACCES, "vchan connection timeout: only UID %ld connected, not the qube's %u%s",
                           wrong_uid, (unsigned)want_uid, uid_count > 1 ? " range" : "");
        return bh_fail(err, ETIMEDOUT, "vchan connection timeout");
    }
    if (have_path)
        unlink(path);
    return fd;
}

/* One connect attempt to dirfd/name without following a symlink there: the name is
 * opened O_PATH|O_NOFOLLOW, must be a socket, and is reached through /proc/self/fd. */
static int connect_nofollow(int dirfd, const char *name)
{
    _cleanup_close_ int pfd = openat(dirfd, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0)
        return -1;
    struct stat st;
    if (fstat(pfd, &st) < 0)
        return -1;
    if (!S_ISSOCK(st.st_mode)) {
        errno = S_ISLNK(st.st_mode) ? ELOOP : ENOTSOCK;
        return -1;
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    snprintf(sa.sun_path, sizeof sa.sun_path, "/proc/self/fd/%d", pfd);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        return -1;
    return steal_fd(&fd);
}

int bh_vchan_connect(const char *dir, uint32_t server, uint32_t client, uint32_t port,
                     int timeout_ms, bh_error *err)
{
    return bh_vchan_connect_peer(dir, server, client, port, (uid_t)-1, 0, timeout_ms, err);
}

int bh_vchan_connect_peer(const char *dir, uint32_t server, uint32_t client, uint32_t port,
                          uid_t want_uid, uint32_t uid_count, int timeout_ms, bh_error *err)
{
    char name[64];
    snprintf(name, sizeof name, "vchan.%u.%u.%u.sock", server, client, port);
    _cleanup_close_ int dirfd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dirfd < 0)
        return bh_fail_errno(err, "vchan dir %s", dir);
    long long deadline = timeout_ms < 0 ? -1 : bh_now_ms() + timeout_ms;
    int delay_us = 50;
    long wrong_uid = -2; /* the last refused listener's UID (-2: none refused) */
    for (;;) {
        bool refused = false;
        int fd = connect_nofollow(dirfd, name);
        if (fd >= 0 && want_uid != (uid_t)-1) {
            /* Anyone who may create names in the dir (the VM engine's group, the ns
             * engine's sticky 1777 dir) could have bound this one first: the listener
             * must be the qube's own host identity, or it is not the qube's side. */
            struct ucred uc;
            socklen_t ul = sizeof uc;
            bool got = getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &ul) == 0;
            if (!got || !uid_in(uc.uid, want_uid, uid_count)) {
                wrong_uid = got ? (long)uc.uid : -1;
                close(fd);
                fd = -1;
                refused = true;
            }
        }
        if (fd >= 0)
            return fd;
        if (!refused && errno != ENOENT && errno != ECONNREFUSED)
            return bh_fail_errno(err, "connect %s/%s", dir, name);
        long long now = bh_now_ms();
        if (deadline >= 0 && now >= deadline) {
            if (wrong_uid != -2)
                return bh_fail(err, EACCES, "%s/%s is bound by UID %ld, not the qube's %u%s: refused",
                               dir, name, wrong_uid, (unsigned)want_uid, uid_count > 1 ? " range" : "");
            return bh_fail(err, ETIMEDOUT, "vchan connection timeout (%s/%s)", dir, name);
        }
        /* The server usually binds within a millisecond of our being told to connect:
         * poll fast first, then back off (Qubes' libvchan-socket polls every 100 ms).
         * Not inotify: closing an inotify fd waits for an RCU grace period (~10 ms). */
        usleep((useconds_t)delay_us);
        if (delay_us < 20000)
            delay_us *= 2;
    }
}
