#include "call_policy.h"
#include "policy.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bh_call_policy {
    bh_policy *pol;
    struct bh_sysinfo si;
};

struct bh_call_policy *bh_call_policy_open(const char *policy_dir, const char *sysinfo_text, bh_error *err)
{
    struct bh_call_policy *p = calloc(1, sizeof *p);
    if (!p) {
        bh_fail(err, ENOMEM, "out of memory");
        return NULL;
    }
    bh_sysinfo_init(&p->si);
    if (bh_sysinfo_parse(&p->si, sysinfo_text, err) < 0) {
        bh_call_policy_close(p);
        return NULL;
    }
    /* bulkheadd serves one root: one cache, checked (a few stat calls) per request */
    static struct bh_policy_cache cache;
    p->pol = bh_policy_cache_get(&cache, policy_dir);
    if (!p->pol) {
        bh_fail(err, ENOMEM, "loading %s", policy_dir);
        bh_call_policy_close(p);
        return NULL;
    }
    return p;
}

void bh_call_policy_close(struct bh_call_policy *p)
{
    if (!p)
        return;
    if (p->pol)
        bh_policy_free(p->pol);
    bh_sysinfo_free(&p->si);
    free(p);
}

static bool target_is(const struct bh_policy_result *r, const char *actual)
{
    if (!actual)
        return true;
    if (r->target_kind == BH_TARGET_DISPVM)
        return !strncmp(actual, "@dispvm:", 8) && !strcmp(r->dispvm_template, actual + 8);
    return !strcmp(r->target, actual);
}

bool bh_call_policy_reaches(const struct bh_call_policy *p, const char *source, const char *requested,
                            const char *service_and_arg, const char *actual)
{
    return bh_call_policy_reaches_as(p, source, requested, service_and_arg, actual, NULL, 0, NULL);
}

bool bh_call_policy_reaches_as(const struct bh_call_policy *p, const char *source, const char *requested,
                               const char *service_and_arg, const char *actual, char *user, size_t user_size,
                               bool *autostart)
{
    struct bh_policy_result r;
    memset(&r, 0, sizeof r);
    enum bh_policy_decision d = bh_policy_evaluate(p->pol, &p->si, source, requested, service_and_arg, &r);
    bool ok = false;
    if (d == BH_POLICY_ALLOW)
        ok = target_is(&r, actual);
    else if (d == BH_POLICY_ASK)
        for (size_t i = 0; i < r.n_choices && !ok; i++)
            ok = !actual || !strcmp(r.choices[i], actual);
    if (ok && user)
        snprintf(user, user_size, "%s", r.user[0] ? r.user : "DEFAULT");
    if (autostart)
        *autostart = ok && r.autostart;
    bh_policy_result_free(&r);
    return ok;
}

bool bh_call_policy_allows(const struct bh_call_policy *p, const char *source, const char *target,
                           const char *service_and_arg)
{
    struct bh_policy_result r;
    memset(&r, 0, sizeof r);
    enum bh_policy_decision d = bh_policy_evaluate(p->pol, &p->si, source, target, service_and_arg, &r);
    bh_policy_result_free(&r);
    return d == BH_POLICY_ALLOW;
}
