/* GUI message framing over the vchan socket (see chan.h). */
#include "chan.h"
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

void bh_gui_chan_init(struct bh_gui_chan *c, int fd, bool peer_is_agent)
{
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->peer_is_agent = peer_is_agent;
}

void bh_gui_chan_release(struct bh_gui_chan *c)
{
    for (int i = 0; i < c->nfds; i++)
        close(c->fds[i]);
    c->nfds = 0;
    free(c->outq);
    c->outq = NULL;
    c->outlen = c->outcap = 0;
}

/* Drops what the last message used; fails when no byte more fits. */
static int make_room(struct bh_gui_chan *c, bh_error *err)
{
    if (c->consumed) {
        memmove(c->rbuf, c->rbuf + c->consumed, c->rlen - c->consumed);
        c->rlen -= c->consumed;
        c->consumed = 0;
    }
    if (c->rlen >= sizeof c->rbuf)
        return bh_fail(err, 0, "receive buffer full (message not taken)");
    return 0;
}

size_t bh_gui_chan_feed(struct bh_gui_chan *c, const void *data, size_t n, bh_error *err)
{
    if (make_room(c, err) < 0)
        return 0;
    size_t room = sizeof c->rbuf - c->rlen;
    if (n > room)
        n = room;
    memcpy(c->rbuf + c->rlen, data, n);
    c->rlen += n;
    return n;
}

ssize_t bh_gui_chan_fill(struct bh_gui_chan *c, bh_error *err)
{
    if (make_room(c, err) < 0)
        return -1;
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int) * BH_GUI_MAX_PENDING_FDS)];
    } cm;
    struct iovec iov = { c->rbuf + c->rlen, sizeof c->rbuf - c->rlen };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cm.buf, .msg_controllen = sizeof cm.buf };
    ssize_t n = recvmsg(c->fd, &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            return -2;
        return bh_fail_errno(err, "read from the gui channel");
    }
    int bad = 0;
    for (struct cmsghdr *h = CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h)) {
        if (h->cmsg_level != SOL_SOCKET || h->cmsg_type != SCM_RIGHTS) {
            bad = 1;
            continue;
        }
        size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        int *fds = (int *)CMSG_DATA(h);
        for (size_t i = 0; i < k; i++) {
            int fd;
            memcpy(&fd, &fds[i], sizeof fd);
            if (c->nfds < BH_GUI_MAX_PENDING_FDS)
                c->fds[c->nfds++] = fd;
            else {
                close(fd);
                bad = 1;
            }
        }
    }
    if (mh.msg_flags & MSG_CTRUNC)
        bad = 1;
    if (bad)
        return bh_fail(err, 0, "too many or unexpected file descriptors on the gui channel");
    c->rlen += (size_t)n;
    return n;
}

int bh_gui_chan_next(struct bh_gui_chan *c, struct bh_gui_hdr *h, const uint8_t **body, int *fd, bh_error *err)
{
    *fd = -1;
    if (c->consumed) {
        memmove(c->rbuf, c->rbuf + c->consumed, c->rlen - c->consumed);
        c->rlen -= c->consumed;
        c->consumed = 0;
    }
    if (c->rlen < sizeof *h) {
        if (c->rlen == 0 && c->nfds > 0)
            return bh_fail(err, 0, "file descriptor without a WINDOW_DUMP");
        return 0;
    }
    memcpy(h, c->rbuf, sizeof *h);
    if ((c->peer_is_agent ? bh_gui_check_agent_hdr(h, err) : bh_gui_check_daemon_hdr(h, err)) < 0)
        return -1;
    size_t total = sizeof *h + h->untrusted_len; /* checked: <= BH_GUI_RBUF */
    if (c->rlen < total)
        return 0;
    /* a memfd comes with a WINDOW_DUMP of that type; an inline one has none */
    bool inline_dump = h->type == BH_GUI_MSG_WINDOW_DUMP &&
                       bh_gui_window_dump_type(c->rbuf + sizeof *h, h->untrusted_len) == BH_GUI_DUMP_INLINE;
    if (inline_dump && c->nfds > 0)
        return bh_fail(err, 0, "file descriptor with an inline WINDOW_DUMP");
    if (h->type == BH_GUI_MSG_WINDOW_DUMP && !inline_dump) {
        if (c->nfds == 0)
            return bh_fail(err, 0, "WINDOW_DUMP without a buffer");
        *fd = c->fds[0];
        memmove(c->fds, c->fds + 1, sizeof(int) * (size_t)(--c->nfds));
    }
    *body = c->rbuf + sizeof *h;
    c->consumed = total;
    return 1;
}

