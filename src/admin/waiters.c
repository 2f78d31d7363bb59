#include "waiters.h"
#include "hooks.h"
#include "lifecycle.h"
#include "props.h"
#include "loop.h"
#include "server.h"
#include <stdio.h>
#include <string.h>

/* Bounded: every waiter is also an open connection, and those are bounded already. */
#define MAX_WAITERS BH_SERVER_MAX_CONNS

static struct waiter {
    void *conn; /* NULL: free slot */
    uint32_t qid;
    uint32_t start_qid; /* BH_WAIT_START: the qube to start when qid halts; 0: qid itself */
    enum bh_wait_kind kind;
    int64_t deadline;
    char name[64]; /* for the timeout message, the qube may be gone by then */
} waiters[MAX_WAITERS];
static size_t nwaiters; /* slots in use are all below this index */

int64_t bh_waiters_halt_ms(struct bh_app *app, struct bh_qube *q)
{
    return bh_qube_prop_int(app, q, "shutdown_timeout") * 1000 + 10000;
}

int64_t bh_waiters_boot_ms(struct bh_app *app, struct bh_qube *q)
{
    return bh_qube_prop_int(app, q, "qrexec_timeout") * 1000 + 30000;
}

/* conn's waiter on q, in a free slot; NULL (e filled) when none is left. */
static struct waiter *add(struct bh_qube *q, enum bh_wait_kind kind, void *conn, int64_t timeout_ms, struct bh_exc *e)
{
    size_t i = 0;
    while (i < nwaiters && waiters[i].conn)
        i++;
    if (i == MAX_WAITERS) {
        bh_exc(e, "QubesException", "Too many calls waiting for qubes to halt");
        return NULL;
    }
    if (i == nwaiters)
        nwaiters++;
    waiters[i] = (struct waiter){ .conn = conn, .qid = q->qid, .kind = kind, .deadline = bh_now_ms() + timeout_ms };
    snprintf(waiters[i].name, sizeof waiters[i].name, "%s", q->name);
    return &waiters[i];
}

int bh_waiters_add(struct bh_qube *q, enum bh_wait_kind kind, void *conn, int64_t timeout_ms, struct bh_exc *e)
{
    return add(q, kind, conn, timeout_ms, e) ? 0 : -1;
}

int bh_waiters_add_start_after(struct bh_qube *down, struct bh_qube *start, void *conn, int64_t timeout_ms,
                               struct bh_exc *e)
{
    struct waiter *w = add(down, BH_WAIT_START, conn, timeout_ms, e);
    if (!w)
        return -1;
    w->start_qid = start->qid;
    snprintf(w->name, sizeof w->name, "%s", start->name); /* the qube its reply is about */
    return 0;
}

/* A BH_WAIT_START waiter's qube starts now: answered with the outcome, or (a boot that
 * goes on beside the loop) turned into a wait for its end. */
static void start_now(struct bh_app *app, struct waiter *w);

static void finish(struct waiter *w, const struct bh_exc *e)
{
    void *conn = w->conn;
    w->conn = NULL;
    while (nwaiters && !waiters[nwaiters - 1].conn)
        nwaiters--;
    bh_server_finish(conn, e);
}

void bh_waiters_halted(struct bh_app *app, uint32_t qid)
{
    /* Shutdown waiters first, so that a Start waiter's start does not come before the
     * reply that said the qube had halted. Index loop: finishing may shrink nwaiters,
     * and a start may fail and halt (re-entering here) — slots are only cleared. */
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < nwaiters; i++) {
            struct waiter *w = &waiters[i];
            if (!w->conn || w->qid != qid || w->kind == BH_WAIT_KILLED || (pass == 0) != (w->kind == BH_WAIT_SHUTDOWN))
                continue; /* a Kill's reply comes from bh_waiters_killed */
            if (w->kind == BH_WAIT_SHUTDOWN) {
                finish(w, NULL);
                continue;
            }
            start_now(app, w);
        }
}

/* w waits for `down` to halt before its qube starts (again). */
static void wait_for_halt(struct bh_app *app, struct waiter *w, struct bh_qube *down, uint32_t start_qid)
{
    w->kind = BH_WAIT_START;
    w->qid = down->qid;
    w->start_qid = start_qid;
    w->deadline = bh_now_ms() + bh_waiters_halt_ms(app, down);
}

