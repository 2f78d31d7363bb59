#include "server.h"
#include "api.h"
#include "buf.h"
#include "call_auth.h"
#include "cleanup.h"
#include "events.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "qrexec_ids.h"
#include "request.h"
#include "waiters.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

struct conn {
    int fd;
    bh_buf in, out;
    bool request_done;  /* EOF seen and request handled */
    bool streaming;     /* admin.Events */
    bool pending;       /* reply parked until a qube halts (waiters.c) */
    bool in_loop;       /* registered with the event loop */
    int64_t deadline;
    int pass_fd;        /* sent with the reply's first bytes (SCM_RIGHTS), or -1 */
    uid_t peer_uid;     /* as the kernel named the peer at accept */
    struct conn *prev, *next;
};

static struct bh_app *srv_app;
static int listen_fd = -1;
static bool accept_paused; /* out of file descriptors: wait for a connection to close */
static char *sock_path;
static struct conn *conns;
static size_t nconns;

static void on_accept(void *ctx, uint32_t ev);

uid_t bh_server_peer_uid(void *conn)
{
    struct conn *c = conn;
    return c ? c->peer_uid : 0;
}

pid_t bh_server_peer_pid(void *conn)
{
    struct conn *c = conn;
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (!c || getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return 0;
    return uc.pid;
}

/* The listening socket stays readable while connections wait in the backlog, so when
 * accept fails for want of file descriptors we stop watching it (or the loop would
 * spin) until a descriptor is freed. */
static void accept_pause(void)
{
    static int64_t last_warn = -1;
    if (accept_paused)
        return;
    if (last_warn < 0 || bh_now_ms() - last_warn > 10000) {
        bh_warn("out of file descriptors (%zu connections): not accepting until one closes", nconns);
        last_warn = bh_now_ms();
    }
    accept_paused = bh_loop_mod(listen_fd, 0, on_accept, NULL) == 0;
}

static void accept_resume(void)
{
    if (accept_paused && listen_fd >= 0 && bh_loop_mod(listen_fd, EPOLLIN, on_accept, NULL) == 0)
        accept_paused = false;
}

static void conn_close(struct conn *c)
{
    if (c->in_loop)
        bh_loop_del(c->fd);
    if (c->streaming)
        bh_events_unsubscribe(c);
    if (c->pending)
        bh_waiters_drop_conn(c);
    close(c->fd);
    if (c->pass_fd >= 0)
        close(c->pass_fd);
    bh_buf_free(&c->in);
    bh_buf_free(&c->out);
    if (c->prev)
        c->prev->next = c->next;
    else
        conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    nconns--;
    free(c);
    accept_resume();
}

static void conn_cb(void *ctx, uint32_t ev);

/* What we wait for: input until the request is complete; output while any is queued;
 * hang-ups always (EPOLLHUP is implicit). After the client's half-close, EPOLLIN and
 * EPOLLRDHUP stay ready forever, so we stop asking for them. */
static void conn_rearm(struct conn *c)
{
    uint32_t ev = 0;
    if (!c->request_done)
        ev |= EPOLLIN;
    if (c->out.len)
        ev |= EPOLLOUT;
    if (bh_loop_mod(c->fd, ev, conn_cb, c) == 0)
        c->in_loop = true;
}

/* Writes what it can; returns -1 if the connection is gone. */
/* The reply's first bytes with c->pass_fd attached: the kernel hands the client a
 * copy of the fd (one that reads the reply with read() gets none: it is dropped). */
static ssize_t send_with_fd(struct conn *c)
{
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct iovec iov = { .iov_base = c->out.data, .iov_len = c->out.len };
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    struct cmsghdr *cm = CMSG_FIRSTHDR(&m);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &c->pass_fd, sizeof(int));
    ssize_t w = sendmsg(c->fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (w > 0) {
        close(c->pass_fd);
        c->pass_fd = -1;
    }
    return w;
}

void bh_server_pass_fd(void *conn, int fd)
{
    struct conn *c = conn;
    if (!c) {
        close(fd);
        return;
    }
    if (c->pass_fd >= 0)
        close(c->pass_fd);
    c->pass_fd = fd;
}

static int conn_flush(struct conn *c)
{
    while (c->out.len) {
        ssize_t w = c->pass_fd >= 0 ? send_with_fd(c)
                                    : send(c->fd, c->out.data, c->out.len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                break;
            return -1;
        }
        bh_buf_consume(&c->out, (size_t)w);
    }
    if (!c->out.len && c->request_done && !c->streaming && !c->pending)
        return -1; /* reply fully sent: done */
    conn_rearm(c);
    return 0;
}

static void on_event(void *ctx, const char *subject, const char *event, const char *const *kv)
{
    struct conn *c = ctx;
    if (bh_reply_event(&c->out, subject, event, kv) < 0 || conn_flush(c) < 0) {
        /* Queue over its bound (a client that does not read) or a dead peer. */
        bh_debug("dropping event subscriber fd %d", c->fd);
        conn_close(c);
    }
}

int bh_server_subscribe(void *conn, const char *filter)
{
    struct conn *c = conn;
    if (!c) /* a request without a connection (tests, the fuzz harness): nothing to stream to */
        return -1;
    if (bh_events_subscribe(filter, on_event, c) < 0)
        return -1;
    c->streaming = true;
    return 0;
}

static void handle_request(struct conn *c)
{
    struct bh_request req;
    bh_error err = { 0 };
    c->request_done = true;
    if (bh_request_parse(c->in.data ? c->in.data : "", c->in.len, &req, &err) < 0) {
        /* As qubesd: a malformed header gets no answer, the connection is dropped. */
        bh_debug("malformed request on fd %d: %s", c->fd, err.msg);
        conn_close(c);
        return;
    }
    /* Events and replies go to c->out; its limit bounds a stream that is not read. */
    int stream = bh_dispatch(srv_app, &req, &c->out, c);
    bh_buf_free(&c->in);
    if (stream == BH_DISPATCH_PARKED)
        c->pending = true;
    else if (stream) {
        const char *kv[] = { NULL };
        if (bh_reply_event(&c->out, "", "connection-established", kv) < 0) {
            conn_close(c);
            return;
        }
    }
    if (conn_flush(c) < 0)
        conn_close(c);
    /* Work deferred past this reply (a used disposable's removal) is done before any
     * further request, even one accepted in the same loop iteration. */
    bh_loop_run_deferred();
}

void bh_server_finish(void *conn, const struct bh_exc *e)
{
    struct conn *c = conn;
    c->pending = false;
    int r = e ? bh_reply_exc(&c->out, e) : bh_reply_ok(&c->out, "", 0);
    if (r < 0 || conn_flush(c) < 0)
        conn_close(c);
}

/* Reads what the client has sent; at EOF handles the request. Returns true if the
 * connection still waits for input (c stays valid), false if it was handled or closed
 * (c may be gone). */
static bool conn_read(struct conn *c)
{
    char chunk[16384];
    for (;;) {
        ssize_t r = recv(c->fd, chunk, sizeof chunk, MSG_DONTWAIT);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN)
                return true;
            conn_close(c);
            return false;
        }
        if (r == 0) {
            handle_request(c);
            return false;
        }
        if (bh_buf_add(&c->in, chunk, (size_t)r) < 0) {
            bh_debug("request over the limit on fd %d: dropped", c->fd);
            conn_close(c);
            return false;
        }
    }
}