int bh_gui_chan_flush(struct bh_gui_chan *c, bh_error *err)
{
    while (c->outlen) {
        ssize_t n = send(c->fd, c->outq, c->outlen, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
                return 0;
            return bh_fail_errno(err, "write to the gui channel");
        }
        memmove(c->outq, c->outq + n, c->outlen - (size_t)n);
        c->outlen -= (size_t)n;
    }
    return 0;
}

int bh_gui_write_blocking(int fd, const void *buf, size_t len, int passfd, bh_error *err)
{
    const uint8_t *p = buf;
    while (len) {
        union {
            struct cmsghdr h;
            char buf[CMSG_SPACE(sizeof(int))];
        } cm;
        struct iovec iov = { (void *)p, len };
        struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1 };
        if (passfd >= 0) {
            memset(&cm, 0, sizeof cm);
            mh.msg_control = cm.buf;
            mh.msg_controllen = sizeof cm.buf;
            struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
            h->cmsg_level = SOL_SOCKET;
            h->cmsg_type = SCM_RIGHTS;
            h->cmsg_len = CMSG_LEN(sizeof(int));
            memcpy(CMSG_DATA(h), &passfd, sizeof passfd);
        }
        ssize_t n = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                struct pollfd pf = { .fd = fd, .events = POLLOUT };
                poll(&pf, 1, 1000);
                continue;
            }
            return bh_fail_errno(err, "write to the gui channel");
        }
        passfd = -1; /* the fd went with the first byte */
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int bh_gui_chan_send(struct bh_gui_chan *c, uint32_t type, uint32_t window, const void *body, size_t len,
                     int passfd, bh_error *err)
{
    struct bh_gui_hdr h = { type, window, (uint32_t)len };
    if (passfd >= 0) {
        /* an fd must go with its own message's first byte: flush first, then write it
         * whole (only agents pass fds, and they may block on their daemon) */
        while (c->outlen) {
            if (bh_gui_chan_flush(c, err) < 0)
                return -1;
            if (c->outlen) {
                struct pollfd pf = { .fd = c->fd, .events = POLLOUT };
                poll(&pf, 1, 1000);
            }
        }
        uint8_t tmp[sizeof h + 64];
        if (len > 64)
            return bh_fail(err, 0, "fd message body too large");
        memcpy(tmp, &h, sizeof h);
        if (len)
            memcpy(tmp + sizeof h, body, len);
        return bh_gui_write_blocking(c->fd, tmp, sizeof h + len, passfd, err);
    }
    size_t need = sizeof h + len;
    if (c->outlen + need > BH_GUI_MAX_OUTQ) {
        c->dropped++;
        return bh_gui_chan_flush(c, err);
    }
    if (c->outlen + need > c->outcap) {
        size_t cap = c->outcap ? c->outcap : 4096;
        while (cap < c->outlen + need)
            cap *= 2;
        uint8_t *q = realloc(c->outq, cap);
        if (!q)
            return bh_fail(err, ENOMEM, "out of memory");
        c->outq = q;
        c->outcap = cap;
    }
    memcpy(c->outq + c->outlen, &h, sizeof h);
    if (len)
        memcpy(c->outq + c->outlen + sizeof h, body, len);
    c->outlen += need;
    return bh_gui_chan_flush(c, err);
}