/* w's qube boots beside the loop: w is answered when the boot ends. */
static void wait_for_boot(struct bh_app *app, struct waiter *w, struct bh_qube *q)
{
    w->kind = BH_WAIT_STARTED;
    w->qid = q->qid;
    w->start_qid = 0;
    w->deadline = bh_now_ms() + bh_waiters_boot_ms(app, q);
}

static void start_now(struct bh_app *app, struct waiter *w)
{
    struct bh_exc e = { 0 };
    struct bh_qube *q = bh_app_find_qid(app, w->start_qid ? w->start_qid : w->qid);
    struct bh_qube *down = NULL;
    if (!q) {
        bh_exc(&e, "QubesVMNotFoundError", "No such domain: '%s'", w->name);
    } else if (bh_lifecycle_starting(q)) {
        wait_for_boot(app, w, q); /* another waiter's start of it boots: one end answers both */
        return;
    } else if (q->rt.state == BH_STATE_HALTING || q->rt.state == BH_STATE_DYING) {
        wait_for_halt(app, w, q, 0); /* on its way down (again): started once it has halted */
        return;
    } else if (!bh_qube_is_running(q) && (down = bh_lifecycle_netvm_stopping(app, q))) {
        wait_for_halt(app, w, down, q->qid); /* another netvm of its chain is going down */
        return;
    } else {
        int r = bh_lifecycle_start(app, q, &e);
        if (r == BH_LIFECYCLE_STARTING) {
            wait_for_boot(app, w, q);
            return;
        }
        if (r == 0)
            e.type = NULL;
    }
    finish(w, e.type ? &e : NULL);
}

void bh_waiters_started(struct bh_app *app, uint32_t qid, const struct bh_exc *e)
{
    (void)app;
    for (size_t i = 0; i < nwaiters; i++)
        if (waiters[i].conn && waiters[i].qid == qid && waiters[i].kind == BH_WAIT_STARTED)
            finish(&waiters[i], e);
}

void bh_waiters_still_running(struct bh_app *app, uint32_t qid, const struct bh_exc *e)
{
    (void)app;
    for (size_t i = 0; i < nwaiters; i++) {
        struct waiter *w = &waiters[i];
        if (!w->conn || w->qid != qid)
            continue;
        if (w->kind == BH_WAIT_START && w->start_qid)
            start_now(app, w); /* its netvm stays up after all: the qube starts behind it */
        else if (w->kind == BH_WAIT_START)
            finish(w, NULL); /* as qubesd: a Start of a running qube does nothing */
        else if (w->kind == BH_WAIT_SHUTDOWN)
            finish(w, e);
    }
}

void bh_waiters_killed(struct bh_app *app, uint32_t qid, const struct bh_exc *e)
{
    (void)app;
    for (size_t i = 0; i < nwaiters; i++)
        if (waiters[i].conn && waiters[i].qid == qid && waiters[i].kind == BH_WAIT_KILLED)
            finish(&waiters[i], e);
}

void bh_waiters_drop_conn(void *conn)
{
    if (bh_hooks.conn_dropped)
        bh_hooks.conn_dropped(conn);
    for (size_t i = 0; i < nwaiters; i++)
        if (waiters[i].conn == conn) {
            waiters[i].conn = NULL;
            while (nwaiters && !waiters[nwaiters - 1].conn)
                nwaiters--;
            return;
        }
}

void bh_waiters_tick(struct bh_app *app)
{
    int64_t now = bh_now_ms();
    for (size_t i = 0; i < nwaiters; i++) {
        struct waiter *w = &waiters[i];
        if (!w->conn || now <= w->deadline)
            continue;
        struct bh_exc e = { 0 };
        struct bh_qube *down = w->kind == BH_WAIT_START && w->start_qid ? bh_app_find_qid(app, w->qid) : NULL;
        if (w->kind == BH_WAIT_STARTED)
            bh_exc(&e, "QubesException", "Start failed: '%s' did not finish starting in time", w->name);
        else if (w->kind == BH_WAIT_START && w->start_qid)
            bh_exc(&e, "QubesException", "Start failed: '%s' waited for its netvm %s to halt, in vain", w->name,
                   down ? down->name : "(removed)");
        else if (w->kind == BH_WAIT_KILLED)
            bh_exc(&e, "QubesException", "Kill failed: '%s' did not stop in time", w->name);
        else
            bh_exc(&e, "QubesVMShutdownTimeoutError", "Domain shutdown timed out: '%s'", w->name);
        finish(w, &e);
    }
}