static void conn_cb(void *ctx, uint32_t ev)
{
    struct conn *c = ctx;
    if (ev & EPOLLIN && !c->request_done) {
        conn_read(c);
        return;
    }
    if (ev & (EPOLLHUP | EPOLLERR)) {
        conn_close(c);
        return;
    }
    if (ev & EPOLLOUT && conn_flush(c) < 0)
        conn_close(c);
}

/* The socket's mode lets root and the "dom0 qrexec" group in; the group alone is not
 * trusted as identity (a host whose IDs were given to a user by /etc/subgid, which
 * bulkheadd refuses at start, is one way to hold it): the peer must also be root or one
 * of the qubes' call identities (qrexec_ids.h), as the kernel names it. */
static bool peer_may_connect(int fd, uid_t *uid)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return false;
    *uid = uc.uid;
    if (uc.uid == 0)
        return true;
    /* a call identity: each request it makes is then held to its own qube (call_auth.h) */
    if (bh_uid_is_call_identity(uc.uid) && uc.gid == BH_QX_CALL_GID)
        return true;
    static int64_t last_warn = -1;
    if (last_warn < 0 || bh_now_ms() - last_warn > 10000) {
        bh_warn("refused a connection from uid %u gid %u pid %d: neither root nor a qrexec call",
                (unsigned)uc.uid, (unsigned)uc.gid, (int)uc.pid);
        last_warn = bh_now_ms();
    }
    return false;
}

/* One qube's call identity may hold at most this many connections at once (as many as
 * it may have calls in flight): the 4096 of all together must not be one qube's to take
 * from dom0's tools and the other qubes. Root (dom0's tools) has no cap of its own. */
#define BH_SERVER_MAX_CONNS_PER_CALLER 64

