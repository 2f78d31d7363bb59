/* Admin API calls whose reply waits for a qube to halt, as qubesd's awaits do:
 * admin.vm.Shutdown with `wait` (and `force+wait`) answers only once the qube is Halted,
 * cleaned up and domain-shutdown has been sent; admin.vm.Start on a qube that is still
 * Halting waits for the halt, then starts it and answers with the outcome of the start.
 * A waiter belongs to a connection: if the client goes away, the waiter is dropped. */
#pragma once
#include "model.h"

/* BH_WAIT_STARTED: admin.vm.Start of a qube whose engine boots asynchronously (vm):
 * the reply waits for the end of the boot (bh_waiters_started). */
/* BH_WAIT_KILLED: admin.vm.Kill whose engine work runs beside the loop: the reply
 * comes once the qube is Halted (bh_waiters_killed). */
enum bh_wait_kind { BH_WAIT_SHUTDOWN, BH_WAIT_START, BH_WAIT_STARTED, BH_WAIT_KILLED };

/* How long a call parked on q's halt waits: the engine kills a qube at its
 * shutdown_timeout, so the halt comes by then; the margin covers the cleanup. */
int64_t bh_waiters_halt_ms(struct bh_app *app, struct bh_qube *q);
/* ... and one parked on the end of q's boot: the engine gives up on its own at its
 * boot timeout (qrexec_timeout); a margin. */
int64_t bh_waiters_boot_ms(struct bh_app *app, struct bh_qube *q);
/* Parks conn's reply until q halts (or timeout_ms passes: QubesVMShutdownTimeoutError).
 * Returns -1 with e filled when no more waiters fit. */
int bh_waiters_add(struct bh_qube *q, enum bh_wait_kind kind, void *conn, int64_t timeout_ms, struct bh_exc *e);
/* admin.vm.Start of `start` parked until `down` (a netvm of its chain that is on its way
 * down) halts, or is running again after a failed kill: then `start` starts (its chain
 * with it) as a BH_WAIT_START waiter's qube does. */
int bh_waiters_add_start_after(struct bh_qube *down, struct bh_qube *start, void *conn, int64_t timeout_ms,
                               struct bh_exc *e);
/* q has halted and is cleaned up: answers its waiters (the lifecycle calls it). */
void bh_waiters_halted(struct bh_app *app, uint32_t qid);
/* q's asynchronous start ended: e NULL (started) or its failure. */
void bh_waiters_started(struct bh_app *app, uint32_t qid, const struct bh_exc *e);
/* q's kill ended: e NULL (it is Halted) or the failure. */
void bh_waiters_killed(struct bh_app *app, uint32_t qid, const struct bh_exc *e);
/* q was to halt (a Kill ran) but is still there, running again: a Start that waited for
 * the halt is answered as one of a running qube (one that waited for q as its netvm
 * starts its qube now), a Shutdown that did with e. */
void bh_waiters_still_running(struct bh_app *app, uint32_t qid, const struct bh_exc *e);
/* The connection is closing: forget its waiter. */
void bh_waiters_drop_conn(void *conn);
/* Replies to waiters whose deadline passed. */
void bh_waiters_tick(struct bh_app *app);
