/* Preloaded disposables (Qubes' `preload-dispvm-max` feature on a disposable template):
 * bulkheadd keeps that many disposables created and running, so that a call to
 * @dispvm or `qvm-run --dispvm` does not wait for a start. A preloaded disposable
 * carries the feature `preload-dispvm` until it is handed out; it is used for exactly
 * one call and destroyed afterwards, like any other disposable. */
#pragma once
#include "model.h"

/* Hands out a running preloaded disposable of base (and marks it used), or NULL. */
struct bh_qube *bh_preload_take(struct bh_app *app, struct bh_qube *base);
/* A qube halted: if it was a preloaded disposable never used, its pool is not refilled
 * until it is used or preload-dispvm-max is set again (lifecycle calls this). */
void bh_preload_halted(struct bh_app *app, struct bh_qube *q);
/* Starts keeping the pools filled (call once the daemon is up). */
void bh_preload_init(struct bh_app *app);
