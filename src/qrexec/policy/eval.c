/* Evaluating a call against loaded rules: first match decides, default deny. */
#include "policy_int.h"
#include "cleanup.h"
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A concrete target a call may go to (or asked for). The AdminVM is a C_QUBE whose
 * class is AdminVM. */
enum cand_kind { C_DEFAULT, C_QUBE, C_DISPVM, C_DISPVM_OF };
struct cand {
    enum cand_kind k;
    const struct bh_qube_info *q; /* C_QUBE: the qube; C_DISPVM_OF: the template */
};

const char *bh_policy_decision_name(enum bh_policy_decision d)
{
    return d == BH_POLICY_ALLOW ? "allow" : d == BH_POLICY_ASK ? "ask" : "deny";
}

static enum bh_policy_decision deny(struct bh_policy_result *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static enum bh_policy_decision deny(struct bh_policy_result *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(out->reason, sizeof out->reason, fmt, ap);
    va_end(ap);
    out->decision = BH_POLICY_DENY;
    out->notify = true; /* a refusal is shown unless a deny rule says notify=no */
    out->target_kind = BH_TARGET_NONE;
    out->target[0] = out->target_uuid[0] = out->dispvm_template[0] = '\0';
    for (size_t i = 0; i < out->n_choices; i++)
        free(out->choices[i]);
    free(out->choices);
    out->choices = NULL;
    out->n_choices = 0;
    out->default_target[0] = '\0';
    return BH_POLICY_DENY;
}

void bh_policy_result_free(struct bh_policy_result *r)
{
    for (size_t i = 0; i < r->n_choices; i++)
        free(r->choices[i]);
    free(r->choices);
    r->choices = NULL;
    r->n_choices = 0;
}

static bool is_admin(const struct bh_qube_info *q) { return q->klass == BH_KLASS_ADMINVM; }

/* The template of the source's @dispvm (its default_dispvm), or NULL. */
static const struct bh_qube_info *default_dispvm_of(const struct bh_sysinfo *si,
                                                    const struct bh_qube_info *src)
{
    return src->default_dispvm ? bh_sysinfo_find(si, src->default_dispvm) : NULL;
}

/* A token value naming q: "uuid:U" by its uuid (compared as written, as Qubes does:
 * an upper-case uuid names nothing), anything else by its name. */
static bool value_names(const struct bh_qube_info *q, const char *v)
{
    if (!q)
        return false;
    if (!strncmp(v, "uuid:", 5))
        return q->uuid && !strcmp(q->uuid, v + 5);
    return !strcmp(q->name, v);
}

static const struct bh_qube_info *find_by_value(const struct bh_sysinfo *si, const char *v)
{
    return !strncmp(v, "uuid:", 5) ? bh_sysinfo_find_uuid(si, v + 5) : bh_sysinfo_find(si, v);
}

static bool match_source(const struct tok *t, const struct bh_sysinfo *si,
                         const struct bh_qube_info *src)
{
    switch (t->kind) {
    case TOK_NAME: return !strcmp(src->name, t->value);
    case TOK_UUID: return src->uuid && !strcmp(src->uuid, t->value);
    case TOK_WILDCARD: return true;
    case TOK_ANYVM: return !is_admin(src);
    case TOK_ADMINVM: return is_admin(src);
    /* As Qubes: dom0 too has tags and a type. */
    case TOK_TAG: return bh_qube_has_tag(src, t->value);
    case TOK_TYPE: return !strcmp(bh_policy_klass_name(src->klass), t->value);
    /* A disposable as the source: matched by the template it was started from. */
    case TOK_DISPVM_NAME:
        return src->klass == BH_KLASS_DISPVM && src->template &&
               value_names(bh_sysinfo_find(si, src->template), t->value);
    case TOK_DISPVM_TAG: {
        if (src->klass != BH_KLASS_DISPVM || !src->template)
            return false;
        const struct bh_qube_info *tpl = bh_sysinfo_find(si, src->template);
        return tpl && tpl->template_for_dispvms && bh_qube_has_tag(tpl, t->value);
    }
    case TOK_DEFAULT:
    case TOK_DISPVM:
        return false; /* not valid as a source; the parser refuses them */
    }
    return false;
}

static bool match_target(const struct tok *t, const struct bh_sysinfo *si,
                         const struct bh_qube_info *src, const struct cand *c)
{
    switch (t->kind) {
    case TOK_NAME: return c->k == C_QUBE && !strcmp(c->q->name, t->value);
    case TOK_UUID: return c->k == C_QUBE && c->q->uuid && !strcmp(c->q->uuid, t->value);
    case TOK_WILDCARD: return true;
    case TOK_ANYVM: return !(c->k == C_QUBE && is_admin(c->q));
    case TOK_ADMINVM: return c->k == C_QUBE && is_admin(c->q);
    case TOK_DEFAULT: return c->k == C_DEFAULT;
    case TOK_DISPVM: return c->k == C_DISPVM;
    case TOK_TAG: return c->k == C_QUBE && bh_qube_has_tag(c->q, t->value);
    case TOK_TYPE: return c->k == C_QUBE && !strcmp(bh_policy_klass_name(c->q->klass), t->value);
    case TOK_DISPVM_NAME:
        if (c->k == C_DISPVM_OF)
            return value_names(c->q, t->value);
        /* @dispvm asked for: the source's default disposable template */
        return c->k == C_DISPVM && value_names(default_dispvm_of(si, src), t->value);
    case TOK_DISPVM_TAG: {
        const struct bh_qube_info *tpl = c->k == C_DISPVM_OF ? c->q
                                         : c->k == C_DISPVM  ? default_dispvm_of(si, src)
                                                             : NULL;
        return tpl && tpl->template_for_dispvms && bh_qube_has_tag(tpl, t->value);
    }
    }
    return false;
}

/* A redirect (target=, default_target=) or the caller's target as a concrete target.
 * Returns -1 with *why when it names nothing that exists. */
static int tok_to_cand(const struct tok *t, const struct bh_sysinfo *si, struct cand *c,
                       const char **why)
{
    c->q = NULL;
    switch (t->kind) {
    case TOK_NAME:
        c->k = C_QUBE;
        c->q = bh_sysinfo_find(si, t->value);
        break;
    case TOK_UUID:
        c->k = C_QUBE;
        c->q = bh_sysinfo_find_uuid(si, t->value);
        break;
    case TOK_ADMINVM:
        c->k = C_QUBE;
        c->q = bh_sysinfo_adminvm(si);
        break;
    case TOK_DEFAULT:
        c->k = C_DEFAULT;
        return 0;
    case TOK_DISPVM:
        c->k = C_DISPVM;
        return 0;
    case TOK_DISPVM_NAME:
        c->k = C_DISPVM_OF;
        c->q = find_by_value(si, t->value);
        if (c->q && !c->q->template_for_dispvms) {
            *why = "not a template for disposables";
            return -1;
        }
        break;
    default:
        *why = "not a valid target";
        return -1;
    }
    if (!c->q) {
        *why = "no such qube";
        return -1;
    }
    return 0;
}

static void cand_str(const struct cand *c, char *buf, size_t n)
{
    switch (c->k) {
    case C_QUBE: snprintf(buf, n, "%s", c->q->name); break;
    case C_DISPVM_OF: snprintf(buf, n, "@dispvm:%s", c->q->name); break;
    case C_DISPVM: snprintf(buf, n, "@dispvm"); break;
    case C_DEFAULT: snprintf(buf, n, "@default"); break;
    }
}

/* Rules come from the cursor, which only yields `*`-service rules and rules naming
 * the call's service: the service itself needs no second comparison. */
static bool rule_matches_call(const struct rule *r, const char *arg, const struct bh_sysinfo *si,
                              const struct bh_qube_info *src)
{
    return (!r->argument || !strcmp(r->argument, arg)) && match_source(&r->source, si, src);
}

/* Turns an allowed target into the result: resolves @dispvm, refuses a call to the
 * source itself, applies autostart=no. */
static enum bh_policy_decision finalize(struct bh_policy_result *out, const struct bh_sysinfo *si,
                                        const struct bh_qube_info *src, struct cand c)
{
    if (c.k == C_DEFAULT)
        return deny(out, "allow at %s:%u, but no target was given by the caller or the policy",
                    out->rule_file, out->rule_line);
    if (c.k == C_DISPVM) {
        c.q = default_dispvm_of(si, src);
        if (!c.q)
            return deny(out, "allow to @dispvm at %s:%u, but %s has no default_dispvm",
                        out->rule_file, out->rule_line, src->name);
        c.k = C_DISPVM_OF;
    }
    if (c.k == C_DISPVM_OF) {
        if (!c.q->template_for_dispvms)
            return deny(out, "%s is not a template for disposables", c.q->name);
        if (!out->autostart) {
            /* As Qubes: this refusal notifies as the rule says (no by default). */
            bool notify = out->notify;
            deny(out, "autostart=no at %s:%u, and a new disposable would have to start",
                 out->rule_file, out->rule_line);
            out->notify = notify;
            return BH_POLICY_DENY;
        }
        out->target_kind = BH_TARGET_DISPVM;
        snprintf(out->target, sizeof out->target, "@dispvm:%s", c.q->name);
        snprintf(out->dispvm_template, sizeof out->dispvm_template, "%s", c.q->name);
        out->target_uuid[0] = '\0';
    } else {
        if (c.q == src)
            return deny(out, "a call to itself is denied (%s)", src->name);
        if (!out->autostart && !c.q->running && !is_admin(c.q)) {
            bool notify = out->notify;
            deny(out, "%s is not running, and autostart=no at %s:%u", c.q->name,
                 out->rule_file, out->rule_line);
            out->notify = notify;
            return BH_POLICY_DENY;
        }
        out->target_kind = is_admin(c.q) ? BH_TARGET_ADMINVM : BH_TARGET_QUBE;
        snprintf(out->target, sizeof out->target, "%s", c.q->name);
        snprintf(out->target_uuid, sizeof out->target_uuid, "%s", c.q->uuid ? c.q->uuid : "");
    }
    out->decision = BH_POLICY_ALLOW;
    return BH_POLICY_ALLOW;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_svc_ent(const void *a, const void *b)
{
    const struct svc_ent *x = a, *y = b;
    int c = strcmp(x->svc, y->svc);
    return c ? c : x->idx < y->idx ? -1 : x->idx > y->idx;
}

int policy_build_index(bh_policy *p)
{
    size_t ns = 0, na = 0;
    for (size_t i = 0; i < p->n_rules; i++)
        (p->rules[i].service && !p->rules[i].barrier) ? ns++ : na++;
    p->by_svc = malloc((ns ? ns : 1) * sizeof *p->by_svc);
    p->always = malloc((na ? na : 1) * sizeof *p->always);
    if (!p->by_svc || !p->always)
        return -1;
    for (size_t i = 0; i < p->n_rules; i++) {
        if (p->rules[i].service && !p->rules[i].barrier)
            p->by_svc[p->n_by_svc++] = (struct svc_ent){ p->rules[i].service, i };
        else
            p->always[p->n_always++] = i;
    }
    qsort(p->by_svc, p->n_by_svc, sizeof *p->by_svc, cmp_svc_ent);
    return 0;
}

/* The rules a call for `svc` can match, in file order: a merge of the `*`-service
 * rules (and barriers) with the rules naming svc. */
struct cursor {
    const size_t *a;
    size_t na, ia, ja;
    const struct svc_ent *b;
    size_t nb, ib, jb;
};

static void cursor_init(struct cursor *c, const bh_policy *p, const char *svc)
{
    size_t lo = 0, hi = p->n_by_svc;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(p->by_svc[mid].svc, svc) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t end = lo;
    while (end < p->n_by_svc && !strcmp(p->by_svc[end].svc, svc))
        end++;
    *c = (struct cursor){ .a = p->always, .na = p->n_always, .ja = p->n_always,
                          .b = p->by_svc + lo, .nb = end - lo, .jb = end - lo };
}

/* Next rule position in file order; false at the end. */
static bool cursor_next(struct cursor *c, size_t *out)
{
    bool ha = c->ia < c->na, hb = c->ib < c->nb;
    if (!ha && !hb)
        return false;
    if (ha && (!hb || c->a[c->ia] < c->b[c->ib].idx))
        *out = c->a[c->ia++];
    else
        *out = c->b[c->ib++].idx;
    return true;
}

/* Previous rule position walking backwards from the end; false at the start. */
static bool cursor_prev(struct cursor *c, size_t *out)
{
    bool ha = c->ja > 0, hb = c->jb > 0;
    if (!ha && !hb)
        return false;
    if (ha && (!hb || c->a[c->ja - 1] > c->b[c->jb - 1].idx))
        *out = c->a[--c->ja];
    else
        *out = c->b[--c->jb].idx;
    return true;
}

/* Every target that a matching allow/ask rule would admit, minus what an earlier deny
 * excludes: walking the rules backwards, an earlier rule overrides a later one for
 * the targets it covers, so each target ends with the verdict of its first rule. */
static int collect_choices(const bh_policy *p, const struct bh_sysinfo *si,
                           const struct bh_qube_info *src, const char *svc, const char *arg,
                           struct bh_policy_result *out)
{
    size_t n = si->n, U = 2 * n + 1; /* qubes, @dispvm:qube, @dispvm */
    _cleanup_free_ bool *in = calloc(U, sizeof *in);
    if (!in)
        return -1;
    struct cursor cur;
    cursor_init(&cur, p, svc);
    for (size_t ri; cursor_prev(&cur, &ri);) {
        const struct rule *r = &p->rules[ri];
        if (r->barrier || !rule_matches_call(r, arg, si, src))
            continue;
        bool admit = r->action != ACT_DENY;
        /* As Qubes: a @dispvm:NAME that names no qube makes the whole collection fail
         * (its expansion raises), so the ask fails closed. */
        const struct tok *rt = admit && r->has_redirect ? &r->redirect : &r->target;
        if (rt->kind == TOK_DISPVM_NAME && !find_by_value(si, rt->value)) {
            snprintf(out->reason, sizeof out->reason, "%s:%u: no such qube for @dispvm:%s", r->file,
                     r->line, rt->value);
            return -2;
        }
        if (admit && r->has_redirect) {
            struct cand c;
            const char *why;
            if (tok_to_cand(&r->redirect, si, &c, &why) < 0)
                continue;
            size_t idx = c.k == C_QUBE ? (size_t)(c.q - si->qubes)
                         : c.k == C_DISPVM_OF ? n + (size_t)(c.q - si->qubes)
                                              : 2 * n;
            in[idx] = true;
            continue;
        }
        for (size_t u = 0; u < U; u++) {
            struct cand c = { .k = u < n ? C_QUBE : u < 2 * n ? C_DISPVM_OF : C_DISPVM,
                              .q = u < 2 * n ? &si->qubes[u % n] : NULL };
            if (c.k == C_DISPVM_OF && !c.q->template_for_dispvms)
                continue;
            if (match_target(&r->target, si, src, &c))
                in[u] = admit;
        }
    }
    if (in[2 * n]) {
        const struct bh_qube_info *tpl = default_dispvm_of(si, src);
        if (tpl)
            in[n + (size_t)(tpl - si->qubes)] = true;
    }
    in[(size_t)(src - si->qubes)] = false; /* never the caller itself */
    size_t count = 0;
    for (size_t u = 0; u < 2 * n; u++)
        count += in[u] && (u < n || si->qubes[u - n].template_for_dispvms);
    out->choices = calloc(count + 1, sizeof *out->choices);
    if (!out->choices)
        return -1;
    for (size_t u = 0; u < 2 * n; u++) {
        if (!in[u] || (u >= n && !si->qubes[u - n].template_for_dispvms))
            continue;
        struct cand c = { u < n ? C_QUBE : C_DISPVM_OF, &si->qubes[u % n] };
        char buf[64];
        cand_str(&c, buf, sizeof buf);
        if (!(out->choices[out->n_choices] = strdup(buf)))
            return -1;
        out->n_choices++;
    }
    qsort(out->choices, out->n_choices, sizeof *out->choices, cmp_str);
    return 0;
}

static bool is_choice(const struct bh_policy_result *out, const char *s)
{
    for (size_t i = 0; i < out->n_choices; i++)
        if (!strcmp(out->choices[i], s))
            return true;
    return false;
}

/* A concrete target as it appears in the choices ("@dispvm" resolved). */
static bool choice_name(const struct bh_sysinfo *si, const struct bh_qube_info *src,
                        struct cand c, char *buf, size_t n)
{
    if (c.k == C_DISPVM) {
        c.q = default_dispvm_of(si, src);
        if (!c.q)
            return false;
        c.k = C_DISPVM_OF;
    }
    if (c.k == C_DEFAULT)
        return false;
    cand_str(&c, buf, n);
    return true;
}

static enum bh_policy_decision do_ask(const bh_policy *p, const struct bh_sysinfo *si,
                                      const struct bh_qube_info *src, const char *svc,
                                      const char *arg, const struct rule *r,
                                      const struct cand *intended, struct bh_policy_result *out)
{
    char buf[64];
    if (r->has_redirect) {
        struct cand c;
        const char *why;
        if (tok_to_cand(&r->redirect, si, &c, &why) < 0)
            return deny(out, "ask at %s:%u: target= %s", r->file, r->line, why);
        if (!choice_name(si, src, c, buf, sizeof buf))
            return deny(out, "ask at %s:%u: %s has no default_dispvm", r->file, r->line, src->name);
        if (c.k == C_QUBE && c.q == src)
            return deny(out, "a call to itself is denied (%s)", src->name);
        out->choices = calloc(2, sizeof *out->choices);
        if (!out->choices || !(out->choices[0] = strdup(buf)))
            return deny(out, "out of memory");
        out->n_choices = 1;
    } else {
        /* The choices depend on every rule: a broken file anywhere fails the ask. */
        if (p->first_barrier != SIZE_MAX)
            return deny(out, "%s", p->rules[p->first_barrier].barrier);
        int rc = collect_choices(p, si, src, svc, arg, out);
        if (rc == -2) {
            char why[sizeof out->reason];
            snprintf(why, sizeof why, "%s", out->reason);
            return deny(out, "ask at %s:%u: cannot collect targets: %s", r->file, r->line, why);
        }
        if (rc < 0)
            return deny(out, "out of memory");
    }
    /* As Qubes: autostart=no offers only what runs already (dom0 included), never a
     * new disposable. */
    if (!r->autostart) {
        size_t k = 0;
        for (size_t i = 0; i < out->n_choices; i++) {
            const struct bh_qube_info *q =
                strncmp(out->choices[i], "@dispvm", 7) ? bh_sysinfo_find(si, out->choices[i]) : NULL;
            if (q && (q->running || is_admin(q)))
                out->choices[k++] = out->choices[i];
            else
                free(out->choices[i]);
        }
        out->n_choices = k;
    }
    if (out->n_choices == 0)
        return deny(out, "ask at %s:%u, but no target is available to choose from", r->file,
                    r->line);
    /* default_target= if it is a choice; otherwise the qube the caller named. */
    struct cand dc;
    const char *why;
    if (r->has_default_target && tok_to_cand(&r->default_target, si, &dc, &why) == 0 &&
        choice_name(si, src, dc, buf, sizeof buf) && is_choice(out, buf))
        snprintf(out->default_target, sizeof out->default_target, "%s", buf);
    else if (!r->has_default_target && choice_name(si, src, *intended, buf, sizeof buf) &&
             is_choice(out, buf))
        snprintf(out->default_target, sizeof out->default_target, "%s", buf);
    out->decision = BH_POLICY_ASK;
    snprintf(out->reason, sizeof out->reason, "ask by policy %s:%u", r->file, r->line);
    return BH_POLICY_ASK;
}

/* "svc+arg" -> svc and "+arg" (empty argument "+" when there is no '+'). */
static int split_service(const char *sa, char *svc, char *arg)
{
    const char *plus = strchr(sa, '+');
    size_t sl = plus ? (size_t)(plus - sa) : strlen(sa);
    const char *a = plus ? plus + 1 : "";
    if (sl == 0 || sl > BH_POLICY_MAX_SERVICE || strlen(a) > BH_POLICY_MAX_SERVICE)
        return -1;
    for (size_t i = 0; i < sl; i++)
        if (!policy_service_char(sa[i], false))
            return -1;
    for (const char *c = a; *c; c++)
        if (!policy_service_char(*c, true))
            return -1;
    memcpy(svc, sa, sl);
    svc[sl] = '\0';
    arg[0] = '+';
    strcpy(arg + 1, a);
    return 0;
}

enum bh_policy_decision bh_policy_evaluate(const bh_policy *p, const struct bh_sysinfo *si,
                                           const char *source, const char *target,
                                           const char *service_and_arg,
                                           struct bh_policy_result *out)
{
    memset(out, 0, sizeof *out);
    out->autostart = true;
    char svc[BH_POLICY_MAX_SERVICE + 1], arg[BH_POLICY_MAX_SERVICE + 2];
    if (!p || !si)
        return deny(out, "no policy loaded");
    if (!service_and_arg || split_service(service_and_arg, svc, arg) < 0)
        return deny(out, "invalid service name");
    const struct bh_qube_info *src = NULL;
    if (source && (!strcmp(source, "dom0") || !strcmp(source, "@adminvm")))
        src = bh_sysinfo_adminvm(si);
    else if (source)
        src = bh_sysinfo_find(si, source);
    if (!src)
        return deny(out, "unknown source qube");
    snprintf(out->source, sizeof out->source, "%s", src->name);

    struct tok t;
    const char *why = NULL;
    if (tok_parse(target && *target ? target : "@default", CTX_INTENDED, &t, &why) < 0)
        return deny(out, "invalid target: %s", why);
    struct cand intended;
    int rc = tok_to_cand(&t, si, &intended, &why);
    /* As Qubes: a target qube that does not exist is evaluated as @default. */
    if (rc < 0 && (t.kind == TOK_NAME || t.kind == TOK_UUID)) {
        intended = (struct cand){ .k = C_DEFAULT };
        rc = 0;
    }
    tok_free(&t);
    if (rc < 0)
        return deny(out, "invalid target: %s", why);
    if (intended.k == C_QUBE && intended.q == src)
        return deny(out, "a call to itself is denied (%s)", src->name);

    struct cursor cur;
    cursor_init(&cur, p, svc);
    for (size_t i; cursor_next(&cur, &i);) {
        const struct rule *r = &p->rules[i];
        if (r->barrier) {
            snprintf(out->rule_file, sizeof out->rule_file, "%s", r->file);
            return deny(out, "%s", r->barrier);
        }
        if (!rule_matches_call(r, arg, si, src) || !match_target(&r->target, si, src, &intended))
            continue;
        snprintf(out->rule_file, sizeof out->rule_file, "%s", r->file);
        out->rule_line = r->line;
        out->notify = r->notify;
        out->autostart = r->autostart;
        if (r->user)
            snprintf(out->user, sizeof out->user, "%s", r->user);
        switch (r->action) {
        case ACT_DENY:
            deny(out, "denied by policy %s:%u", r->file, r->line);
            out->notify = r->notify;
            return BH_POLICY_DENY;
        case ACT_ASK:
            return do_ask(p, si, src, svc, arg, r, &intended, out);
        case ACT_ALLOW: {
            struct cand c = intended;
            if (r->has_redirect && tok_to_cand(&r->redirect, si, &c, &why) < 0)
                return deny(out, "allow at %s:%u: target= %s", r->file, r->line, why);
            if (finalize(out, si, src, c) != BH_POLICY_ALLOW)
                return BH_POLICY_DENY;
            snprintf(out->reason, sizeof out->reason, "allowed by policy %s:%u", r->file, r->line);
            return BH_POLICY_ALLOW;
        }
        }
    }
    return deny(out, "no matching rule (default deny)");
}

enum bh_policy_decision bh_policy_confirm_ask(struct bh_policy_result *r,
                                              const struct bh_sysinfo *si, const char *chosen)
{
    if (r->decision != BH_POLICY_ASK)
        return deny(r, "not an ask");
    /* chosen may point into r->choices, which a deny frees */
    char copy[64];
    if (chosen && strlen(chosen) < sizeof copy)
        chosen = strcpy(copy, chosen);
    if (!chosen || !is_choice(r, chosen))
        return deny(r, "%s is not one of the offered targets", chosen ? chosen : "(none)");
    const struct bh_qube_info *src = bh_sysinfo_find(si, r->source);
    if (!src)
        return deny(r, "source qube is gone");
    struct cand c;
    if (!strncmp(chosen, "@dispvm:", 8)) {
        c.k = C_DISPVM_OF;
        c.q = bh_sysinfo_find(si, chosen + 8);
    } else {
        c.k = C_QUBE;
        c.q = bh_sysinfo_find(si, chosen);
    }
    if (!c.q)
        return deny(r, "%s no longer exists", chosen);
    if (finalize(r, si, src, c) != BH_POLICY_ALLOW)
        return BH_POLICY_DENY;
    bh_policy_result_free(r);
    snprintf(r->reason, sizeof r->reason, "allowed by a person, asked by policy %s:%u",
             r->rule_file, r->rule_line);
    return BH_POLICY_ALLOW;
}
