/* admin.vmclass.List and admin.Events. */
#include "api.h"
#include <string.h>

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

const struct bh_method bh_api_misc[] = {
    { "admin.vmclass.List", vmclass_list, BH_M_DOM0 | BH_M_NOARG | BH_M_NOPAYLOAD },
    { "admin.Events", events, BH_M_NOARG | BH_M_NOPAYLOAD },
    { NULL, NULL, 0 },
};
