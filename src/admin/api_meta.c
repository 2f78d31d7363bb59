/* admin.vm.tag.*, admin.vm.feature.*, admin.vm.notes.* */
#include "api.h"
#include "cleanup.h"
#include "props.h"
#include <string.h>

static int kv_list(struct bh_call *c, const struct bh_kvlist *l)
{
    for (size_t i = 0; i < l->n; i++)
        if (bh_buf_printf(c->out, "%s\n", l->v[i].key) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int t_list(struct bh_call *c) { return kv_list(c, &c->dest->tags); }
static int t_get(struct bh_call *c) { return bh_buf_adds(c->out, bh_kv_get(&c->dest->tags, c->req->arg) ? "1" : "0"); }
static int t_set(struct bh_call *c) { return bh_qube_tag_set(c->app, c->dest, c->req->arg, true, c->exc); }
static int t_remove(struct bh_call *c) { return bh_qube_tag_set(c->app, c->dest, c->req->arg, false, c->exc); }

static int f_list(struct bh_call *c) { return kv_list(c, &c->dest->features); }

static int f_get(struct bh_call *c)
{
    const char *v = bh_kv_get(&c->dest->features, c->req->arg);
    if (!v)
        return bh_exc(c->exc, "QubesFeatureNotFoundError", "Feature not set for domain %s: %s", c->dest->name, c->req->arg);
    return bh_buf_adds(c->out, v);
}

static int f_set(struct bh_call *c)
{
    _cleanup_free_ char *v = NULL;
    if (bh_api_need_payload_text(c, &v) < 0)
        return -1;
    return bh_qube_feature_set(c->app, c->dest, c->req->arg, v, c->exc);
}

static int f_remove(struct bh_call *c) { return bh_qube_feature_del(c->app, c->dest, c->req->arg, c->exc); }

/* The Check* variants look the feature up along a chain, as Qubes' features do. */
enum { VIA_TEMPLATE = 1, VIA_NETVM = 2, VIA_ADMIN = 4 };

static int f_check(struct bh_call *c, unsigned via)
{
    struct bh_qube *q = c->dest;
    size_t hops = 0;
    const char *prop = via & VIA_TEMPLATE ? "template" : via & VIA_NETVM ? "netvm" : NULL;
    while (q && hops++ <= c->app->nqubes) {
        const char *v = bh_kv_get(&q->features, c->req->arg);
        if (v)
            return bh_buf_adds(c->out, v);
        if (!prop || !bh_prop_find(q, prop))
            break;
        _cleanup_free_ char *next = bh_qube_prop(c->app, q, prop);
        q = next && *next ? bh_app_find(c->app, next) : NULL;
    }
    if (via & VIA_ADMIN) {
        const char *v = bh_kv_get(&bh_app_find(c->app, "dom0")->features, c->req->arg);
        if (v)
            return bh_buf_adds(c->out, v);
    }
    return bh_exc(c->exc, "QubesFeatureNotFoundError", "Feature not set for domain %s: %s", c->dest->name, c->req->arg);
}

static int f_cwt(struct bh_call *c) { return f_check(c, VIA_TEMPLATE); }
static int f_cwn(struct bh_call *c) { return f_check(c, VIA_NETVM); }
static int f_cwa(struct bh_call *c) { return f_check(c, VIA_ADMIN); }
static int f_cwta(struct bh_call *c) { return f_check(c, VIA_TEMPLATE | VIA_ADMIN); }

static int n_get(struct bh_call *c) { return bh_buf_adds(c->out, c->dest->notes ? c->dest->notes : ""); }

static int n_set(struct bh_call *c)
{
    _cleanup_free_ char *v = NULL;
    if (bh_api_need_payload_text(c, &v) < 0)
        return -1;
    return bh_qube_notes_set(c->app, c->dest, v, c->exc);
}

#define NP BH_M_NOPAYLOAD
#define NA BH_M_NOARG
#define A BH_M_ARG
const struct bh_method bh_api_meta[] = {
    { "admin.vm.tag.List", t_list, NA | NP },
    { "admin.vm.tag.Get", t_get, A | NP },
    { "admin.vm.tag.Set", t_set, A | NP },
    { "admin.vm.tag.Remove", t_remove, A | NP },
    { "admin.vm.feature.List", f_list, NA | NP },
    { "admin.vm.feature.Get", f_get, A | NP },
    { "admin.vm.feature.Set", f_set, A },
    { "admin.vm.feature.Remove", f_remove, A | NP },
    { "admin.vm.feature.CheckWithTemplate", f_cwt, A | NP },
    { "admin.vm.feature.CheckWithNetvm", f_cwn, A | NP },
    { "admin.vm.feature.CheckWithAdminVM", f_cwa, A | NP },
    { "admin.vm.feature.CheckWithTemplateAndAdminVM", f_cwta, A | NP },
    { "admin.vm.notes.Get", n_get, NA | NP },
    { "admin.vm.notes.Set", n_set, NA },
    { NULL, NULL, 0 },
};
