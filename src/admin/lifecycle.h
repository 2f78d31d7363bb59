/* Qube lifecycle: start, shutdown, kill, pause, unpause through the qube's engine
 * (driver/driver.h), with Qubes' events. */
#pragma once
#include "model.h"

/* Returns 0, or -1 with e filled. done (may be NULL) is called when an asynchronous
 * shutdown with wait completes. */
int bh_lifecycle_start(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
int bh_lifecycle_shutdown(struct bh_app *app, struct bh_qube *q, bool force, struct bh_exc *e);
int bh_lifecycle_kill(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
int bh_lifecycle_pause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
int bh_lifecycle_unpause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
/* Current memory/cputime of a running qube (zeros when halted). */
void bh_lifecycle_stats(struct bh_app *app, struct bh_qube *q, struct bh_qube_stats *st);
/* Start every autostart qube, adopt running ones (daemon start). */
void bh_lifecycle_boot(struct bh_app *app, bool autostart);
