#include "stream.h"
#include "buf.h"
#include "cleanup.h"
#include "io.h"
#include "proto.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Queue sizes: large enough that one wakeup moves many chunks (fewer context switches on
 * a busy machine), small enough to bound memory per call. */
#define OUTQ_HIGH (8 * (BH_QX_MAX_CHUNK + 8)) /* stop reading local fds above this */
#define INQ_HIGH (8 * BH_QX_MAX_CHUNK)        /* stop parsing the socket above this */
#define RQ_MAX (16 * (BH_QX_MAX_CHUNK + 8))   /* bytes read from the socket, unparsed */
#define BIG_BUF (1 << 20)

void bh_qx_filter(char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 || c > 0x7e) && c != '\t' && c != '\n' && c != '\r' && c != '\b' && c != '\a')
            p[i] = '_';
    }
}

int bh_wait_status_code(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 125;
}

static void close_fd(int *fd)
{
    if (*fd >= 0)
        bh_set_nonblock(*fd, 0); /* the description may be shared (a terminal) */
    if (*fd >= 0 && *fd > 2)
        close(*fd);
    else if (*fd >= 0) {
        /* stdio of this process: keep the number taken (by /dev/null) so that later
         * opens cannot land on 0/1/2, but tell the reader/writer that we are done. */
        int n = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (n >= 0) {
            dup2(n, *fd);
            close(n);
        }
    }
    *fd = -1;
}

struct pump {
    struct bh_qx_stream *s;
    bh_buf outq;  /* encoded messages waiting for the socket */
    bh_buf rq;    /* bytes from the socket, not yet parsed */
    bh_buf inq;   /* payload waiting for in_fd */
    struct bh_qx_rx rx; /* rx.in_eof: close in_fd once inq drains */
    bool sock_eof;
    bool out_done, err_done, child_done, exit_sent;
    int exit_code;
    int pidfd;
    /* a local pipe's bytes moved to the socket by splice (no copy through us): its header
     * is the last thing queued, and nothing else is queued until they are all sent */
    bool out_is_pipe, err_is_pipe;
    int splice_fd;
    size_t splice_left;
    /* more bytes known to be in that pipe (FIONREAD) after this chunk, and their type:
     * sent as the next chunks right away, without a poll and FIONREAD for each */
    size_t splice_more;
    uint32_t splice_type;
    /* our input's payload moved from the socket to in_fd (a pipe) by splice, no copy
     * through us: a big enough message's header is read alone, then its
     * payload (in_left bytes) goes straight from the socket to the pipe. in_wait_pipe:
     * the last splice stopped on a full pipe (else on an empty socket). If the reader
     * goes away meanwhile, the rest of the payload is read and dropped. */
    bool in_is_pipe, in_wait_pipe;
    size_t in_left;
};

static int queue_msg(struct pump *p, uint32_t type, const void *data, size_t n)
{
    uint8_t h[8];
    bh_qx_hdr_encode(h, type, (uint32_t)n);
    if (bh_buf_add(&p->outq, h, 8) < 0 || bh_buf_add(&p->outq, data, n) < 0)
        return -1;
    return 0;
}

/* Reads one chunk from a local fd into a message; EOF queues the empty message. From a
 * pipe with nothing queued before it, the chunk is spliced to the socket behind its
 * header (its size known from FIONREAD: we are the pipe's only reader); otherwise it is
 * read straight into the queue, behind room for its header. */
