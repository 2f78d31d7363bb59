/* Where the model calls out to the rest of the daemon (storage, engine, networking),
 * so that model.c does not depend on them and tests can run the model alone. Each
 * hook may be NULL. */
#pragma once
#include "err.h"
struct bh_app;
struct bh_qube;

struct bh_hooks {
    int (*volumes_create)(struct bh_app *app, struct bh_qube *q, bh_error *err);
    int (*volumes_remove)(struct bh_app *app, struct bh_qube *q, bh_error *err);
    /* Called after a property of q changed (e.g. netvm while running). */
    void (*property_changed)(struct bh_app *app, struct bh_qube *q, const char *name);
};
extern struct bh_hooks bh_hooks;
