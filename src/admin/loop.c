#include "loop.h"
#include "log.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

/* One registration per fd; the epoll data points at it. Registrations are freed
 * lazily (after the current epoll batch) so a callback may delete other fds safely. */
struct reg {
    int fd;
    bh_fd_cb cb;
    void *ctx;
    bool dead;
    struct reg *next;
};

static int epfd = -1, tickfd = -1;
static bool stopping;
static struct reg *regs, *graveyard;
static struct {
    bh_tick_cb cb;
    void *ctx;
} ticks[16];
static size_t nticks;
static struct {
    bh_tick_cb cb;
    void *ctx;
} deferred[256];
static size_t ndeferred;

#define TICK_MS 200

int64_t bh_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_tick(void *ctx, uint32_t ev)
{
    (void)ctx;
    (void)ev;
    uint64_t n;
    if (read(tickfd, &n, sizeof n) < 0)
        return;
    for (size_t i = 0; i < nticks; i++)
        ticks[i].cb(ticks[i].ctx);
}

int bh_loop_init(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0)
        return -1;
    tickfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    if (tickfd < 0)
        return -1;
    struct itimerspec its = { .it_interval = { 0, TICK_MS * 1000000L }, .it_value = { 0, TICK_MS * 1000000L } };
    if (timerfd_settime(tickfd, 0, &its, NULL) < 0)
        return -1;
    return bh_loop_add(tickfd, EPOLLIN, on_tick, NULL);
}

static struct reg *find(int fd)
{
    for (struct reg *r = regs; r; r = r->next)
        if (r->fd == fd && !r->dead)
            return r;
    return NULL;
}

int bh_loop_add(int fd, uint32_t events, bh_fd_cb cb, void *ctx)
{
    struct reg *r = calloc(1, sizeof *r);
    if (!r)
        return -1;
    r->fd = fd;
    r->cb = cb;
    r->ctx = ctx;
    struct epoll_event ev = { .events = events, .data.ptr = r };
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        free(r);
        return -1;
    }
    r->next = regs;
    regs = r;
    return 0;
}

int bh_loop_mod(int fd, uint32_t events, bh_fd_cb cb, void *ctx)
{
    struct reg *r = find(fd);
    if (!r)
        return bh_loop_add(fd, events, cb, ctx);
    r->cb = cb;
    r->ctx = ctx;
    struct epoll_event ev = { .events = events, .data.ptr = r };
    return epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev);
}

void bh_loop_del(int fd)
{
    struct reg **pp = &regs;
    while (*pp) {
        struct reg *r = *pp;
        if (r->fd == fd && !r->dead) {
            epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
            r->dead = true;
            *pp = r->next;
            r->next = graveyard;
            graveyard = r;
            return;
        }
        pp = &r->next;
    }
}

int bh_loop_on_tick(bh_tick_cb cb, void *ctx)
{
    if (nticks == sizeof ticks / sizeof ticks[0])
        return -1;
    ticks[nticks].cb = cb;
    ticks[nticks].ctx = ctx;
    nticks++;
    return 0;
}

int bh_loop_defer(bh_tick_cb cb, void *ctx)
{
    if (ndeferred == sizeof deferred / sizeof deferred[0]) {
        cb(ctx); /* full: do it now rather than lose it */
        return 0;
    }
    deferred[ndeferred].cb = cb;
    deferred[ndeferred].ctx = ctx;
    ndeferred++;
    return 0;
}

void bh_loop_run_deferred(void)
{
    /* A deferred callback may defer more: run until the queue is empty. */
    for (size_t i = 0; i < ndeferred; i++)
        deferred[i].cb(deferred[i].ctx);
    ndeferred = 0;
}

void bh_loop_stop(void) { stopping = true; }

int bh_loop_run(void)
{
    struct epoll_event evs[64];
    while (!stopping) {
        int n = epoll_wait(epfd, evs, 64, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            bh_err("epoll_wait: %s", strerror(errno));
            return -1;
        }
        for (int i = 0; i < n; i++) {
            struct reg *r = evs[i].data.ptr;
            if (!r->dead)
                r->cb(r->ctx, evs[i].events);
        }
        bh_loop_run_deferred();
        while (graveyard) {
            struct reg *r = graveyard;
            graveyard = r->next;
            free(r);
        }
    }
    return 0;
}