static int pump_local(struct pump *p, int *fd, uint32_t type, bool *done, bool is_pipe)
{
    int avail = 0;
    if (is_pipe && p->outq.len == 0 && ioctl(*fd, FIONREAD, &avail) == 0 && avail > 0) {
        size_t n = (size_t)avail < BH_QX_MAX_CHUNK ? (size_t)avail : BH_QX_MAX_CHUNK;
        uint8_t h[8];
        bh_qx_hdr_encode(h, type, (uint32_t)n);
        if (bh_buf_add(&p->outq, h, 8) < 0)
            return -1;
        p->splice_fd = *fd;
        p->splice_left = n;
        p->splice_more = (size_t)avail - n;
        p->splice_type = type;
        return 0;
    }
    if (bh_buf_reserve(&p->outq, 8 + BH_QX_MAX_CHUNK) < 0)
        return -1;
    char *at = p->outq.data + p->outq.len;
    ssize_t r = read(*fd, at + 8, BH_QX_MAX_CHUNK);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0) {
        close_fd(fd);
        *done = true;
        return queue_msg(p, type, NULL, 0);
    }
    bh_qx_hdr_encode((uint8_t *)at, type, (uint32_t)r);
    p->outq.len += 8 + (size_t)r;
    return 0;
}

static int write_some(int fd, bh_buf *q)
{
    while (q->len) {
        ssize_t w = write(fd, q->data, q->len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            return 0;
        if (w < 0)
            return -1;
        bh_buf_consume(q, (size_t)w);
    }
    return 0;
}

/* Sends what is queued, then the bytes of a pending splice, then (while the socket takes
 * them) the further chunks already known to be in the pipe. -1: the socket is broken. */
static int send_queued(struct pump *p)
{
    for (;;) {
        if (write_some(p->s->sock, &p->outq) < 0)
            return -1;
        while (p->splice_left && p->outq.len == 0) {
            ssize_t n = splice(p->splice_fd, NULL, p->s->sock, NULL, p->splice_left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (n > 0) {
                p->splice_left -= (size_t)n;
                continue;
            }
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0 && errno == EAGAIN) {
                /* the socket is full (or, never, the pipe is empty: no busy loop then) */
                struct pollfd q = { .fd = p->splice_fd, .events = POLLIN };
                if (poll(&q, 1, 0) == 1 && (q.revents & POLLIN))
                    return 0; /* the socket is full: wait for POLLOUT */
                return -1; /* cannot happen: the bytes were counted in the pipe, we are its only reader */
            }
            return -1;
        }
        if (p->outq.len || p->splice_left || !p->splice_more)
            return 0;
        size_t n = p->splice_more < BH_QX_MAX_CHUNK ? p->splice_more : BH_QX_MAX_CHUNK;
        uint8_t h[8];
        bh_qx_hdr_encode(h, p->splice_type, (uint32_t)n);
        if (bh_buf_add(&p->outq, h, 8) < 0)
            return -1;
        p->splice_left = n;
        p->splice_more -= n;
    }
}

/* Whole messages are handled in place and consumed together at the end (one move of
 * the partial tail instead of one per message). */
int bh_qx_rx_parse(struct bh_qx_rx *rx, bh_buf *rq, size_t inq_high, bh_error *err)
{
    size_t off = 0;
    int rc = 0;
    while (rx->inq->len < inq_high && rq->len - off >= 8 && !rx->have_exit) {
        struct bh_qx_hdr h;
        bh_qx_hdr_decode((const uint8_t *)rq->data + off, &h);
        if (bh_qx_check_header(&h, BH_QX_FROM_DATA, err) < 0) {
            rc = -1;
            break;
        }
        if (rq->len - off < 8 + (size_t)h.len)
            break;
        char *body = rq->data + off + 8;
        uint32_t want_in = rx->is_service ? BH_QX_MSG_DATA_STDIN : BH_QX_MSG_DATA_STDOUT;
        if (h.type == want_in) {
            if (h.len == 0) {
                rx->in_eof = true;
            } else if (rx->in_open && !rx->in_eof) {
                if (!rx->is_service && rx->filter_out)
                    bh_qx_filter(body, h.len);
                size_t took = rx->direct_in && !rx->inq->len ? rx->direct_in(rx->ctx, body, h.len) : 0;
                if (took > h.len)
                    took = h.len;
                if (bh_buf_add(rx->inq, body + took, h.len - took) < 0) {
                    rc = bh_fail_errno(err, "buffer");
                    break;
                }
            }
        } else if (!rx->is_service && h.type == BH_QX_MSG_DATA_STDERR) {
            if (rx->on_stderr && h.len) {
                if (rx->filter_err)
                    bh_qx_filter(body, h.len);
                rx->on_stderr(rx->ctx, body, h.len);
            }
        } else if (!rx->is_service && h.type == BH_QX_MSG_DATA_EXIT_CODE) {
            if (bh_qx_parse_exit_code((const uint8_t *)body, h.len, &rx->exit_code, err) < 0) {
                rc = -1;
                break;
            }
            rx->have_exit = true;
        } else {
            rc = bh_fail(err, EPROTO, "unexpected %s on the data stream", bh_qx_type_name(h.type));
            break;
        }
        off += 8 + (size_t)h.len;
    }
    bh_buf_consume(rq, off);
    return rc;
}

/* The requester's sink for the other end's stderr: a reader that went away is dropped. */
static void write_stderr(void *ctx, const char *p, size_t n)
{
    struct bh_qx_stream *s = ctx;
    if (s->err_fd >= 0 && bh_write_all(s->err_fd, p, n) < 0)
        close_fd(&s->err_fd);
}

/* Our input's payload straight to in_fd while nothing is queued before it (bulk data
 * then skips inq). A reader that went away gets nothing more, as in write_some's caller. */
static size_t direct_in(void *ctx, const char *p, size_t n)
{
    struct bh_qx_stream *s = ctx;
    if (s->in_fd < 0)
        return n;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(s->in_fd, p + done, n - done);
        if (w > 0) {
            done += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && errno == EAGAIN)
            break;
        close_fd(&s->in_fd);
        return n;
    }
    return done;
}

