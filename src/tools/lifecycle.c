#include "lifecycle.h"
#include "admin_client.h"
#include "buf.h"
#include <poll.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

bool exc_not_started(const struct reply *r)
{
    return exc_is(r, "QubesVMNotStartedError") || exc_is(r, "QubesVMNotRunningError");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static bool halted(const struct vm *vm)
{
    const char *s = vm_power_state(vm);
    return !strcmp(s, "Halted") || (!strcmp(vm->klass, "DispVM") && !strcmp(s, "NA"));
}

/* Consumes whole events from the buffer; marks qubes named in domain-shutdown events. */
static void parse_events(bh_buf *b, const struct vmsel *vms, bool *done)
{
    for (;;) {
        size_t pos = 0;
        const char *f[3];
        bool complete = false;
        /* "1" subject event, then key/value pairs, then an empty key. */
        for (int i = 0; i < 3; i++) {
            const char *nul = memchr(b->data + pos, '\0', b->len - pos);
            if (!nul)
                return;
            f[i] = b->data + pos;
            pos = (size_t)(nul - b->data) + 1;
        }
        for (;;) {
            const char *nul = memchr(b->data + pos, '\0', b->len - pos);
            if (!nul)
                return;
            bool empty = nul == b->data + pos;
            pos = (size_t)(nul - b->data) + 1;
            if (empty) {
                complete = true;
                break;
            }
            nul = memchr(b->data + pos, '\0', b->len - pos);
            if (!nul)
                return;
            pos = (size_t)(nul - b->data) + 1;
        }
        if (complete && !strcmp(f[0], "1") && !strcmp(f[2], "domain-shutdown"))
            for (size_t i = 0; i < vms->n; i++)
                if (!strcmp(vms->v[i]->name, f[1]))
                    done[i] = true;
        bh_buf_consume(b, pos);
    }
}

bool wait_for_shutdown(const struct vmsel *vms, double timeout_s)
{
    bool *done = qt_alloc((vms->n + 1) * sizeof *done);
    bh_error err;
    int fd = bh_admin_events_open("dom0", &err);
    bh_buf b;
    bh_buf_init(&b, 1 << 20);
    double deadline = now_s() + timeout_s, next_check = 0;
    bool ok = false;
    for (;;) {
        double t = now_s();
        if (t >= next_check) {
            for (size_t i = 0; i < vms->n; i++)
                if (!done[i] && halted(vms->v[i]))
                    done[i] = true;
            next_check = t + 1.0;
        }
        size_t left = 0;
        for (size_t i = 0; i < vms->n; i++)
            left += !done[i];
        if (!left) {
            ok = true;
            break;
        }
        if (t >= deadline)
            break;
        double wait = next_check < deadline ? next_check - t : deadline - t;
        int ms = (int)(wait * 1000) + 1;
        if (fd >= 0) {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            if (poll(&p, 1, ms) > 0) {
                char chunk[4096];
                ssize_t n = read(fd, chunk, sizeof chunk);
                if (n <= 0 || bh_buf_add(&b, chunk, (size_t)n) < 0) {
                    /* Stream gone or flooding: fall back to polling the state. */
                    close(fd);
                    fd = -1;
                } else {
                    parse_events(&b, vms, done);
                }
            }
        } else {
            usleep((useconds_t)ms * 1000);
        }
    }
    if (fd >= 0)
        close(fd);
    bh_buf_free(&b);
    return ok;
}
