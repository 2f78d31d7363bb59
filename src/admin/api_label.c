/* admin.label.*: Qubes' eight labels plus user-created ones. */
#include "api.h"
#include "cleanup.h"
#include <string.h>

static const struct bh_label *need_label(struct bh_call *c)
{
    const struct bh_label *l = bh_label_find(c->app, c->req->arg);
    if (!l)
        bh_exc(c->exc, "QubesLabelNotFoundError", "Label does not exist: %s", c->req->arg);
    return l;
}

static int l_list(struct bh_call *c)
{
    for (size_t i = 0; i < c->app->nlabels; i++)
        if (bh_buf_printf(c->out, "%s\n", c->app->labels[i].name) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int l_get(struct bh_call *c)
{
    const struct bh_label *l = need_label(c);
    return l ? bh_buf_adds(c->out, l->color) : -1;
}

static int l_index(struct bh_call *c)
{
    const struct bh_label *l = need_label(c);
    return l ? bh_buf_printf(c->out, "%d", l->index) : -1;
}

static int l_create(struct bh_call *c)
{
    _cleanup_free_ char *color = NULL;
    if (bh_api_need_payload_text(c, &color) < 0)
        return -1;
    return bh_label_create(c->app, c->req->arg, color, c->exc);
}

static int l_remove(struct bh_call *c) { return bh_label_remove(c->app, c->req->arg, c->exc); }

const struct bh_method bh_api_label[] = {
    { "admin.label.List", l_list, BH_M_DOM0 | BH_M_NOARG | BH_M_NOPAYLOAD },
    { "admin.label.Get", l_get, BH_M_DOM0 | BH_M_ARG | BH_M_NOPAYLOAD },
    { "admin.label.Index", l_index, BH_M_DOM0 | BH_M_ARG | BH_M_NOPAYLOAD },
    { "admin.label.Create", l_create, BH_M_DOM0 | BH_M_ARG },
    { "admin.label.Remove", l_remove, BH_M_DOM0 | BH_M_ARG | BH_M_NOPAYLOAD },
    { NULL, NULL, 0 },
};
