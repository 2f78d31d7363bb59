/* The daemon's view of storage and engines for one qube: builds the storage
 * description and the engine spec from the model, and owns the storage pool. */
#pragma once
#include "driver/driver.h"
#include "model.h"
#include "net_glue.h"
#include "storage/storage.h"

/* Opens the default pool under app->root_dir, makes sure the `host` template volumes
 * exist, and installs the volume hooks. */
int bh_glue_init(struct bh_app *app, bh_error *err);
struct bh_pool *bh_glue_pool(void);

/* Storage description; strings point into app/q or into buf. */
struct bh_sq_buf {
    struct bh_storage_qube sq;
    char *tmpl, *disp_tmpl; /* malloc'd */
};
void bh_glue_sq(struct bh_app *app, const struct bh_qube *q, struct bh_sq_buf *b);
void bh_glue_sq_free(struct bh_sq_buf *b);
/* -1 (Qubes' "dirty volume" message) if src has its own root and is running: its root
 * cannot be copied without a freeze that a writer in it can hold forever. */
int bh_glue_refuse_dirty_root(const struct bh_qube *src, bh_error *err);

/* Engine spec; volume layout left empty (filled by storage prepare at start). */
struct bh_spec_buf {
    struct bh_qube_spec spec;
    char runtime[4096], state[4096];
    char *user;
    char *kernelopts;
    char *kernel;
    struct bh_net_buf net;
};
void bh_glue_spec(struct bh_app *app, const struct bh_qube *q, struct bh_spec_buf *b);
void bh_glue_spec_free(struct bh_spec_buf *b);
/* Records the engine a qube starts in (bh_glue_driver keeps to it until it halts). */
void bh_glue_engine_pin(struct bh_app *app, struct bh_qube *q, const struct bh_driver *drv);
/* Forgets it once the qube has halted and its engine has cleaned up; not while
 * q->rt.engine_dirty (a cleanup of it failed). */
void bh_glue_engine_unpin(struct bh_app *app, struct bh_qube *q);
/* A halted qube's kept engine (a cleanup of it failed, or a restarted bulkheadd found
 * leftovers) cleans up again (its kill), then is forgotten; -1 (err) while it cannot. */
int bh_glue_engine_clean(struct bh_app *app, struct bh_qube *q, bh_error *err);
/* At bulkheadd's start: the record a previous bulkheadd left; for a qube without one,
 * the engine that finds it running (started by an older bulkheadd), if any. */
void bh_glue_engine_load(struct bh_app *app, struct bh_qube *q);
/* At bulkheadd's start, before any load: removes the records of names that are no qube
 * of the store (what a removal could not take away). */
void bh_glue_engine_sweep_records(struct bh_app *app);
const struct bh_driver *bh_glue_driver(struct bh_app *app, const struct bh_qube *q);

/* Per-volume revisions_to_keep, kept with the qube's explicit values (not a property). */
int bh_glue_revisions(struct bh_app *app, const struct bh_qube *q, const char *vol);
int bh_glue_set_revisions(struct bh_app *app, struct bh_qube *q, const char *vol, int keep, bh_error *err);

/* A qube's engine assembles its root under the runtime dir as the qube's own
 * (unprivileged host) UID before pivot_root, so every parent must be searchable by
 * others; -1 with a clear message if not. */
int bh_glue_runtime_check(struct bh_app *app, bh_error *err);
/* Memory all qubes together may be given (MiB): $BULKHEAD_QUBES_MEMORY_MIB, or the
 * host's MemTotal less max(BH_HOST_RESERVE_MIB, 10%). Admission (qmemman's rule: a qube
 * starts only if its `memory` fits) and the common cgroup's hard limit. */
uint64_t bh_glue_memory_budget_mib(void);
