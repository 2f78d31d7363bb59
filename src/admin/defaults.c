#include "defaults.h"
#include "props.h"
#include <string.h>

struct def_qube {
    const char *name;
    enum bh_klass klass;
    const char *label;
    const char *props[6][2];
};

static const struct def_qube layout[] = {
    { "host", BH_TEMPLATEVM, "black", { { NULL, NULL } } },
    { "sys-net", BH_APPVM, "red", { { "provides_network", "True" }, { "autostart", "True" }, { "netvm", "" } } },
    { "sys-firewall", BH_APPVM, "green", { { "provides_network", "True" }, { "autostart", "True" }, { "netvm", "sys-net" } } },
    { "default-dvm", BH_APPVM, "red", { { "template_for_dispvms", "True" }, { "netvm", "sys-firewall" } } },
    { "work", BH_APPVM, "blue", { { "netvm", "sys-firewall" } } },
    { "personal", BH_APPVM, "yellow", { { "netvm", "sys-firewall" } } },
    { "untrusted", BH_APPVM, "red", { { "netvm", "sys-firewall" } } },
    { "vault", BH_APPVM, "black", { { "netvm", "" } } },
};

static int set_global(struct bh_app *app, const char *name, const char *value, bh_error *err)
{
    struct bh_exc e = { 0 };
    if (bh_prop_set(app, NULL, bh_prop_find(NULL, name), value, strlen(value), &e) < 0)
        return bh_fail(err, 0, "default layout: %s=%s: %s", name, value, e.msg);
    return 0;
}

int bh_defaults_create(struct bh_app *app, bh_error *err)
{
    for (size_t i = 0; i < sizeof layout / sizeof layout[0]; i++) {
        const struct def_qube *d = &layout[i];
        if (bh_app_find(app, d->name))
            continue;
        struct bh_create_args a = { .klass = d->klass, .name = d->name, .label = d->label,
                                    .template_name = d->klass == BH_APPVM ? "host" : NULL };
        for (size_t p = 0; p < 6 && d->props[p][0]; p++) {
            a.props[p][0] = d->props[p][0];
            a.props[p][1] = d->props[p][1];
        }
        struct bh_exc e = { 0 };
        if (!bh_qube_create(app, &a, &e))
            return bh_fail(err, 0, "default layout: creating %s: %s", d->name, e.msg);
        if (!strcmp(d->name, "host") && set_global(app, "default_template", "host", err) < 0)
            return -1;
    }
    if (set_global(app, "default_netvm", "sys-firewall", err) < 0 || set_global(app, "default_dispvm", "default-dvm", err) < 0 ||
        set_global(app, "management_dispvm", "default-dvm", err) < 0 || set_global(app, "clockvm", "sys-net", err) < 0 ||
        set_global(app, "updatevm", "sys-firewall", err) < 0)
        return -1;
    return 0;
}
