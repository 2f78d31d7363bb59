/* bulkhead-vchan-bridge: one side of the vchan multiplexer (mux.h).
 *
 *   host:  bulkhead-vchan-bridge --dir <runtime>/qubes/N/vchan --connect <qemu port socket>
 *   guest: bulkhead-vchan-bridge --guest --dir /run/qubes/vchan (--port /dev/vportNpM | --port-fd N)
 *
 * Listening sockets created in --dir by real programs are announced to the other side
 * (inotify), which binds a proxy listener of the same name in its own directory; every
 * connection accepted on a proxy becomes a stream that the other side connects to the
 * real socket. Each stream direction has a window (BH_MUX_WINDOW) acknowledged by the
 * receiver, so a slow reader stalls only its own stream and no side buffers more than
 * window x streams. The host side runs as the qube's own host UID with no_new_privs:
 * it can do in the vchan directory what an `ns` qube's root can, nothing more.
 * A protocol violation by the other side ends the bridge (that qube loses qrexec);
 * the host bridge also ends when QEMU closes the port socket.
 *
 * The host side sends SYNC as its first frame and answers every HELLO with one; the
 * guest repeats HELLO until a SYNC arrives (a frame sent before the guest opened its
 * port is dropped by the guest kernel), and announces nothing before it.
 * SIGUSR1 on the host side sends SHUTDOWN: the guest side passes SIGTERM to PID 1. */
#include "mux.h"
#include "bridge_supervise.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 128
#define MAX_NAMES 256
#define OUT_MAX (48u << 20)

enum { K_TRANSPORT = 1, K_INOTIFY, K_SIGNAL, K_PROXY, K_CONN };

struct conn {
    bool used;
    uint32_t id;
    int fd;
    uint32_t unacked;      /* sent to the peer, not yet acknowledged */
    uint8_t *out;          /* from the peer, not yet written to fd */
    size_t out_len;
    bool local_eof, peer_eof, shut_wr;
};
struct proxy {
    bool used;
    char name[BH_MUX_NAME_MAX];
    int fd;
    ino_t ino;
};

static struct conn conns[MAX_CONNS];
static struct proxy proxies[MAX_NAMES];
static char announced[MAX_NAMES][BH_MUX_NAME_MAX];
static int ep, tfd = -1, infd, sigfd;
static bool guest, synced, heard; /* heard: the host got a frame from the guest */
static unsigned connections;       /* host: to QEMU's port so far (again while nothing is heard) */
static bool retry_out;             /* guest: output waits for the host to connect */
static uint32_t next_id;
static uint8_t *tout;
static size_t tout_len, tout_cap;
static uint8_t tin[BH_MUX_HDR + BH_MUX_DATA_MAX + 65536];
static size_t tin_len;

static bool tracing; /* --trace: what the bridge does, on stderr (debug qubes) */

__attribute__((format(printf, 1, 2))) static void trace(const char *fmt, ...)
{
    if (!tracing)
        return;
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    fprintf(stderr, "[%ld.%03ld] bridge (%s): ", (long)t.tv_sec, t.tv_nsec / 1000000, guest ? "guest" : "host");
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
}

static void die(const char *what)
{
    fprintf(stderr, "bulkhead-vchan-bridge (%s): %s\n", guest ? "guest" : "host", what);
    exit(1);
}

static void ep_set(int fd, uint32_t ev, int kind, int idx, bool add)
{
    struct epoll_event e = { .events = ev, .data.u64 = (uint64_t)kind << 32 | (uint32_t)idx };
    if (epoll_ctl(ep, add ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &e) < 0)
        die("epoll_ctl");
}

/* ---- transport ---- */