/* Handles the complete messages in rq. Stops while inq is not drained (back-pressure). */
static int parse_incoming(struct pump *p, bh_error *err)
{
    p->rx.in_open = p->s->in_fd >= 0;
    return bh_qx_rx_parse(&p->rx, &p->rq, INQ_HIGH, err);
}

/* Below this a message's payload is read with the rest (one read for many small
 * messages); from this size on it is spliced. */
#define IN_SPLICE_MIN 4096

/* At a message boundary with nothing queued for in_fd: reads the next header alone and,
 * if it is our input's payload of IN_SPLICE_MIN bytes or more, arms the splice. Anything
 * else (a short read, another message, a header that fails the checks) goes to rq for
 * the ordinary read and parse, which will report it. One read per message, no peek. */
static void in_splice_arm(struct pump *p)
{
    uint8_t hb[8];
    ssize_t r = recv(p->s->sock, hb, sizeof hb, MSG_DONTWAIT);
    if (r < 0)
        return; /* EAGAIN, or an error the ordinary read will see again */
    if (r == 0) {
        p->sock_eof = true;
        return;
    }
    struct bh_qx_hdr h;
    bh_error ignored;
    uint32_t want_in = p->s->is_service ? BH_QX_MSG_DATA_STDIN : BH_QX_MSG_DATA_STDOUT;
    if (r == (ssize_t)sizeof hb) {
        bh_qx_hdr_decode(hb, &h);
        if (h.type == want_in && h.len >= IN_SPLICE_MIN && bh_qx_check_header(&h, BH_QX_FROM_DATA, &ignored) == 0) {
            p->in_left = h.len;
            p->in_wait_pipe = false;
            return;
        }
    }
    if (bh_buf_add(&p->rq, hb, (size_t)r) < 0)
        p->sock_eof = true; /* cannot happen: rq is empty and holds far more than 8 bytes */
}