static bool over_uid_cap(uid_t uid)
{
    if (uid == 0)
        return false;
    unsigned n = 0;
    for (struct conn *c = conns; c; c = c->next)
        if (c->peer_uid == uid && ++n >= BH_SERVER_MAX_CONNS_PER_CALLER) {
            static int64_t last_warn = -1;
            if (last_warn < 0 || bh_now_ms() - last_warn > 10000) {
                last_warn = bh_now_ms();
                bh_warn("UID %u holds %u connections: refusing more", (unsigned)uid, n);
            }
            return true;
        }
    return false;
}

/* Connections accepted per wake-up: under a constant stream of clients the loop must
 * still come back to serve slow connections, events and the tick. */
#define ACCEPT_BATCH 64

static void on_accept(void *ctx, uint32_t ev)
{
    (void)ctx;
    (void)ev;
    for (int n = 0; n < ACCEPT_BATCH; n++) {
        int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                accept_pause();
            else if (errno == EINTR || errno == ECONNABORTED)
                continue;
            else if (errno != EAGAIN)
                bh_warn("accept: %s", strerror(errno));
            return;
        }
        uid_t peer_uid = (uid_t)-1;
        if (nconns >= BH_SERVER_MAX_CONNS || !peer_may_connect(fd, &peer_uid) || over_uid_cap(peer_uid)) {
            close(fd);
            continue;
        }
        struct conn *c = calloc(1, sizeof *c);
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        c->pass_fd = -1;
        c->peer_uid = peer_uid;
        bh_buf_init(&c->in, BH_REQ_MAX);
        bh_buf_init(&c->out, BH_SERVER_EVENT_QUEUE_MAX);
        c->deadline = bh_now_ms() + BH_SERVER_REQUEST_TIMEOUT_MS;
        c->next = conns;
        if (conns)
            conns->prev = c;
        conns = c;
        nconns++;
        /* Qubes' clients write the whole request and half-close right after connecting,
         * so it is usually waiting already: serve it now and spare the epoll
         * registration. Only a client that has not finished goes to the loop. */
        if (conn_read(c) && !c->in_loop) {
            if (bh_loop_add(fd, EPOLLIN, conn_cb, c) < 0)
                conn_close(c);
            else
                c->in_loop = true;
        }
    }
}

/* Drops connections that never finished their request (abandoned or trickling). */
static void on_tick(void *ctx)
{
    (void)ctx;
    accept_resume(); /* descriptors may have been freed elsewhere in the daemon */
    int64_t now = bh_now_ms();
    struct conn *c = conns;
    while (c) {
        struct conn *next = c->next;
        if (!c->request_done && now > c->deadline) {
            bh_debug("request timeout on fd %d", c->fd);
            conn_close(c);
        }
        c = next;
    }
}

int bh_server_start(struct bh_app *app, const char *path, bh_error *err)
{
    srv_app = app;
    /* Room for every connection we allow (the usual soft limit, 1024, is below it). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < BH_SERVER_MAX_CONNS + 256 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max < BH_SERVER_MAX_CONNS + 256 ? rl.rlim_max : BH_SERVER_MAX_CONNS + 256;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(path) >= sizeof sa.sun_path)
        return bh_fail(err, ENAMETOOLONG, "socket path too long: %s", path);
    strcpy(sa.sun_path, path);
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return bh_fail_errno(err, "socket");
    /* A socket file left by a dead daemon is removed; a live one is not stolen. */
    _cleanup_close_ int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof sa) == 0)
        return bh_fail(err, EADDRINUSE, "another bulkheadd is already listening on %s", path);
    unlink(path);
    mode_t old = umask(0117); /* root (and the socket's group) only */
    int r = bind(fd, (struct sockaddr *)&sa, sizeof sa);
    umask(old);
    if (r < 0)
        return bh_fail_errno(err, "bind %s", path);
    /* the socket's group: qrexec call processes ("dom0 qrexec", docs/qrexec.md) */
    if (lchown(path, 0, BH_QX_CALL_GID) < 0)
        return bh_fail_errno(err, "chown %s", path);
    if (listen(fd, 1024) < 0)
        return bh_fail_errno(err, "listen");
    if (bh_loop_add(fd, EPOLLIN, on_accept, NULL) < 0 || bh_loop_on_tick(on_tick, NULL) < 0 ||
        bh_loop_on_tick((bh_tick_cb)bh_waiters_tick, app) < 0)
        return bh_fail_errno(err, "event loop");
    listen_fd = steal_fd(&fd);
    sock_path = strdup(path);
    return 0;
}

void bh_server_stop(void)
{
    while (conns)
        conn_close(conns);
    if (listen_fd >= 0) {
        bh_loop_del(listen_fd);
        close(listen_fd);
        listen_fd = -1;
    }
    if (sock_path) {
        unlink(sock_path);
        free(sock_path);
        sock_path = NULL;
    }
}
