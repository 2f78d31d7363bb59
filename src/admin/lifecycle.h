/* Qube lifecycle: start, shutdown, kill, pause, unpause through the qube's engine
 * (driver/driver.h), with Qubes' events. */
#pragma once
#include "model.h"

/* Returns 0, or -1 with e filled. done (may be NULL) is called when an asynchronous
 * shutdown with wait completes. */
/* Start returns BH_LIFECYCLE_STARTING (1) when the engine boots asynchronously: the
 * qube is Transient until its engine's fd says it is up; then the STARTED waiters
 * (waiters.h) get the outcome. */
#define BH_LIFECYCLE_STARTING 1
int bh_lifecycle_start(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
/* Is an asynchronous start of q in progress? */
bool bh_lifecycle_starting(const struct bh_qube *q);
/* The first qube of q's netvm chain that is on its way down (Halting, Dying), or NULL:
 * q started now would be linked to a netvm that is going away. */
struct bh_qube *bh_lifecycle_netvm_stopping(struct bh_app *app, struct bh_qube *q);
int bh_lifecycle_shutdown(struct bh_app *app, struct bh_qube *q, bool force, struct bh_exc *e);
/* Kill returns BH_LIFECYCLE_KILLING (2) when the engine's work runs in a child beside
 * the loop: the qube is Dying until it ends; then it is Halted and the KILLED waiters
 * (waiters.h) hear the outcome. A Kill of a qube already being killed returns it too. */
#define BH_LIFECYCLE_KILLING 2
int bh_lifecycle_kill(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
int bh_lifecycle_pause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
int bh_lifecycle_unpause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
/* Current memory/cputime of a running qube (zeros when halted). */
void bh_lifecycle_stats(struct bh_app *app, struct bh_qube *q, struct bh_qube_stats *st);
/* Start every autostart qube, adopt running ones (daemon start). */
/* At start, after the qids are claimed and before anything acts on a qube: -1 (err
 * names the qube and a process) when a qube of the store that this daemon's engine does
 * not find running has host UIDs (its qid's range) that a live process holds: another
 * daemon's qube, given that qid while this daemon was stopped and left running by it.
 * Starting that qube would share its UIDs, and the boot's sweep of it would kill that
 * qube's qrexec processes (docs/architecture.md, "Host identities"). */
int bh_lifecycle_check_ids(struct bh_app *app, bh_error *err);
void bh_lifecycle_boot(struct bh_app *app, bool autostart);
