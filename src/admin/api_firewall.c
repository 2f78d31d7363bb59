/* admin.vm.firewall.*: rules are validated and stored here; the networking code
 * (net_glue.c through bh_hooks) enforces them in the qube's netvm. */
#include "api.h"
#include "cleanup.h"
#include "firewall.h"
#include "hooks.h"
#include <time.h>

static int fw_get(struct bh_call *c)
{
    return bh_buf_adds(c->out, c->dest->firewall ? c->dest->firewall : "action=accept\n");
}

static int fw_set(struct bh_call *c)
{
    bh_error err = { 0 };
    _cleanup_free_ char *norm = bh_fw_rules_normalize(c->req->payload, c->req->payload_len, time(NULL), &err);
    if (!norm)
        return bh_exc(c->exc, "QubesValueError", "Invalid firewall rule: %s", err.msg);
    int r = bh_hooks.firewall_check ? bh_hooks.firewall_check(c->app, c->dest, norm, c->conn, &err) : 0;
    if (r < 0)
        return bh_exc(c->exc, "QubesValueError", "Invalid firewall rule: %s", err.msg);
    if (r > 0) {
        /* names still being resolved (off the loop): the answer comes later */
        c->park = true;
        return 0;
    }
    return bh_qube_firewall_set(c->app, c->dest, norm, c->exc);
}

static int fw_reload(struct bh_call *c)
{
    return bh_qube_firewall_set(c->app, c->dest, c->dest->firewall ? c->dest->firewall : "action=accept\n", c->exc);
}

const struct bh_method bh_api_firewall[] = {
    { "admin.vm.firewall.Get", fw_get, BH_M_NOARG | BH_M_NOPAYLOAD },
    { "admin.vm.firewall.Set", fw_set, BH_M_NOARG },
    { "admin.vm.firewall.Reload", fw_reload, BH_M_NOARG | BH_M_NOPAYLOAD },
    { NULL, NULL, 0 },
};
