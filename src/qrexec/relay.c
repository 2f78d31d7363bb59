#include "relay.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

struct dir {
    int from, to;
    int pipe[2];
    size_t in_pipe;
    bool eof, done;
};

static int step(struct dir *d)
{
    if (!d->eof) {
        ssize_t r = splice(d->from, NULL, d->pipe[1], NULL, 1 << 20, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (r > 0)
            d->in_pipe += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EINTR))
            d->eof = true;
    }
    while (d->in_pipe) {
        ssize_t w = splice(d->pipe[0], NULL, d->to, NULL, d->in_pipe, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
        if (w > 0) {
            d->in_pipe -= (size_t)w;
            continue;
        }
        if (w < 0 && (errno == EAGAIN || errno == EINTR))
            break;
        return -1; /* the reader is gone */
    }
    if (d->eof && !d->in_pipe && !d->done) {
        shutdown(d->to, SHUT_WR);
        d->done = true;
    }
    return 0;
}

int bh_relay(int a, int b)
{
    struct dir d[2] = { { .from = a, .to = b }, { .from = b, .to = a } };
    int rc = -1;
    if (pipe2(d[0].pipe, O_CLOEXEC) < 0)
        return -1;
    if (pipe2(d[1].pipe, O_CLOEXEC) < 0)
        goto out0;
    fcntl(d[0].pipe[1], F_SETPIPE_SZ, 1 << 20);
    fcntl(d[1].pipe[1], F_SETPIPE_SZ, 1 << 20);
    bh_set_nonblock(a, 1);
    bh_set_nonblock(b, 1);
    while (!(d[0].done && d[1].done)) {
        struct pollfd p[2] = { { .fd = a }, { .fd = b } };
        for (int i = 0; i < 2; i++) {
            if (d[i].done)
                continue;
            if (!d[i].eof && !d[i].in_pipe)
                p[i].events |= POLLIN;            /* from side: i==0 -> a */
            if (d[i].in_pipe)
                p[1 - i].events |= POLLOUT;       /* to side */
        }
        for (int i = 0; i < 2; i++) /* an idle side's HUP must not make us spin */
            if (!p[i].events)
                p[i].fd = -1;
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            goto out;
        }
        for (int i = 0; i < 2; i++)
            if (!d[i].done && step(&d[i]) < 0) {
                /* one reader gone: the other direction may still finish */
                d[i].done = true;
                d[i].in_pipe = 0;
                shutdown(d[i].from, SHUT_RD);
            }
    }
    rc = 0;
out:
    close(d[1].pipe[0]);
    close(d[1].pipe[1]);
out0:
    close(d[0].pipe[0]);
    close(d[0].pipe[1]);
    return rc;
}
