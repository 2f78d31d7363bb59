/* Filling the system-info snapshot from bulkheadd over the Admin API (docs/admin.md):
 * admin.vm.List for names, classes, states and uuids; then per qube the properties
 * the policy needs and its tags. */
#include "sysinfo.h"
#include "admin_client.h"
#include "cleanup.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>

static int call(const char *method, const char *arg, const char *dest,
                struct bh_admin_reply *rep, bh_error *err)
{
    if (bh_admin_call(method, arg, dest, "", 0, rep, err) < 0)
        return bh_prefix(err, "%s %s", method, dest);
    return 0;
}

/* admin.vm.property.Get body: "default=X type=T VALUE" (VALUE may be empty). Returns
 * the value (pointer into body), or NULL if the qube has no such property. */
static const char *property_value(const struct bh_admin_reply *rep)
{
    if (!rep->ok || !rep->body)
        return NULL;
    const char *sp = strchr(rep->body, ' ');
    if (!sp || !(sp = strchr(sp + 1, ' ')))
        return NULL;
    return sp + 1;
}

static int get_property(const char *qube, const char *prop, char **out, bh_error *err)
{
    _cleanup_reply_ struct bh_admin_reply rep = { 0 };
    *out = NULL;
    if (call("admin.vm.property.Get", prop, qube, &rep, err) < 0)
        return -1;
    if (!rep.ok) {
        /* A class without the property (dom0 has no template): unset, not an error. */
        if (rep.exc_type && !strcmp(rep.exc_type, "QubesNoSuchPropertyError"))
            return 0;
        return bh_fail(err, EIO, "property %s of %s: %s: %s", prop, qube,
                       rep.exc_type ? rep.exc_type : "?", rep.exc_msg ? rep.exc_msg : "");
    }
    const char *v = property_value(&rep);
    if (v && *v && !(*out = strdup(v)))
        return bh_fail_errno(err, "strdup");
    return 0;
}

static int fill_qube(struct bh_qube_info *q, bh_error *err)
{
    _cleanup_free_ char *dd = NULL, *tfd = NULL, *tpl = NULL;
    if (get_property(q->name, "default_dispvm", &dd, err) < 0)
        return -1;
    if (dd && bh_qube_set_str(&q->default_dispvm, dd, err) < 0)
        return -1;
    if (q->klass != BH_KLASS_ADMINVM) {
        if (get_property(q->name, "template_for_dispvms", &tfd, err) < 0)
            return -1;
        q->template_for_dispvms = tfd && !strcmp(tfd, "True");
        if (q->klass == BH_KLASS_DISPVM || q->klass == BH_KLASS_APPVM) {
            if (get_property(q->name, "template", &tpl, err) < 0)
                return -1;
            if (tpl && bh_qube_set_str(&q->template, tpl, err) < 0)
                return -1;
        }
    }
    _cleanup_reply_ struct bh_admin_reply rep = { 0 };
    if (call("admin.vm.tag.List", "", q->name, &rep, err) < 0)
        return -1;
    if (!rep.ok)
        return bh_fail(err, EIO, "tags of %s: %s", q->name, rep.exc_msg ? rep.exc_msg : "?");
    char *save = NULL;
    for (char *t = strtok_r(rep.body, "\n", &save); t; t = strtok_r(NULL, "\n", &save))
        if (bh_qube_add_tag(q, t, err) < 0)
            return -1;
    return 0;
}

/* One line of admin.vm.List: "NAME class=C state=S uuid=U" (fields in any order). */
static int parse_list_line(struct bh_sysinfo *si, char *line, bh_error *err)
{
    char *save = NULL;
    char *name = strtok_r(line, " ", &save);
    if (!name)
        return 0;
    const char *klass = NULL, *state = NULL, *uuid = NULL;
    for (char *f; (f = strtok_r(NULL, " ", &save));) {
        if (!strncmp(f, "class=", 6))
            klass = f + 6;
        else if (!strncmp(f, "state=", 6))
            state = f + 6;
        else if (!strncmp(f, "uuid=", 5))
            uuid = f + 5;
    }
    int k = klass ? bh_policy_klass_parse(klass) : -1;
    if (k < 0)
        return bh_fail(err, EBADMSG, "admin.vm.List: %.32s: unknown class", name);
    if (uuid && !*uuid)
        uuid = NULL;
    struct bh_qube_info *q = bh_sysinfo_add(si, name, (enum bh_klass)k, uuid, err);
    if (!q)
        return bh_prefix(err, "admin.vm.List");
    if (state && k != BH_KLASS_ADMINVM)
        q->running = bh_power_state_running(state);
    return 0;
}

int bh_sysinfo_from_admin(struct bh_sysinfo *si, bh_error *err)
{
    /* One call where bulkheadd offers it; the per-qube calls below (4N+1 of them) are
     * for a daemon that does not. */
    _cleanup_reply_ struct bh_admin_reply all = { 0 };
    if (call("internal.GetSystemInfo", "", "dom0", &all, err) < 0)
        return -1;
    if (all.ok) {
        if (strlen(all.body) != all.len)
            return bh_fail(err, EBADMSG, "internal.GetSystemInfo: NUL in reply");
        if (bh_sysinfo_parse(si, all.body, err) < 0)
            return bh_prefix(err, "internal.GetSystemInfo");
        return 0;
    }
    _cleanup_reply_ struct bh_admin_reply rep = { 0 };
    if (call("admin.vm.List", "", "dom0", &rep, err) < 0)
        return -1;
    if (!rep.ok)
        return bh_fail(err, EIO, "admin.vm.List: %s", rep.exc_msg ? rep.exc_msg : "?");
    if (strlen(rep.body) != rep.len)
        return bh_fail(err, EBADMSG, "admin.vm.List: NUL in reply");
    char *save = NULL;
    for (char *l = strtok_r(rep.body, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        if (parse_list_line(si, l, err) < 0)
            return -1;
    if (!bh_sysinfo_adminvm(si) && !bh_sysinfo_add(si, "dom0", BH_KLASS_ADMINVM, NULL, err))
        return -1;
    for (size_t i = 0; i < si->n; i++)
        if (fill_qube(&si->qubes[i], err) < 0)
            return -1;
    return 0;
}
