/* Lifecycle without an engine: every request is refused with a clear error. Replaced by
 * lifecycle.c once the namespace engine is built in. */
#include "lifecycle.h"
#include <string.h>

static int no_engine(struct bh_qube *q, struct bh_exc *e)
{
    return bh_exc(e, "QubesException", "Cannot change the state of %s: no engine is available in this build", q->name);
}

int bh_lifecycle_start(struct bh_app *app, struct bh_qube *q, struct bh_exc *e) { (void)app; return no_engine(q, e); }
int bh_lifecycle_shutdown(struct bh_app *app, struct bh_qube *q, bool force, struct bh_exc *e) { (void)app; (void)force; return no_engine(q, e); }
int bh_lifecycle_kill(struct bh_app *app, struct bh_qube *q, struct bh_exc *e) { (void)app; return no_engine(q, e); }
int bh_lifecycle_pause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e) { (void)app; return no_engine(q, e); }
int bh_lifecycle_unpause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e) { (void)app; return no_engine(q, e); }
void bh_lifecycle_stats(struct bh_app *app, struct bh_qube *q, struct bh_qube_stats *st) { (void)app; (void)q; memset(st, 0, sizeof *st); }
void bh_lifecycle_boot(struct bh_app *app) { (void)app; }

const char *bh_power_state_name(enum bh_power_state s)
{
    static const char *const n[] = { "Halted", "Transient", "Running", "Paused", "Halting", "Dying", "Crashed", "NA" };
    return (unsigned)s < sizeof n / sizeof n[0] ? n[s] : "NA";
}

const struct bh_driver *bh_driver_get(const char *virt_mode)
{
    (void)virt_mode;
    return NULL;
}
