/* qubes.FeaturesRequest, qubes.NotifyTools, qubes.NotifyUpdates: calls a qube makes to
 * dom0 (qubes/api/misc.py), forwarded by qrexec (qubesd-query) with the qube as source.
 * What a qube may change is what Qubes' extensions allow (qubes/ext/core_features.py,
 * services.py, supported_features.py), nothing more:
 *  - a template-based qube (AppVM, DispVM) changes nothing but its supported-rpc.*;
 *  - os-*, qubes-agent-version, anon-timezone (only on), qubes-firewall, vmexec;
 *  - qrexec, gui, gui-emulated only when not set already;
 *  - supported-service.* / supported-feature.* / supported-rpc.*: only "1" counts,
 *    the advertised set replaces the previous one, an empty set changes nothing;
 *  - NotifyUpdates sets updates-available (and the dates) on the qube if it is
 *    updateable, else on the nearest updateable template that is not running.
 * Boot modes (boot-mode.*) are not taken: Bulkhead has one boot mode. */
#include "api.h"
#include "cleanup.h"
#include "features_parse.h"
#include "log.h"
#include "props.h"
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static bool template_based(const struct bh_qube *q) { return q->klass == BH_APPVM || q->klass == BH_DISPVM; }

/* Sets a feature unless it already has that value (Qubes: True is "1", False ""). */
static int set(struct bh_call *c, struct bh_qube *q, const char *k, const char *v)
{
    const char *cur = bh_kv_get(&q->features, k);
    if (cur && !strcmp(cur, v))
        return 0;
    return bh_qube_feature_set(c->app, q, k, v, c->exc);
}

static int del(struct bh_call *c, struct bh_qube *q, const char *k)
{
    return bh_kv_get(&q->features, k) ? bh_qube_feature_del(c->app, q, k, c->exc) : 0;
}