static void send_frame(uint32_t type, uint32_t id, const void *data, uint32_t len)
{
    if (tout_len + BH_MUX_HDR + len > OUT_MAX)
        die("transport output over its limit");
    if (tout_len + BH_MUX_HDR + len > tout_cap) {
        size_t cap = tout_cap ? tout_cap : 65536;
        while (cap < tout_len + BH_MUX_HDR + len)
            cap *= 2;
        uint8_t *n = realloc(tout, cap);
        if (!n)
            die("out of memory");
        tout = n;
        tout_cap = cap;
    }
    if (type != BH_MUX_DATA && type != BH_MUX_ACK)
        trace("queue type %u id %u len %u", type, id, len);
    bh_mux_header(tout + tout_len, type, id, len);
    if (len)
        memcpy(tout + tout_len + BH_MUX_HDR, data, len);
    tout_len += BH_MUX_HDR + len;
}

static void flush_transport(void)
{
    retry_out = false;
    while (tout_len) {
        ssize_t n = write(tfd, tout, tout_len);
        if (n >= 0 || errno != EAGAIN)
            trace("write %zu: %zd%s%s", tout_len, n, n < 0 ? " " : "", n < 0 ? strerror(errno) : "");
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            /* guest: the host side is not connected right now (QEMU's socket has no
             * client, e.g. while the host bridge connects again): keep it, retry */
            if (guest && errno == EPIPE) {
                retry_out = true;
                break;
            }
            die("transport write failed");
        }
        memmove(tout, tout + n, tout_len - (size_t)n);
        tout_len -= (size_t)n;
    }
    ep_set(tfd, EPOLLIN | (tout_len ? EPOLLOUT : 0), K_TRANSPORT, 0, false);
}

/* ---- streams ---- */

static struct conn *conn_find(uint32_t id)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (conns[i].used && conns[i].id == id)
            return &conns[i];
    return NULL;
}

static void conn_free(struct conn *c)
{
    close(c->fd); /* also leaves the epoll set */
    free(c->out);
    memset(c, 0, sizeof *c);
}

static void conn_update(struct conn *c)
{
    if (c->local_eof && c->peer_eof && c->out_len == 0) {
        conn_free(c);
        return;
    }
    uint32_t ev = 0;
    if (!c->local_eof && c->unacked < BH_MUX_WINDOW)
        ev |= EPOLLIN;
    if (c->out_len)
        ev |= EPOLLOUT;
    ep_set(c->fd, ev, K_CONN, (int)(c - conns), false);
}

static struct conn *conn_new(uint32_t id, int fd)
{
    for (int i = 0; i < MAX_CONNS; i++)
        if (!conns[i].used) {
            struct conn *c = &conns[i];
            *c = (struct conn){ .used = true, .id = id, .fd = fd };
            ep_set(fd, EPOLLIN, K_CONN, i, true);
            return c;
        }
    return NULL;
}

static void conn_abort(struct conn *c)
{
    send_frame(BH_MUX_CLOSE, c->id, NULL, 0);
    conn_free(c);
}

static void conn_readable(struct conn *c)
{
    static uint8_t buf[BH_MUX_DATA_MAX];
    /* EPOLLHUP/ERR come even when we do not ask for input: with the window full (or
     * after EOF) there is nothing to read now, and read(fd, buf, 0) would look like EOF */
    if (c->local_eof || c->unacked >= BH_MUX_WINDOW)
        return;
    size_t room = BH_MUX_WINDOW - c->unacked;
    if (room > sizeof buf)
        room = sizeof buf;
    ssize_t n = read(c->fd, buf, room);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n < 0) {
        conn_abort(c);
        return;
    }
    if (n == 0) {
        c->local_eof = true;
        send_frame(BH_MUX_EOF, c->id, NULL, 0);
    } else {
        c->unacked += (uint32_t)n;
        send_frame(BH_MUX_DATA, c->id, buf, (uint32_t)n);
    }
    conn_update(c);
}

