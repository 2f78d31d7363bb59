/* Lifecycle without engines, for the fuzz harness: state changes are refused, so that
 * fuzzed requests can never start processes. */
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
void bh_lifecycle_boot(struct bh_app *app, bool autostart) { (void)app; (void)autostart; }
bool bh_lifecycle_starting(const struct bh_qube *q) { (void)q; return false; }

struct bh_qube *bh_lifecycle_netvm_stopping(struct bh_app *app, struct bh_qube *q) { (void)app; (void)q; return NULL; }