static bool valid_date(const char *s)
{
    int y, m, d;
    char tail;
    if (strlen(s) != 10 || s[4] != '-' || s[7] != '-' || sscanf(s, "%4d-%2d-%2d%c", &y, &m, &d, &tail) != 3)
        return false;
    for (int i = 0; i < 10; i++)
        if (i != 4 && i != 7 && !isdigit((unsigned char)s[i]))
            return false;
    static const int days[] = { 31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
    bool leap = (y % 4 == 0 && y % 100) || y % 400 == 0;
    return y >= 1 && m >= 1 && m <= 12 && d >= 1 && d <= days[m - 1] + (m == 2 && leap);
}

/* _version_re: [0-9]{1,3}\.[0-9]{1,3} */
static bool valid_agent_version(const char *s)
{
    size_t a = strspn(s, "0123456789");
    if (a < 1 || a > 3 || s[a] != '.')
        return false;
    size_t b = strspn(s + a + 1, "0123456789");
    return b >= 1 && b <= 3 && !s[a + 1 + b];
}

static int core_features(struct bh_call *c, struct bh_qube *q, const struct bh_fr *f)
{
    if (template_based(q)) {
        bh_info("%s: ignoring qubes.NotifyTools for template-based VM", q->name);
        return 0;
    }
    const char *v;
    if ((v = bh_fr_get(f, "os-distribution")) && *v && set(c, q, "os-distribution", v) < 0)
        return -1;
    if ((v = bh_fr_get(f, "os-distribution-like")) && *v && set(c, q, "os-distribution-like", v) < 0)
        return -1;
    if ((v = bh_fr_get(f, "os-version")) && *v) {
        if (isdigit((unsigned char)v[0]) && strspn(v, "0123456789.-") == strlen(v)) {
            if (set(c, q, "os-version", v) < 0)
                return -1;
        } else {
            bh_warn("%s: invalid 'os-version' value '%s'", q->name, v);
        }
    }
    if ((v = bh_fr_get(f, "os-eol")) && *v) {
        if (valid_date(v)) {
            if (set(c, q, "os-eol", v) < 0)
                return -1;
        } else {
            bh_warn("%s: invalid 'os-eol' value '%s', expected YYYY-MM-DD", q->name, v);
        }
    }
    if ((v = bh_fr_get(f, "qubes-agent-version")) && valid_agent_version(v) && set(c, q, "qubes-agent-version", v) < 0)
        return -1;
    if ((v = bh_fr_get(f, "anon-timezone")) && !strcmp(v, "1") && set(c, q, "anon-timezone", "1") < 0)
        return -1;
    static const char *const once[] = { "qrexec", "gui", "gui-emulated" }, *const free_[] = { "qubes-firewall", "vmexec" };
    for (size_t i = 0; i < 3; i++) {
        v = bh_fr_get(f, once[i]);
        if (v && (!strcmp(v, "1") || !strcmp(v, "0")) && !bh_kv_get(&q->features, once[i]) &&
            set(c, q, once[i], !strcmp(v, "1") ? "1" : "") < 0)
            return -1;
    }
    for (size_t i = 0; i < 2; i++) {
        v = bh_fr_get(f, free_[i]);
        if (v && (!strcmp(v, "1") || !strcmp(v, "0")) && set(c, q, free_[i], !strcmp(v, "1") ? "1" : "") < 0)
            return -1;
    }
    return 0;
}

/* supported-service.*, supported-feature.*, supported-rpc.*: the advertised set (values
 * "1") replaces what was set (non-empty values); an empty advertisement changes nothing. */
static int supported(struct bh_call *c, struct bh_qube *q, const struct bh_fr *f, const char *prefix)
{
    size_t pl = strlen(prefix);
    bool any = false;
    for (size_t i = 0; i < f->n; i++)
        any |= !strncmp(f->e[i].key, prefix, pl) && !strcmp(f->e[i].val, "1");
    if (!any)
        return 0;
    /* Drop what is no longer advertised (collected first: deleting changes the list). */
    struct strlist {
        char k[BH_FR_KEY + 1];
    };
    size_t ndrop = 0;
    _cleanup_free_ struct strlist *drop = calloc(q->features.n + 1, sizeof *drop);
    if (!drop)
        return bh_exc(c->exc, "QubesException", "out of memory");
    for (size_t i = 0; i < q->features.n; i++) {
        const char *k = q->features.v[i].key, *val = q->features.v[i].value;
        if (strncmp(k, prefix, pl) || !val[0] || strlen(k) > BH_FR_KEY)
            continue;
        const char *adv = bh_fr_get(f, k);
        if (!adv || strcmp(adv, "1"))
            snprintf(drop[ndrop++].k, sizeof drop->k, "%s", k);
    }
    for (size_t i = 0; i < f->n; i++) {
        const char *k = f->e[i].key;
        if (strncmp(k, prefix, pl) || strcmp(f->e[i].val, "1"))
            continue;
        const char *cur = bh_kv_get(&q->features, k);
        if (cur && cur[0])
            continue; /* already supported */
        if (set(c, q, k, "1") < 0)
            return -1;
        if (!strcmp(k, "supported-service.apparmor") && !bh_kv_get(&q->features, "apparmor") &&
            set(c, q, "apparmor", "1") < 0)
            return -1;
    }
    for (size_t i = 0; i < ndrop; i++) {
        if (del(c, q, drop[i].k) < 0)
            return -1;
        const char *aa = bh_kv_get(&q->features, "apparmor");
        if (!strcmp(drop[i].k, "supported-service.apparmor") && aa && !strcmp(aa, "1") && del(c, q, "apparmor") < 0)
            return -1;
    }
    return 0;
}

/* The features-request event, handled as Qubes' extensions handle it. */
static int features_request(struct bh_call *c, const struct bh_fr *f)
{
    struct bh_qube *q = c->src;
    if (q->klass == BH_ADMINVM)
        return bh_exc(c->exc, "PermissionDenied", "dom0 does not request features");
    if (core_features(c, q, f) < 0)
        return -1;
    if (!template_based(q)) {
        if (supported(c, q, f, "supported-service.") < 0 || supported(c, q, f, "supported-feature.") < 0)
            return -1;
    } else {
        bh_info("%s: ignoring qubes.FeaturesRequest from template-based VM", q->name);
    }
    return supported(c, q, f, "supported-rpc.");
}

static int features_request_call(struct bh_call *c)
{
    struct bh_fr *f = calloc(1, sizeof *f);
    if (!f)
        return bh_exc(c->exc, "QubesException", "out of memory");
    char msg[256];
    int r = bh_fr_parse(c->req->payload, c->req->payload_len, BH_FR_SAFE_REQUEST, f, msg, sizeof msg);
    if (r < 0)
        r = bh_exc(c->exc, "PermissionDenied", "%s", msg);
    else
        r = features_request(c, f);
    free(f);
    return r;
}

/* Legacy (Qubes Windows Tools): only these keys, letters and digits only. */
static int notify_tools_call(struct bh_call *c)
{
    struct bh_fr *f = calloc(1, sizeof *f), *keep = calloc(1, sizeof *keep);
    int r;
    char msg[256];
    if (!f || !keep) {
        r = bh_exc(c->exc, "QubesException", "out of memory");
    } else if (bh_fr_parse(c->req->payload, c->req->payload_len, BH_FR_SAFE_TOOLS, f, msg, sizeof msg) < 0) {
        r = bh_exc(c->exc, "PermissionDenied", "%s", msg);
    } else {
        static const char *const expected[] = { "qrexec", "gui", "gui-emulated", "default-user", "os" };
        for (size_t i = 0; i < 5; i++) {
            const char *v = bh_fr_get(f, expected[i]);
            if (v && *v) {
                snprintf(keep->e[keep->n].key, sizeof keep->e[0].key, "%s", expected[i]);
                snprintf(keep->e[keep->n].val, sizeof keep->e[0].val, "%s", v);
                keep->n++;
            }
        }
        r = features_request(c, keep);
    }
    free(f);
    free(keep);
    return r;
}

static int update_feature(struct bh_call *c, struct bh_qube *q, bool available)
{
    char now[32];
    time_t t = time(NULL);
    struct tm tm;
    strftime(now, sizeof now, "%Y-%m-%d %H:%M:%S", localtime_r(&t, &tm));
    const char *old = bh_kv_get(&q->features, "updates-available");
    if (old && old[0] && !available && set(c, q, "last-update", now) < 0)
        return -1;
    if (set(c, q, "updates-available", available ? "1" : "") < 0)
        return -1;
    return bh_qube_feature_set(c->app, q, "last-updates-check", now, c->exc);
}

static int notify_updates_call(struct bh_call *c)
{
    /* untrusted_payload.strip().isdigit() */
    const char *s = c->req->payload;
    size_t n = c->req->payload_len;
    while (n && isspace((unsigned char)*s))
        s++, n--;
    while (n && isspace((unsigned char)s[n - 1]))
        n--;
    if (!n || n > 19 || strspn(s, "0123456789") < n)
        return bh_exc(c->exc, "PermissionDenied", "Update count is not a digit");
    bool available = false;
    for (size_t i = 0; i < n; i++)
        available |= s[i] != '0';
    struct bh_qube *q = c->src;
    if (q->klass == BH_ADMINVM)
        return bh_exc(c->exc, "PermissionDenied", "dom0 does not notify updates here");
    if (bh_qube_prop_bool(c->app, q, "updateable"))
        return update_feature(c, q, available);
    /* The nearest updateable template up the chain. */
    struct bh_qube *t = q;
    for (int depth = 0; depth < 8; depth++) {
        _cleanup_free_ char *tn = bh_qube_prop(c->app, t, "template");
        t = tn && *tn ? bh_app_find(c->app, tn) : NULL;
        if (!t || bh_qube_prop_bool(c->app, t, "updateable"))
            break;
    }
    if (!t || bh_qube_is_running(t) || !available)
        return 0; /* a running template tells for itself; "no updates" from a child says nothing */
    return update_feature(c, t, true);
}

#define NA BH_M_NOARG
const struct bh_method bh_api_features_request[] = {
    { "qubes.FeaturesRequest", features_request_call, BH_M_DOM0 | NA },
    { "qubes.NotifyTools", notify_tools_call, BH_M_DOM0 | NA },
    { "qubes.NotifyUpdates", notify_updates_call, BH_M_DOM0 | NA },
    { NULL, NULL, 0 },
};
