#include "clone.h"
#include "api.h"
#include "cli.h"
#include <string.h>

char *create_payload(const char *name, const char *label, const char *pool,
                     const struct strv *pools, const char **method_prefix)
{
    char *payload = qt_printf("name=%s label=%s", name, label);
    *method_prefix = "admin.vm.Create.";
    if (pool && *pool) {
        payload = qt_printf("%s pool=%s", payload, pool);
        *method_prefix = "admin.vm.CreateInPool.";
    }
    if (pools && pools->n) {
        for (size_t i = 0; i < pools->n; i++) {
            const char *eq = strchr(pools->v[i], '=');
            payload = qt_printf("%s pool:%.*s=%s", payload, (int)(eq - pools->v[i]),
                                pools->v[i], eq + 1);
        }
        *method_prefix = "admin.vm.CreateInPool.";
    }
    return payload;
}

static bool is_true(const struct kv *kv, const char *key)
{
    const char *v = kv_get(kv, key);
    return v && !strcmp(v, "True");
}

static void remove_vm(const char *name)
{
    struct reply r;
    api_call(&r, name, "admin.vm.Remove", NULL, NULL, 0);
}

static bool copy_metadata(const char *src, const char *dst, const char **why)
{
    struct reply r;
    const struct props *ps = props_all(src);
    static const char *const skip[] = { "name", "qid", "template", "label", "uuid",
                                        "installed_by_rpm", NULL };
    for (size_t i = 0; i < ps->n; i++) {
        const struct prop *p = &ps->p[i];
        bool skipped = p->is_default || prop_is_unset(p);
        for (size_t k = 0; skip[k]; k++)
            skipped |= !strcmp(p->name, skip[k]);
        if (skipped)
            continue;
        api_call(&r, dst, "admin.vm.property.Set", p->name, p->value, strlen(p->value));
        if (!r.ok && !exc_is_attrerror(&r)) {
            cli_log_error(dst, "Failed to set %s property: %s", p->name, r.exc_msg);
            *why = r.exc_msg;
            return false;
        }
    }
    struct strv tags = { 0 };
    strv_split_lines(&tags, api_must(src, "admin.vm.tag.List", NULL, NULL, 0));
    for (size_t i = 0; i < tags.n; i++) {
        if (str_startswith(tags.v[i], "created-by-"))
            continue;
        api_call(&r, dst, "admin.vm.tag.Set", tags.v[i], NULL, 0);
        if (!r.ok) {
            cli_log_error(dst, "Failed to add %s tag: %s", tags.v[i], r.exc_msg);
            *why = r.exc_msg;
            return false;
        }
    }
    struct strv feats = { 0 };
    strv_split_lines(&feats, api_must(src, "admin.vm.feature.List", NULL, NULL, 0));
    for (size_t i = 0; i < feats.n; i++) {
        struct reply g;
        api_call(&g, src, "admin.vm.feature.Get", feats.v[i], NULL, 0);
        if (!g.ok)
            continue;
        api_call(&r, dst, "admin.vm.feature.Set", feats.v[i], g.body, g.len);
        if (!r.ok) {
            cli_log_error(dst, "Failed to set %s feature: %s", feats.v[i], r.exc_msg);
            *why = r.exc_msg;
            return false;
        }
    }
    api_call(&r, src, "admin.vm.firewall.Get", NULL, NULL, 0);
    if (r.ok) {
        struct reply s;
        api_call(&s, dst, "admin.vm.firewall.Set", NULL, r.body, r.len);
        if (!s.ok) {
            cli_log_error("app", "Failed to set firewall: %s", s.exc_msg);
            *why = s.exc_msg;
            return false;
        }
    }
    return true;
}

bool clone_vm(const char *src, const char *new_name, const struct clone_opts *o,
              const char **why)
{
    const struct vm *svm = vm_find(src);
    if (!svm) {
        *why = qt_printf("No such domain: '%s'", src);
        return false;
    }
    const struct props *ps = props_all(src);
    const struct prop *tpl = props_find(ps, "template");
    const struct prop *label = props_find(ps, "label");
    const char *template = tpl && *tpl->value ? tpl->value : NULL;

    struct strv pools = o->pools;
    if (!o->pool && !pools.n) {
        /* Keep volumes in the pools they are in when those differ from the defaults. */
        struct strv vols = { 0 };
        vm_volumes(src, &vols, NULL);
        for (size_t i = 0; i < vols.n; i++) {
            struct kv info;
            if (!volume_info(src, vols.v[i], &info, NULL))
                continue;
            if (is_true(&info, "snap_on_start") || !is_true(&info, "rw") ||
                strv_contains(&o->ignore_volumes, vols.v[i]))
                continue;
            const char *vpool = kv_get(&info, "pool");
            struct reply r;
            api_call(&r, "dom0", "admin.property.Get", qt_printf("default_pool_%s", vols.v[i]),
                     NULL, 0);
            struct prop dp;
            if (!vpool || !r.ok || !prop_parse("p", r.body, &dp) || !strcmp(dp.value, vpool))
                continue;
            strv_push(&pools, qt_printf("%s=%s", vols.v[i], vpool));
        }
        strv_sort(&pools);
    }

    const char *prefix;
    char *payload = create_payload(new_name, label ? label->value : "", o->pool, &pools, &prefix);
    const char *cls = o->new_class ? o->new_class : svm->klass;
    struct reply r;
    api_call(&r, "dom0", qt_printf("%s%s", prefix, cls), template, payload, strlen(payload));
    if (!r.ok) {
        *why = r.exc_msg;
        return false;
    }
    vm_list_refresh();
    if (!copy_metadata(src, new_name, why)) {
        remove_vm(new_name);
        return false;
    }
    struct strv vols = { 0 };
    vm_volumes(new_name, &vols, NULL);
    for (size_t i = 0; i < vols.n; i++) {
        struct kv info;
        if (!volume_info(new_name, vols.v[i], &info, NULL) || !is_true(&info, "save_on_stop") ||
            strv_contains(&o->ignore_volumes, vols.v[i]))
            continue;
        cli_log_info(new_name, "Cloning %s volume", vols.v[i]);
        struct reply tok, to;
        api_call(&tok, src, "admin.vm.volume.CloneFrom", vols.v[i], NULL, 0);
        if (tok.ok)
            api_call(&to, new_name, "admin.vm.volume.CloneTo", vols.v[i], tok.body, tok.len);
        if (!tok.ok || !to.ok) {
            *why = tok.ok ? to.exc_msg : tok.exc_msg;
            remove_vm(new_name);
            return false;
        }
    }
    return true;
}
