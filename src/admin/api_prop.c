/* admin.vm.property.* (per qube) and admin.property.* (global, on dom0). */
#include "api.h"
#include "cleanup.h"
#include "props.h"
#include <string.h>

/* The holder: a qube, or NULL for the global properties. */
static struct bh_qube *holder(struct bh_call *c, bool global) { return global ? NULL : c->dest; }

static const struct bh_prop_def *lookup(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d = bh_prop_find(holder(c, global), c->req->arg);
    if (!d)
        bh_exc(c->exc, "QubesNoSuchPropertyError", "Invalid property '%s' of %s", c->req->arg, global ? "dom0" : c->dest->name);
    return d;
}

static int p_list(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d;
    for (size_t i = 0; (d = bh_prop_nth(holder(c, global), i)); i++)
        if (bh_buf_printf(c->out, "%s\n", bh_prop_name(d)) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int p_get(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d = lookup(c, global);
    if (!d)
        return -1;
    bool def, has;
    _cleanup_free_ char *v = bh_prop_value(c->app, holder(c, global), d, &def, &has);
    return bh_buf_printf(c->out, "default=%s type=%s %s", def ? "True" : "False", bh_ptype_name(bh_prop_type(d)),
                         v ? v : "");
}

/* GetAll escapes backslash and newline so that each property stays on one line. */
static int add_escaped(bh_buf *b, const char *s)
{
    for (; *s; s++) {
        int r = *s == '\\' ? bh_buf_adds(b, "\\\\") : *s == '\n' ? bh_buf_adds(b, "\\n") : bh_buf_addc(b, *s);
        if (r < 0)
            return -1;
    }
    return 0;
}

static int p_getall(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d;
    for (size_t i = 0; (d = bh_prop_nth(holder(c, global), i)); i++) {
        bool def, has;
        _cleanup_free_ char *v = bh_prop_value(c->app, holder(c, global), d, &def, &has);
        if (bh_buf_adds(c->out, bh_prop_name(d)) < 0 || bh_buf_adds(c->out, def ? " default=True type=" : " default=False type=") < 0 ||
            bh_buf_adds(c->out, bh_ptype_name(bh_prop_type(d))) < 0 || bh_buf_addc(c->out, ' ') < 0 ||
            add_escaped(c->out, v ? v : "") < 0 || bh_buf_addc(c->out, '\n') < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    }
    return 0;
}

static int p_getdefault(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d = lookup(c, global);
    if (!d)
        return -1;
    _cleanup_free_ char *v = bh_prop_default(c->app, holder(c, global), d);
    if (!v)
        return 0; /* no default: empty body */
    return bh_buf_printf(c->out, "type=%s %s", bh_ptype_name(bh_prop_type(d)), v);
}

static int p_set(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d = lookup(c, global);
    if (!d)
        return -1;
    return bh_prop_set(c->app, holder(c, global), d, c->req->payload, c->req->payload_len, c->exc);
}

static int p_reset(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d = lookup(c, global);
    return d ? bh_prop_reset(c->app, holder(c, global), d, c->exc) : -1;
}

static int p_help(struct bh_call *c, bool global)
{
    const struct bh_prop_def *d = lookup(c, global);
    return d ? bh_buf_adds(c->out, bh_prop_help(d)) : -1;
}

#define PAIR(op)                                                      \
    static int vm_##op(struct bh_call *c) { return p_##op(c, false); } \
    static int g_##op(struct bh_call *c) { return p_##op(c, true); }
PAIR(list)
PAIR(get)
PAIR(getall)
PAIR(getdefault)
PAIR(set)
PAIR(reset)
PAIR(help)

#define NP BH_M_NOPAYLOAD
#define NA BH_M_NOARG
#define A BH_M_ARG
#define D BH_M_DOM0
const struct bh_method bh_api_prop[] = {
    { "admin.vm.property.List", vm_list, NA | NP },
    { "admin.vm.property.Get", vm_get, A | NP },
    { "admin.vm.property.GetAll", vm_getall, NA | NP },
    { "admin.vm.property.GetDefault", vm_getdefault, A | NP },
    { "admin.vm.property.Set", vm_set, A },
    { "admin.vm.property.Reset", vm_reset, A | NP },
    { "admin.vm.property.Help", vm_help, A | NP },
    { "admin.property.List", g_list, D | NA | NP },
    { "admin.property.Get", g_get, D | A | NP },
    { "admin.property.GetAll", g_getall, D | NA | NP },
    { "admin.property.GetDefault", g_getdefault, D | A | NP },
    { "admin.property.Set", g_set, D | A },
    { "admin.property.Reset", g_reset, D | A | NP },
    { "admin.property.Help", g_help, D | A | NP },
    { NULL, NULL, 0 },
};