static void conn_writable(struct conn *c)
{
    if (c->out_len) {
        ssize_t n = write(c->fd, c->out, c->out_len);
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            /* the local reader is slow: wait for room (EPOLLOUT). Returning without
             * asking for it left the rest here unwritten and unacknowledged for
             * ever, and the peer's window full: the stream hung */
            conn_update(c);
            return;
        }
        if (n < 0) {
            conn_abort(c);
            return;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
        uint8_t ack[4] = { (uint8_t)n, (uint8_t)(n >> 8), (uint8_t)(n >> 16), (uint8_t)(n >> 24) };
        send_frame(BH_MUX_ACK, c->id, ack, 4);
    }
    if (!c->out_len && c->peer_eof && !c->shut_wr) {
        shutdown(c->fd, SHUT_WR);
        c->shut_wr = true;
    }
    conn_update(c);
}

/* ---- names in our directory ---- */

static struct proxy *proxy_find(const char *name)
{
    for (int i = 0; i < MAX_NAMES; i++)
        if (proxies[i].used && !strcmp(proxies[i].name, name))
            return &proxies[i];
    return NULL;
}

static void proxy_drop(struct proxy *p, bool unlink_it)
{
    struct stat st;
    if (unlink_it && lstat(p->name, &st) == 0 && st.st_ino == p->ino)
        unlink(p->name);
    close(p->fd);
    memset(p, 0, sizeof *p);
}

static void proxy_add(const char *name)
{
    struct stat st;
    if (proxy_find(name) || lstat(name, &st) == 0)
        return; /* a real socket of ours (or anything else) keeps its name */
    for (int i = 0; i < MAX_NAMES; i++) {
        if (proxies[i].used)
            continue;
        /* bound and listening under a name nobody looks for, then moved into place
         * (never over an existing name): a client that sees the name can connect at
         * once, instead of meeting ECONNREFUSED between bind and listen */
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof a.sun_path, ".proxy.%s", name);
        unlink(a.sun_path);
        mode_t old = umask(0);
        int r = fd < 0 ? -1 : bind(fd, (struct sockaddr *)&a, sizeof a);
        umask(old);
        if (r < 0 || listen(fd, 16) < 0 || lstat(a.sun_path, &st) < 0 ||
            syscall(SYS_renameat2, AT_FDCWD, a.sun_path, AT_FDCWD, name, RENAME_NOREPLACE) < 0) {
            if (r == 0)
                unlink(a.sun_path);
            if (fd >= 0)
                close(fd);
            return;
        }
        proxies[i] = (struct proxy){ .used = true, .fd = fd, .ino = st.st_ino };
        snprintf(proxies[i].name, sizeof proxies[i].name, "%s", name);
        ep_set(fd, EPOLLIN, K_PROXY, i, true);
        return;
    }
}

static int announced_find(const char *name)
{
    for (int i = 0; i < MAX_NAMES; i++)
        if (announced[i][0] && !strcmp(announced[i], name))
            return i;
    return -1;
}

static void announce(const char *name)
{
    struct stat st;
    struct proxy *p = proxy_find(name);
    if (!synced || lstat(name, &st) < 0 || !S_ISSOCK(st.st_mode) || (p && p->ino == st.st_ino))
        return;
    if (!bh_mux_name_ok((const uint8_t *)name, strlen(name)) || announced_find(name) >= 0)
        return;
    for (int i = 0; i < MAX_NAMES; i++)
        if (!announced[i][0]) {
            snprintf(announced[i], BH_MUX_NAME_MAX, "%s", name);
            send_frame(BH_MUX_LISTEN, 0, name, (uint32_t)strlen(name));
            return;
        }
}

static void name_gone(const char *name)
{
    struct stat st;
    int i = announced_find(name);
    if (i >= 0 && lstat(name, &st) < 0) {
        announced[i][0] = '\0';
        send_frame(BH_MUX_UNLISTEN, 0, name, (uint32_t)strlen(name));
    }
    struct proxy *p = proxy_find(name);
    if (p && (lstat(name, &st) < 0 || st.st_ino != p->ino))
        proxy_drop(p, false); /* someone else took the name: they win */
}

static void scan_dir(void)
{
    DIR *d = opendir(".");
    if (!d)
        die("opendir");
    struct dirent *e;
    while ((e = readdir(d)))
        announce(e->d_name);
    closedir(d);
}