/* Moves armed payload from the socket to in_fd (or drops it once in_fd is gone). */
static void in_splice_move(struct pump *p)
{
    struct bh_qx_stream *s = p->s;
    while (p->in_left) {
        ssize_t n;
        if (s->in_fd < 0) {
            char sink[16384];
            n = recv(s->sock, sink, p->in_left < sizeof sink ? p->in_left : sizeof sink, MSG_DONTWAIT);
        } else {
            n = splice(s->sock, NULL, s->in_fd, NULL, p->in_left, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        }
        if (n > 0) {
            p->in_left -= (size_t)n;
            continue;
        }
        if (n == 0) {
            p->sock_eof = true; /* inside a message: handled as any early end */
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN) {
            struct pollfd q = { .fd = s->in_fd, .events = POLLOUT };
            p->in_wait_pipe = s->in_fd >= 0 && poll(&q, 1, 0) == 0;
            return;
        }
        if (s->in_fd >= 0 && errno == EPIPE) { /* reader gone: drop the rest, as direct_in */
            close_fd(&s->in_fd);
            continue;
        }
        p->sock_eof = true;
        return;
    }
}

static int pidfd_open_(pid_t pid)
{
#ifdef SYS_pidfd_open
    return (int)syscall(SYS_pidfd_open, pid, 0);
#else
    errno = ENOSYS;
    return -1;
#endif
}

int bh_qx_stream_run(struct bh_qx_stream *s, bh_error *err)
{
    struct pump p;
    memset(&p, 0, sizeof p);
    p.s = s;
    p.pidfd = -1;
    bh_buf_init(&p.outq, 0);
    bh_buf_init(&p.rq, RQ_MAX);
    bh_buf_init(&p.inq, 0);
    p.rx = (struct bh_qx_rx){ .is_service = s->is_service, .filter_out = s->filter_out, .filter_err = s->filter_err,
                              .inq = &p.inq, .on_stderr = write_stderr, .ctx = s,
                              .direct_in = direct_in };
    int rc = 125;
    signal(SIGPIPE, SIG_IGN);

    int big = BIG_BUF;
    setsockopt(s->sock, SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    setsockopt(s->sock, SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    bh_set_nonblock(s->sock, 1);
    if (s->in_fd >= 0)
        bh_set_nonblock(s->in_fd, 1);
    if (s->out_fd >= 0)
        bh_set_nonblock(s->out_fd, 1);
    p.splice_fd = -1;
    struct stat fst;
    p.out_is_pipe = !s->no_splice && s->out_fd >= 0 && fstat(s->out_fd, &fst) == 0 && S_ISFIFO(fst.st_mode);
    p.in_is_pipe = !s->no_splice && s->in_fd >= 0 && (s->is_service || !s->filter_out) &&
                   fstat(s->in_fd, &fst) == 0 && S_ISFIFO(fst.st_mode);
    p.err_is_pipe = !s->no_splice && s->is_service && s->err_fd >= 0 && fstat(s->err_fd, &fst) == 0 && S_ISFIFO(fst.st_mode);
    if (s->is_service && s->err_fd >= 0)
        bh_set_nonblock(s->err_fd, 1);
    if (s->out_fd < 0) {
        p.out_done = true;
        queue_msg(&p, s->is_service ? BH_QX_MSG_DATA_STDOUT : BH_QX_MSG_DATA_STDIN, NULL, 0);
    }
    if (!s->is_service || s->err_fd < 0) {
        p.err_done = true;
        if (s->is_service)
            queue_msg(&p, BH_QX_MSG_DATA_STDERR, NULL, 0);
    }
    if (s->is_service && s->exit_from_fd) {
        p.pidfd = s->exit_fd; /* polled like a pidfd; read instead of waitpid */
        s->exit_fd = -1;
    } else if (s->is_service && s->child > 0) {
        p.pidfd = pidfd_open_(s->child);
        if (p.pidfd < 0) {
            bh_fail_errno(err, "pidfd_open");
            goto out;
        }
    } else {
        p.child_done = true;
        p.exit_code = s->fixed_exit;
    }

    for (;;) {
        if (s->is_service && p.out_done && p.err_done && p.child_done && !p.exit_sent && !p.splice_left) {
            int32_t code = p.exit_code;
            uint8_t v[4] = { (uint8_t)code, (uint8_t)(code >> 8), (uint8_t)(code >> 16), (uint8_t)(code >> 24) };
            queue_msg(&p, BH_QX_MSG_DATA_EXIT_CODE, v, 4);
            p.exit_sent = true;
        }
        if (send_queued(&p) < 0) {
            if (s->is_service) { /* the requester went away: nobody to tell */
                rc = p.child_done ? p.exit_code : 125;
                goto out;
            }
            /* The service may have finished without reading all its input: keep
             * reading, its exit code is still on the way. */
            bh_buf_reset(&p.outq);
            p.splice_left = 0;
            p.splice_more = 0;
            p.out_done = true;
            close_fd(&s->out_fd);
        }
        if (s->is_service && p.exit_sent && p.outq.len == 0 && !p.splice_left) {
            rc = p.exit_code;
            goto out;
        }
        if (s->in_fd >= 0 && p.inq.len) {
            if (write_some(s->in_fd, &p.inq) < 0) { /* reader gone: drop what it did not take */
                bh_buf_reset(&p.inq);
                close_fd(&s->in_fd);
            }
        }
        if (p.inq.len == 0 && p.rx.in_eof && s->in_fd >= 0)
            close_fd(&s->in_fd);
        if (parse_incoming(&p, err) < 0)
            goto out;
        /* an EOF parsed just now must close in_fd now: nothing else may wake us later */
        if (p.inq.len == 0 && p.rx.in_eof && s->in_fd >= 0)
            close_fd(&s->in_fd);
        if (p.rx.have_exit && p.inq.len == 0) {
            /* flush what is left for the local side before reporting */
            if (s->in_fd >= 0)
                bh_set_nonblock(s->in_fd, 0);
            rc = p.rx.exit_code;
            goto out;
        }
        if (p.sock_eof && p.inq.len == 0 && p.rq.len < 8 + BH_QX_MAX_CHUNK) {
            if (!s->is_service) {
                bh_fail(err, ECONNRESET, "the other end closed the data stream without an exit code");
                goto out;
            }
            /* requester gone: stop feeding the service, let it finish */
            if (s->in_fd >= 0 && !p.inq.len)
                close_fd(&s->in_fd);
        }

        struct pollfd fds[5];
        int n = 0, i_sock = -1, i_out = -1, i_err = -1, i_in = -1, i_pid = -1;
        short sev = 0;
        if (p.in_left ? !p.sock_eof && !p.in_wait_pipe
                      : !p.sock_eof && p.inq.len < INQ_HIGH && p.rq.len + 65536 <= RQ_MAX)
            sev |= POLLIN;
        if (p.outq.len || p.splice_left)
            sev |= POLLOUT;
        if (sev) {
            i_sock = n;
            fds[n++] = (struct pollfd){ .fd = s->sock, .events = sev };
        }
        if (p.outq.len < OUTQ_HIGH && !p.splice_left) {
            if (!p.out_done && s->out_fd >= 0) {
                i_out = n;
                fds[n++] = (struct pollfd){ .fd = s->out_fd, .events = POLLIN };
            }
            if (s->is_service && !p.err_done && s->err_fd >= 0) {
                i_err = n;
                fds[n++] = (struct pollfd){ .fd = s->err_fd, .events = POLLIN };
            }
        }
        if (s->in_fd >= 0 && (p.inq.len || (p.in_left && p.in_wait_pipe))) {
            i_in = n;
            fds[n++] = (struct pollfd){ .fd = s->in_fd, .events = POLLOUT };
        }
        if (p.pidfd >= 0 && !p.child_done) {
            i_pid = n;
            fds[n++] = (struct pollfd){ .fd = p.pidfd, .events = POLLIN };
        }
        if (n == 0) {
            bh_fail(err, EPIPE, "data stream stalled");
            goto out;
        }
        if (poll(fds, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            bh_fail_errno(err, "poll");
            goto out;
        }
        if (p.in_left && ((i_in >= 0 && fds[i_in].revents) ||
                          (i_sock >= 0 && (fds[i_sock].revents & (POLLIN | POLLHUP | POLLERR))))) {
            in_splice_move(&p);
        } else if (i_sock >= 0 && (fds[i_sock].revents & (POLLIN | POLLHUP | POLLERR))) {
            if (p.in_is_pipe && s->in_fd >= 0 && p.rq.len == 0 && p.inq.len == 0 && !p.rx.in_eof && !p.rx.have_exit) {
                in_splice_arm(&p);
                if (p.in_left) {
                    in_splice_move(&p);
                    goto polled_sock;
                }
                if (p.sock_eof)
                    goto polled_sock;
            }
            size_t room = p.rq.limit - p.rq.len;
            if (room > 4 * 65536)
                room = 4 * 65536;
            if (room && bh_buf_reserve(&p.rq, room) == 0) {
                ssize_t r = read(s->sock, p.rq.data + p.rq.len, room);
                if (r > 0)
                    p.rq.len += (size_t)r;
                else if (r == 0 || (errno != EAGAIN && errno != EINTR))
                    p.sock_eof = true;
            }
        }
    polled_sock:
        /* further messages already in the socket: spliced in the same wakeup */
        for (int k = 0; k < 16 && !p.in_left && !p.sock_eof && p.in_is_pipe && s->in_fd >= 0 && p.rq.len == 0 &&
                        p.inq.len == 0 && !p.rx.in_eof && !p.rx.have_exit && i_sock >= 0 &&
                        (fds[i_sock].revents & POLLIN);
             k++) {
            in_splice_arm(&p);
            if (!p.in_left)
                break;
            in_splice_move(&p);
        }
        if (i_out >= 0 && (fds[i_out].revents & (POLLIN | POLLHUP | POLLERR)))
            if (pump_local(&p, &s->out_fd, s->is_service ? BH_QX_MSG_DATA_STDOUT : BH_QX_MSG_DATA_STDIN,
                           &p.out_done, p.out_is_pipe) < 0) {
                bh_fail_errno(err, "buffer");
                goto out;
            }
        if (i_err >= 0 && !p.splice_left && (fds[i_err].revents & (POLLIN | POLLHUP | POLLERR)))
            if (pump_local(&p, &s->err_fd, BH_QX_MSG_DATA_STDERR, &p.err_done, p.err_is_pipe) < 0) {
                bh_fail_errno(err, "buffer");
                goto out;
            }
        if (i_pid >= 0 && s->exit_from_fd && (fds[i_pid].revents & (POLLIN | POLLHUP | POLLERR))) {
            int code;
            p.child_done = true;
            p.exit_code = bh_read_all(p.pidfd, &code, sizeof code) == (ssize_t)sizeof code ? code : 125;
        } else if (i_pid >= 0 && (fds[i_pid].revents & POLLIN)) {
            int st;
            if (waitpid(s->child, &st, WNOHANG) == s->child) {
                p.child_done = true;
                p.exit_code = bh_wait_status_code(st);
            }
        }
    }
out:
    if (p.inq.len && s->in_fd >= 0) {
        bh_set_nonblock(s->in_fd, 0);
        bh_write_all(s->in_fd, p.inq.data, p.inq.len);
    }
    if (s->in_fd >= 0)
        close_fd(&s->in_fd);
    if (s->out_fd >= 0)
        close_fd(&s->out_fd);
    if (s->is_service && s->err_fd >= 0)
        close_fd(&s->err_fd);
    if (p.pidfd >= 0)
        close(p.pidfd);
    bh_buf_free(&p.outq);
    bh_buf_free(&p.rq);
    bh_buf_free(&p.inq);
    return rc;
}
