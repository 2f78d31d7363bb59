/* admin.vmclass.List and admin.Events. */
#include "api.h"
#include "cleanup.h"
#include "props.h"
#include "stats.h"
#include <stdio.h>
#include <string.h>

/* As qubesd: on dom0 every qube's vm-stats, on a qube only its own. */
static int vm_stats(struct bh_call *c)
{
    char filter[96];
    snprintf(filter, sizeof filter, "stats:%s", c->dest->klass == BH_ADMINVM ? "" : c->dest->name);
    if (bh_server_subscribe(c->conn, filter) < 0)
        return bh_exc(c->exc, "QubesException", "cannot subscribe");
    bh_stats_now();
    c->stream = true;
    return 0;
}

static int vmclass_list(struct bh_call *c)
{
    return bh_buf_adds(c->out, "AdminVM\nAppVM\nDispVM\nStandaloneVM\nTemplateVM\n");
}

static int events(struct bh_call *c)
{
    /* dom0 as destination: every event; a qube: only its own. */
    if (bh_server_subscribe(c->conn, c->dest->klass == BH_ADMINVM ? "" : c->dest->name) < 0)
        return bh_exc(c->exc, "QubesException", "cannot subscribe");
    c->stream = true;
    return 0;
}

/* Everything the qrexec policy needs about every qube, in one reply (Qubes has
 * internal.GetSystemInfo for the same reason): the policy's system-info text format,
 * one qube a line: NAME CLASS uuid=U state=S tags=a,b default_dispvm=D template=T
 * template_for_dispvms=yes|no. Every value is a validated name, so no escaping. */
int bh_system_info_text(struct bh_app *app, bh_buf *out)
{
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *q = app->qubes[i];
        _cleanup_free_ char *dd = bh_qube_prop(app, q, "default_dispvm");
        if (bh_buf_printf(out, "%s %s uuid=%s state=%s", q->name, bh_klass_name(q->klass), q->uuid,
                          bh_power_state_name(q->rt.state)) < 0)
            return -1;
        if (q->tags.n) {
            bh_buf_adds(out, " tags=");
            for (size_t t = 0; t < q->tags.n; t++)
                bh_buf_printf(out, "%s%s", t ? "," : "", q->tags.v[t].key);
        }
        if (dd && *dd)
            bh_buf_printf(out, " default_dispvm=%s", dd);
        if (q->klass == BH_APPVM || q->klass == BH_DISPVM) {
            const char *t = bh_kv_get(&q->props, "template");
            if (t)
                bh_buf_printf(out, " template=%s", t);
        }
        if (q->klass != BH_ADMINVM)
            bh_buf_printf(out, " template_for_dispvms=%s",
                          bh_qube_prop_bool(app, q, "template_for_dispvms") ? "yes" : "no");
        if (bh_buf_addc(out, '\n') < 0)
            return -1;
    }
    return 0;
}

static int system_info(struct bh_call *c)
{
    return bh_system_info_text(c->app, c->out) < 0 ? bh_exc(c->exc, "QubesException", "out of memory") : 0;
}

/* Where this daemon's qrexec policy lives: qrexec-policy-test and -lint read the policy
 * of the daemon $BULKHEAD_SOCKET names, without a second variable. */
static int policy_dir(struct bh_call *c)
{
    return bh_buf_printf(c->out, "%s/policy.d", c->app->root_dir) < 0 ? bh_exc(c->exc, "QubesException", "out of memory") : 0;
}

const struct bh_method bh_api_misc[] = {
    { "internal.GetPolicyDir", policy_dir, BH_M_DOM0 | BH_M_NOARG | BH_M_NOPAYLOAD },
    { "internal.GetSystemInfo", system_info, BH_M_DOM0 | BH_M_NOARG | BH_M_NOPAYLOAD },
    { "admin.vmclass.List", vmclass_list, BH_M_DOM0 | BH_M_NOARG | BH_M_NOPAYLOAD },
    { "admin.Events", events, BH_M_NOARG | BH_M_NOPAYLOAD },
    { "admin.vm.Stats", vm_stats, BH_M_NOARG | BH_M_NOPAYLOAD },
    { NULL, NULL, 0 },
};