static void on_inotify(void)
{
    _Alignas(struct inotify_event) char buf[8192];
    ssize_t n = read(infd, buf, sizeof buf);
    for (ssize_t off = 0; n > 0 && off < n;) {
        struct inotify_event *ev = (struct inotify_event *)(buf + off);
        if (ev->len) {
            if (ev->mask & (IN_CREATE | IN_MOVED_TO))
                announce(ev->name);
            if (ev->mask & (IN_DELETE | IN_MOVED_FROM))
                name_gone(ev->name);
        }
        if (ev->mask & IN_Q_OVERFLOW)
            scan_dir();
        off += (ssize_t)sizeof *ev + ev->len;
    }
}

/* connect to a real socket in our directory, never through a symlink */
static int connect_local(const char *name)
{
    for (int attempt = 0; attempt < 20; attempt++) {
        int pfd = open(name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (pfd < 0)
            return -1;
        struct stat st;
        if (fstat(pfd, &st) < 0 || !S_ISSOCK(st.st_mode)) {
            close(pfd);
            return -1;
        }
        struct proxy *p = proxy_find(name);
        if (p && p->ino == st.st_ino) {
            close(pfd); /* our own proxy: would loop */
            return -1;
        }
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        /* through the checked fd; the guest side has no /proc of its own (its root is
         * the initramfs) and connects by name in its private directory */
        if (guest)
            snprintf(a.sun_path, sizeof a.sun_path, "%s", name);
        else
            snprintf(a.sun_path, sizeof a.sun_path, "/proc/self/fd/%d", pfd);
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        int r = fd < 0 ? -1 : connect(fd, (struct sockaddr *)&a, sizeof a);
        int e = errno;
        close(pfd);
        if (r == 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            return fd;
        }
        if (fd >= 0)
            close(fd);
        if (e != ECONNREFUSED) /* bound but not yet listening: the server is a moment away */
            return -1;
        nanosleep(&(struct timespec){ 0, 5 * 1000 * 1000 }, NULL);
    }
    return -1;
}

static void on_proxy(struct proxy *p)
{
    int fd = accept4(p->fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (fd < 0)
        return;
    uint32_t id = next_id;
    next_id += 2;
    if (!conn_new(id, fd)) {
        close(fd); /* too many streams: this connection is refused */
        return;
    }
    send_frame(BH_MUX_OPEN, id, p->name, (uint32_t)strlen(p->name));
}

/* ---- frames from the other side ---- */

static void on_frame(const struct bh_mux_frame *f)
{
    char name[BH_MUX_NAME_MAX] = "";
    if (f->type == BH_MUX_LISTEN || f->type == BH_MUX_UNLISTEN || f->type == BH_MUX_OPEN)
        memcpy(name, f->payload, f->len); /* checked by the parser: < NAME_MAX, no NUL */
    struct conn *c = f->type >= BH_MUX_DATA && f->type <= BH_MUX_ACK ? conn_find(f->id) : NULL;
    switch (f->type) {
    case BH_MUX_LISTEN:
        proxy_add(name);
        break;
    case BH_MUX_UNLISTEN: {
        struct proxy *p = proxy_find(name);
        if (p)
            proxy_drop(p, true);
        break;
    }
    case BH_MUX_OPEN: {
        if ((f->id & 1) == (guest ? 1u : 0u) || conn_find(f->id))
            die("OPEN with an id that is not the peer's");
        int fd = connect_local(name);
        if (fd < 0 || !conn_new(f->id, fd)) {
            if (fd >= 0)
                close(fd);
            send_frame(BH_MUX_CLOSE, f->id, NULL, 0);
        }
        break;
    }
    case BH_MUX_DATA:
        if (!c)
            break; /* closed meanwhile */
        if (c->peer_eof || c->out_len + f->len > BH_MUX_WINDOW)
            die("DATA beyond the window or after EOF");
        if (!c->out && !(c->out = malloc(BH_MUX_WINDOW)))
            die("out of memory");
        memcpy(c->out + c->out_len, f->payload, f->len);
        c->out_len += f->len;
        conn_writable(c);
        break;
    case BH_MUX_EOF:
        if (c) {
            c->peer_eof = true;
            conn_writable(c);
        }
        break;
    case BH_MUX_CLOSE:
        if (c)
            conn_free(c);
        break;
    case BH_MUX_ACK: {
        uint32_t n = (uint32_t)f->payload[0] | (uint32_t)f->payload[1] << 8 | (uint32_t)f->payload[2] << 16 |
                     (uint32_t)f->payload[3] << 24;
        if (!c)
            break;
        if (n > c->unacked)
            die("ACK of more than was sent");
        c->unacked -= n;
        conn_update(c);
        break;
    }
    case BH_MUX_SYNC:
        if (!guest)
            die("SYNC from the guest");
        /* first SYNC, the answer to a repeated HELLO, or the host connected again (an
         * announcement may have been lost meanwhile): announce every listener (again;
         * the host ignores names it has) */
        synced = true;
        memset(announced, 0, sizeof announced);
        scan_dir();
        break;
    case BH_MUX_HELLO:
        if (guest)
            die("HELLO from the host");
        send_frame(BH_MUX_SYNC, 0, NULL, 0);
        break;
    case BH_MUX_SHUTDOWN:
        if (!guest)
            die("SHUTDOWN from the guest");
        kill(1, SIGTERM);
        break;
    }
}

static void on_transport(uint32_t ev)
{
    if (ev & EPOLLOUT)
        flush_transport();
    if (!(ev & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        return;
    ssize_t n = read(tfd, tin + tin_len, sizeof tin - tin_len);
    static int last_kind = 2; /* trace changes only: a guest polls EOF 20 times a second */
    int kind = n > 0 ? 1 : n == 0 ? 0 : -1;
    if (kind != last_kind || kind < 0)
        trace("read (events %#x): %zd%s%s", ev, n, n < 0 ? " " : "", n < 0 ? strerror(errno) : "");
    last_kind = kind;
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        if (guest) { /* host side not connected (yet, or for a moment): wait */
            nanosleep(&(struct timespec){ 0, 50 * 1000 * 1000 }, NULL);
            return;
        }
        exit(0); /* QEMU went away: the qube is gone */
    }
    tin_len += (size_t)n;
    size_t off = 0;
    for (;;) {
        struct bh_mux_frame f;
        long r = bh_mux_parse(tin + off, tin_len - off, &f);
        if (r < 0)
            die("malformed frame");
        if (r == 0)
            break;
        if (!guest && !heard) /* one line per boot: what a boot that never ends got to */
            fprintf(stderr, "bulkhead-vchan-bridge: the guest's bridge spoke (connection %u to QEMU's port)\n",
                    connections);
        heard = true;
        trace("frame type %u id %u len %u", f.type, f.id, f.len);
        on_frame(&f);
        off += (size_t)r;
    }
    memmove(tin, tin + off, tin_len - off);
    tin_len -= off;
    flush_transport();
}

static int open_transport(const char *port, const char *sock_path)
{
    if (port)
        return open(port, O_RDWR | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    /* QEMU makes the socket soon after it starts (bulkheadd starts us without waiting
     * for it): try every 10 ms for 30 s */
    for (int i = 0; i < 3000; i++) {
        int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_un a = { .sun_family = AF_UNIX };
        snprintf(a.sun_path, sizeof a.sun_path, "%s", sock_path);
        if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            connections++;
            return fd;
        }
        if (fd >= 0)
            close(fd);
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    return -1;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *port = NULL, *sock_path = NULL;
    int port_fd = -1;
    pid_t qemu = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--guest"))
            guest = true;
        else if (!strcmp(argv[i], "--trace"))
            tracing = true;
        else if (i + 1 < argc && !strcmp(argv[i], "--dir"))
            dir = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--port"))
            port = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--port-fd"))
            port_fd = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--connect"))
            sock_path = argv[++i];
        else if (i + 1 < argc && !strcmp(argv[i], "--qemu-pid"))
            qemu = (pid_t)atoi(argv[++i]);
        else
            die("usage: --dir DIR (--port DEV --guest | --connect SOCKET [--qemu-pid PID])");
    }
    if (port_fd > 2) {
        fcntl(port_fd, F_SETFD, FD_CLOEXEC);
        fcntl(port_fd, F_SETFL, fcntl(port_fd, F_GETFL) | O_NONBLOCK);
        port = "";
    }
    if (!dir || (!port == !sock_path))
        die("usage: --dir DIR (--port DEV --guest | --connect SOCKET)");
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    if (!guest && qemu > 1)
        bh_bridge_supervise(qemu); /* returns in the worker */
    signal(SIGPIPE, SIG_IGN);
    if (chdir(dir) < 0)
        die("chdir to the vchan directory");
    next_id = guest ? 1 : 2;
    ep = epoll_create1(EPOLL_CLOEXEC);
    infd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    if (ep < 0 || infd < 0 || inotify_add_watch(infd, ".", IN_CREATE | IN_MOVED_TO | IN_DELETE | IN_MOVED_FROM) < 0)
        die("epoll/inotify");
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGUSR1);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    sigfd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK);
    tfd = port_fd > 2 ? port_fd : open_transport(port, sock_path);
    if (tfd < 0 || sigfd < 0)
        die("cannot open the transport");
    ep_set(tfd, EPOLLIN, K_TRANSPORT, 0, true);
    ep_set(infd, EPOLLIN, K_INOTIFY, 0, true);
    ep_set(sigfd, EPOLLIN, K_SIGNAL, 0, true);
    if (!guest) {
        send_frame(BH_MUX_SYNC, 0, NULL, 0);
        synced = true;
        scan_dir();
        flush_transport();
    } else {
        /* at once, not after the first 200 ms wait: the host has been connected since
         * long before the guest booted, and its SYNC is the answer to this */
        send_frame(BH_MUX_HELLO, 0, NULL, 0);
        flush_transport();
    }
    for (;;) {
        struct epoll_event evs[64];
        int n = epoll_wait(ep, evs, 64, guest && (!synced || retry_out) ? 200 : !guest && !heard ? 2000 : -1);
        if (guest && !synced)
            send_frame(BH_MUX_HELLO, 0, NULL, 0);
        if (!guest && !heard && n == 0) {
            /* Nothing from the guest yet: connect again. A connection made while the
             * guest's virtio-serial driver was still probing can leave the guest
             * believing the host side is closed; a new one tells it again. */
            trace("nothing heard: connecting again");
            epoll_ctl(ep, EPOLL_CTL_DEL, tfd, NULL);
            close(tfd);
            tout_len = 0;
            tin_len = 0;
            tfd = open_transport(NULL, sock_path);
            if (tfd < 0)
                die("cannot open the transport again");
            ep_set(tfd, EPOLLIN, K_TRANSPORT, 0, true);
            send_frame(BH_MUX_SYNC, 0, NULL, 0);
        }
        for (int i = 0; i < n; i++) {
            int kind = (int)(evs[i].data.u64 >> 32), idx = (int)(uint32_t)evs[i].data.u64;
            if (kind == K_TRANSPORT)
                on_transport(evs[i].events);
            else if (kind == K_INOTIFY)
                on_inotify();
            else if (kind == K_SIGNAL) {
                struct signalfd_siginfo si;
                while (read(sigfd, &si, sizeof si) == sizeof si)
                    if (!guest)
                        send_frame(BH_MUX_SHUTDOWN, 0, NULL, 0);
            } else if (kind == K_PROXY && proxies[idx].used)
                on_proxy(&proxies[idx]);
            else if (kind == K_CONN && conns[idx].used) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
                    conn_writable(&conns[idx]);
                if (conns[idx].used && (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR)))
                    conn_readable(&conns[idx]);
            }
        }
        flush_transport();
    }
}
