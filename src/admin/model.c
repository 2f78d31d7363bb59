#include "model.h"
#include "cleanup.h"
#include "events.h"
#include "hooks.h"
#include "host_ids.h"
#include "log.h"
#include "names.h"
#include "props.h"
#include "proc_ids.h"
#include "qid_claim.h"
#include "store.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static const char *const klass_names[BH_KLASS_COUNT] = { "AdminVM", "TemplateVM", "AppVM", "DispVM", "StandaloneVM" };

const char *bh_klass_name(enum bh_klass k) { return k < BH_KLASS_COUNT ? klass_names[k] : "?"; }

int bh_klass_parse(const char *s, enum bh_klass *out)
{
    for (int i = 0; i < BH_KLASS_COUNT; i++)
        if (!strcmp(s, klass_names[i])) {
            *out = (enum bh_klass)i;
            return 0;
        }
    return -1;
}

/* ---- kvlist ---- */

static size_t kv_pos(const struct bh_kvlist *l, const char *key, bool *found)
{
    size_t lo = 0, hi = l->n;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(l->v[mid].key, key);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

const char *bh_kv_get(const struct bh_kvlist *l, const char *key)
{
    bool f;
    size_t i = kv_pos(l, key, &f);
    return f ? l->v[i].value : NULL;
}

int bh_kv_set(struct bh_kvlist *l, const char *key, const char *value)
{
    bool f;
    size_t i = kv_pos(l, key, &f);
    char *nv = strdup(value);
    if (!nv)
        return -1;
    if (f) {
        free(l->v[i].value);
        l->v[i].value = nv;
        return 0;
    }
    char *nk = strdup(key);
    if (!nk) {
        free(nv);
        return -1;
    }
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 8;
        struct bh_kv *n = realloc(l->v, nc * sizeof *n);
        if (!n) {
            free(nk);
            free(nv);
            return -1;
        }
        l->v = n;
        l->cap = nc;
    }
    memmove(&l->v[i + 1], &l->v[i], (l->n - i) * sizeof *l->v);
    l->v[i].key = nk;
    l->v[i].value = nv;
    l->n++;
    return 0;
}

bool bh_kv_del(struct bh_kvlist *l, const char *key)
{
    bool f;
    size_t i = kv_pos(l, key, &f);
    if (!f)
        return false;
    free(l->v[i].key);
    free(l->v[i].value);
    memmove(&l->v[i], &l->v[i + 1], (l->n - i - 1) * sizeof *l->v);
    l->n--;
    return true;
}

void bh_kv_free(struct bh_kvlist *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].key);
        free(l->v[i].value);
    }
    free(l->v);
    memset(l, 0, sizeof *l);
}

/* ---- qubes in memory ---- */

static void qube_free(struct bh_qube *q)
{
    if (!q)
        return;
    bh_kv_free(&q->props);
    bh_kv_free(&q->features);
    bh_kv_free(&q->tags);
    free(q->notes);
    free(q->firewall);
    free(q);
}

static size_t qube_pos(const struct bh_app *app, const char *name, bool *found)
{
    size_t lo = 0, hi = app->nqubes;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        int c = strcmp(app->qubes[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    *found = false;
    return lo;
}

struct bh_qube *bh_app_find(struct bh_app *app, const char *name)
{
    if (!strncmp(name, "uuid:", 5)) {
        for (size_t i = 0; i < app->nqubes; i++)
            if (!strcmp(app->qubes[i]->uuid, name + 5))
                return app->qubes[i];
        return NULL;
    }
    bool f;
    size_t i = qube_pos(app, name, &f);
    return f ? app->qubes[i] : NULL;
}

struct bh_qube *bh_app_find_qid(struct bh_app *app, uint32_t qid)
{
    for (size_t i = 0; i < app->nqubes; i++)
        if (app->qubes[i]->qid == qid)
            return app->qubes[i];
    return NULL;
}

static int app_insert(struct bh_app *app, struct bh_qube *q)
{
    bool f;
    size_t i = qube_pos(app, q->name, &f);
    if (f) {
        errno = EEXIST;
        return -1;
    }
    if (app->nqubes == app->cap) {
        size_t nc = app->cap ? app->cap * 2 : 64;
        struct bh_qube **n = realloc(app->qubes, nc * sizeof *n);
        if (!n)
            return -1;
        app->qubes = n;
        app->cap = nc;
    }
    memmove(&app->qubes[i + 1], &app->qubes[i], (app->nqubes - i) * sizeof *app->qubes);
    app->qubes[i] = q;
    app->nqubes++;
    return 0;
}

static void app_unlink(struct bh_app *app, struct bh_qube *q)
{
    bool f;
    size_t i = qube_pos(app, q->name, &f);
    if (!f)
        return;
    memmove(&app->qubes[i], &app->qubes[i + 1], (app->nqubes - i - 1) * sizeof *app->qubes);
    app->nqubes--;
}

static struct bh_qube *qube_new(uint32_t qid, const char *name, enum bh_klass k, const char *uuid)
{
    struct bh_qube *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    q->qid = qid;
    snprintf(q->name, sizeof q->name, "%s", name);
    q->klass = k;
    snprintf(q->uuid, sizeof q->uuid, "%s", uuid);
    q->rt.state = BH_STATE_HALTED;
    q->rt.pidfd = -1;
    q->rt.qrexec_pidfd = -1;
    q->rt.qrexec_readyfd = -1;
    q->rt.qrexec_gofd = -1;
    q->rt.qrexec_early_rfd = -1;
    if (k == BH_ADMINVM)
        q->rt.state = BH_STATE_RUNNING;
    return q;
}

int bh_app_add_loaded(struct bh_app *app, uint32_t qid, const char *name, const char *klass, const char *uuid, bh_error *err)
{
    enum bh_klass k;
    if (bh_klass_parse(klass, &k) < 0)
        return bh_fail(err, EINVAL, "store: qube %s has unknown class %s", name, klass);
    struct bh_qube *q = qube_new(qid, name, k, uuid);
    if (!q || app_insert(app, q) < 0) {
        qube_free(q);
        return bh_fail_errno(err, "store: loading qube %s", name);
    }
    return 0;
}

int bh_app_add_label(struct bh_app *app, int idx, const char *name, const char *color)
{
    struct bh_label *n = realloc(app->labels, (app->nlabels + 1) * sizeof *n);
    if (!n)
        return -1;
    app->labels = n;
    struct bh_label *l = &app->labels[app->nlabels++];
    l->index = idx;
    snprintf(l->name, sizeof l->name, "%s", name);
    snprintf(l->color, sizeof l->color, "%s", color);
    return 0;
}

const struct bh_label *bh_label_find(const struct bh_app *app, const char *name)
{
    for (size_t i = 0; i < app->nlabels; i++)
        if (!strcmp(app->labels[i].name, name))
            return &app->labels[i];
    return NULL;
}

const struct bh_label *bh_label_of(const struct bh_app *app, const struct bh_qube *q)
{
    const char *l = bh_kv_get(&q->props, "label");
    return l ? bh_label_find(app, l) : NULL;
}

bool bh_qube_is_running(const struct bh_qube *q)
{
    return q->rt.state != BH_STATE_HALTED && q->rt.state != BH_STATE_CRASHED && q->rt.state != BH_STATE_NA;
}

/* Qubes' eight labels, with their colours and indexes. */
static const struct bh_label builtin_labels[] = {
    { 1, "red", "0xcc0000" },    { 2, "orange", "0xf57900" }, { 3, "yellow", "0xedd400" },
    { 4, "green", "0x73d216" },  { 5, "gray", "0x555753" },   { 6, "blue", "0x3465a4" },
    { 7, "purple", "0x75507b" }, { 8, "black", "0x000000" },
};

static int init_new_store(struct bh_store *s, void *ctx, bh_error *err)
{
    (void)ctx;
    for (size_t i = 0; i < BH_ARRAY_SIZE(builtin_labels); i++)
        if (bh_store_put_label(s, builtin_labels[i].index, builtin_labels[i].name, builtin_labels[i].color, err) < 0)
            return -1;
    if (bh_store_put_qube(s, 0, "dom0", "AdminVM", "00000000-0000-0000-0000-000000000000", err) < 0 ||
        bh_store_put_kv(s, "props", 0, "label", "black", err) < 0)
        return -1;
    return 0;
}

int bh_app_load(struct bh_app *app, struct bh_store *store, bh_error *err)
{
    app->store = store;
    if (bh_store_is_new(store) && bh_store_txn(store, init_new_store, NULL, err) < 0)
        return bh_prefix(err, "initialising store");
    if (bh_store_load(store, app, err) < 0)
        return -1;
    if (!bh_app_find(app, "dom0"))
        return bh_fail(err, EINVAL, "store has no dom0");
    return 0;
}

void bh_app_free(struct bh_app *app)
{
    for (size_t i = 0; i < app->nqubes; i++)
        qube_free(app->qubes[i]);
    free(app->qubes);
    bh_kv_free(&app->globals);
    free(app->labels);
    free(app->root_dir);
    free(app->runtime_dir);
    memset(app, 0, sizeof *app);
}

/* ---- creation ---- */

static void new_uuid(char out[37])
{
    unsigned char b[16];
    if (getrandom(b, sizeof b, 0) != sizeof b)
        abort(); /* no randomness: refuse to invent identities */
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4],
             b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
}

int bh_app_claim_qids(struct bh_app *app, int claims_fd, bh_error *err)
{
    app->claims_fd = claims_fd;
    app->claims_on = true;
    for (size_t i = 0; i < app->nqubes; i++) {
        const struct bh_qube *q = app->qubes[i];
        if (q->qid != 0 && bh_qid_claim(claims_fd, q->qid, err) < 0)
            return bh_prefix(err, "qube %s", q->name);
    }
    return 0;
}

static void release_qid(struct bh_app *app, uint32_t qid)
{
    if (app->claims_on && qid != 0)
        bh_qid_release(app->claims_fd, qid);
}

/* Lowest unused from the base, as Qubes (qids, and so IPs, of removed qubes are
 * reused), skipping those another bulkheadd on this host holds, and those whose host
 * identities a live process still has: the qubes of a daemon that is stopped keep
 * running and hold no claim until it adopts them again (docs/architecture.md, "Host
 * identities"). One walk of /proc per pick, not per qid. Claimed on return.
 * 0: none left (err says why). */
static uint32_t new_qid(struct bh_app *app, bh_error *err)
{
    uint32_t first = app->qid_base ? app->qid_base : 1;
    struct bh_qid_set live; /* 8 KiB */
    bool scanned = false;
    uint32_t qid = first;
    for (; qid <= BH_QID_MAX; qid++) {
        if (bh_app_find_qid(app, qid))
            continue;
        if (!app->claims_on)
            break;
        if (!scanned) {
            if (bh_qids_live(&live, true) < 0) {
                bh_fail_errno(err, "reading which host UIDs are in use (/proc)");
                return 0;
            }
            scanned = true;
        }
        if (bh_qid_set_has(&live, qid))
            continue;
        bh_error ce = { 0 };
        if (bh_qid_claim(app->claims_fd, qid, &ce) == 0)
            break;
        if (ce.errnum != EAGAIN) {
            *err = ce;
            return 0;
        }
    }
    if (qid > BH_QID_MAX) {
        bh_fail(err, ENOSPC, "no unused qube ID left from %u to %u", (unsigned)first, (unsigned)BH_QID_MAX);
        return 0;
    }
    return qid;
}

struct create_txn {
    struct bh_qube *q;
};

static bool feature_name_ok(const char *k);
static bool printable(const char *v, size_t max);

static int create_store(struct bh_store *s, void *ctx, bh_error *err)
{
    struct bh_qube *q = ((struct create_txn *)ctx)->q;
    if (bh_store_put_qube(s, q->qid, q->name, bh_klass_name(q->klass), q->uuid, err) < 0)
        return -1;
    for (size_t i = 0; i < q->props.n; i++)
        if (bh_store_put_kv(s, "props", q->qid, q->props.v[i].key, q->props.v[i].value, err) < 0)
            return -1;
    for (size_t i = 0; i < q->tags.n; i++)
        if (bh_store_put_kv(s, "tags", q->qid, q->tags.v[i].key, "1", err) < 0)
            return -1;
    for (size_t i = 0; i < q->features.n; i++)
        if (bh_store_put_kv(s, "features", q->qid, q->features.v[i].key, q->features.v[i].value, err) < 0)
            return -1;
    return 0;
}

struct bh_qube *bh_qube_create(struct bh_app *app, const struct bh_create_args *a, struct bh_exc *e)
{
    const char *why;
    if (a->klass == BH_ADMINVM) {
        bh_exc(e, "QubesValueError", "Cannot create AdminVM");
        return NULL;
    }
    if (!bh_qube_name_valid(a->name, &why)) {
        bh_exc(e, "QubesValueError", "%s", why);
        return NULL;
    }
    if (bh_app_find(app, a->name)) {
        bh_exc(e, "QubesVMAlreadyExistsError", "VM %s already exists", a->name);
        return NULL;
    }
    if (!a->label || !bh_label_find(app, a->label)) {
        bh_exc(e, "QubesLabelNotFoundError", "Label does not exist: %s", a->label ? a->label : "");
        return NULL;
    }
    char uuid[37];
    new_uuid(uuid);
    /* its qid comes last, just before it joins the model: a claim is only taken for a
     * qube that gets that far (and given back on every failure after) */
    struct bh_qube *q = qube_new(0, a->name, a->klass, uuid);
    if (!q) {
        bh_exc(e, "QubesException", "out of memory");
        return NULL;
    }
    bool ok = bh_kv_set(&q->props, "label", a->label) == 0;
    /* Template: app qubes and disposables must have one, of the right kind. */
    if (a->klass == BH_APPVM || a->klass == BH_DISPVM) {
        _cleanup_free_ char *deft = a->template_name && *a->template_name
                                        ? strdup(a->template_name)
                                        : bh_global_prop(app, a->klass == BH_APPVM ? "default_template" : "default_dispvm");
        struct bh_qube *t = deft && *deft ? bh_app_find(app, deft) : NULL;
        if (!t) {
            bh_exc(e, "QubesVMNotFoundError", "No such domain: '%s'", deft && *deft ? deft : "");
            qube_free(q);
            return NULL;
        }
        if (a->klass == BH_APPVM && t->klass != BH_TEMPLATEVM) {
            bh_exc(e, "QubesValueError", "template for an AppVM must be a TemplateVM, not %s", bh_klass_name(t->klass));
            qube_free(q);
            return NULL;
        }
        if (a->klass == BH_DISPVM && !bh_qube_prop_bool(app, t, "template_for_dispvms")) {
            bh_exc(e, "QubesException", "Refusing to create DispVM out of this AppVM, because template_for_dispvms=False");
            qube_free(q);
            return NULL;
        }
        ok = ok && bh_kv_set(&q->props, "template", t->name) == 0;
    } else if (a->template_name && *a->template_name) {
        bh_exc(e, "QubesValueError", "%s cannot have a template", bh_klass_name(a->klass));
        qube_free(q);
        return NULL;
    }
    if (!ok) {
        bh_exc(e, "QubesException", "out of memory");
        qube_free(q);
        return NULL;
    }
    bh_error qe = { 0 };
    q->qid = new_qid(app, &qe);
    if (!q->qid) {
        bh_exc(e, "QubesException", "No unused qube ID left: %s", qe.msg);
        qube_free(q);
        return NULL;
    }
    /* Insert first so that property validation sees the qube (netvm loops etc.). */
    if (app_insert(app, q) < 0) {
        bh_exc(e, "QubesException", "out of memory");
        release_qid(app, q->qid);
        qube_free(q);
        return NULL;
    }
    for (size_t i = 0; i < BH_ARRAY_SIZE(a->props) && a->props[i][0]; i++) {
        const struct bh_prop_def *d = bh_prop_find(q, a->props[i][0]);
        _cleanup_free_ char *v = NULL;
        if (!d) {
            bh_exc(e, "QubesNoSuchPropertyError", "Invalid property '%s' of %s", a->props[i][0], q->name);
            goto fail;
        }
        if (bh_prop_validate(app, q, d, a->props[i][1], strlen(a->props[i][1]), &v, e) < 0)
            goto fail;
        if (bh_kv_set(&q->props, a->props[i][0], v) < 0) {
            bh_exc(e, "QubesException", "out of memory");
            goto fail;
        }
    }
    /* In the same transaction as the qube: one commit per create. */
    for (size_t i = 0; i < BH_ARRAY_SIZE(a->tags) && a->tags[i]; i++)
        if (bh_ident_valid(a->tags[i], 255) && bh_kv_set(&q->tags, a->tags[i], "1") < 0) {
            bh_exc(e, "QubesException", "out of memory");
            goto fail;
        }
    for (size_t i = 0; i < BH_ARRAY_SIZE(a->features) && a->features[i][0]; i++) {
        if (!feature_name_ok(a->features[i][0]) || !printable(a->features[i][1], 4096)) {
            bh_exc(e, "QubesValueError", "Invalid feature");
            goto fail;
        }
        if (bh_kv_set(&q->features, a->features[i][0], a->features[i][1]) < 0) {
            bh_exc(e, "QubesException", "out of memory");
            goto fail;
        }
    }
    bh_error err = { 0 };
    if (bh_hooks.volumes_create && bh_hooks.volumes_create(app, q, &err) < 0) {
        bh_exc(e, "QubesException", "creating volumes of %s: %s", q->name, err.msg);
        goto fail;
    }
    struct create_txn t = { q };
    if (bh_store_txn(app->store, create_store, &t, &err) < 0) {
        if (bh_hooks.volumes_remove)
            bh_hooks.volumes_remove(app, q, NULL);
        bh_exc(e, "QubesException", "%s", err.msg);
        goto fail;
    }
    const char *kv[] = { "vm", q->name, NULL };
    bh_events_emit(NULL, "domain-add", kv);
    for (size_t i = 0; i < q->tags.n; i++) {
        char ev[300];
        snprintf(ev, sizeof ev, "domain-tag-add:%s", q->tags.v[i].key);
        const char *tkv[] = { "tag", q->tags.v[i].key, NULL };
        bh_events_emit(q->name, ev, tkv);
    }
    /* the events a feature set right after the create gave, in the same order */
    for (size_t i = 0; i < q->features.n; i++) {
        char ev[300];
        const char *fkv[] = { "feature", q->features.v[i].key, "value", q->features.v[i].value, NULL };
        snprintf(ev, sizeof ev, "domain-feature-pre-set:%s", q->features.v[i].key);
        bh_events_emit(q->name, ev, fkv);
        snprintf(ev, sizeof ev, "domain-feature-set:%s", q->features.v[i].key);
        bh_events_emit(q->name, ev, fkv);
    }
    return q;
fail:
    app_unlink(app, q);
    release_qid(app, q->qid);
    qube_free(q);
    return NULL;
}

/* ---- usage and removal ---- */

static const char *const vm_ref_props[] = { "template", "netvm", "default_dispvm", "management_dispvm", "guivm", "audiovm" };

int bh_qube_usage(struct bh_app *app, const struct bh_qube *q, char *buf, size_t cap)
{
    int count = 0;
    size_t off = 0;
    buf[0] = '\0';
#define ADD_USE(...)                                                                                 \
    do {                                                                                             \
        count++;                                                                                     \
        if (off < cap) {                                                                             \
            int w = snprintf(buf + off, cap - off, "%s", count > 1 ? ", " : "");                     \
            off += w > 0 ? (size_t)w : 0;                                                            \
            if (off < cap) {                                                                         \
                w = snprintf(buf + off, cap - off, __VA_ARGS__);                                     \
                off += w > 0 ? (size_t)w : 0;                                                        \
            }                                                                                        \
        }                                                                                            \
    } while (0)
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *o = app->qubes[i];
        if (o == q)
            continue;
        for (size_t p = 0; p < BH_ARRAY_SIZE(vm_ref_props); p++) {
            const char *v = bh_kv_get(&o->props, vm_ref_props[p]);
            if (v && !strcmp(v, q->name))
                ADD_USE("%s.%s", o->name, vm_ref_props[p]);
        }
    }
    for (size_t i = 0; i < app->globals.n; i++)
        if (!strcmp(app->globals.v[i].value, q->name))
            ADD_USE("global %s", app->globals.v[i].key);
#undef ADD_USE
    if (off >= cap && cap > 4)
        strcpy(buf + cap - 4, "...");
    return count;
}

static int remove_store(struct bh_store *s, void *ctx, bh_error *err)
{
    return bh_store_del_qube(s, ((struct bh_qube *)ctx)->qid, err);
}

int bh_qube_remove(struct bh_app *app, struct bh_qube *q, struct bh_exc *e)
{
    if (q->klass == BH_ADMINVM)
        return bh_exc(e, "QubesVMInUseError", "'dom0' cannot be removed");
    if (bh_qube_is_running(q))
        return bh_exc(e, "QubesVMNotHaltedError", "Domain is powered on: %s", q->name);
    char uses[400];
    if (bh_qube_usage(app, q, uses, sizeof uses) > 0)
        return bh_exc(e, "QubesVMInUseError", "VM %s is still in use: %s", q->name, uses);
    bh_error err = { 0 };
    /* what its last run left behind goes with it, or the qube stays (leftovers of a
     * removed qube would never be cleaned up) */
    if (q->rt.engine && bh_hooks.engine_clean && bh_hooks.engine_clean(app, q, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    const char *pkv[] = { "vm", q->name, NULL };
    bh_events_emit(NULL, "domain-pre-delete", pkv);
    /* The store first: a crash after this leaves at most orphaned volume files, which
     * the next start can collect; the reverse order could leave a qube without volumes. */
    if (bh_store_txn(app->store, remove_store, q, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    if (bh_hooks.volumes_remove && bh_hooks.volumes_remove(app, q, &err) < 0)
        bh_warn("removing volumes of %s: %s", q->name, err.msg);
    char name[32];
    snprintf(name, sizeof name, "%s", q->name);
    app_unlink(app, q);
    release_qid(app, q->qid);
    qube_free(q);
    const char *kv[] = { "vm", name, NULL };
    bh_events_emit(NULL, "domain-delete", kv);
    return 0;
}

/* ---- tags, features, notes, firewall, labels ---- */

struct kv_txn {
    const char *table;
    uint32_t qid;
    const char *key, *value;
};
static int kv_store(struct bh_store *s, void *ctx, bh_error *err)
{
    struct kv_txn *t = ctx;
    return bh_store_put_kv(s, t->table, t->qid, t->key, t->value, err);
}
static int text_store(struct bh_store *s, void *ctx, bh_error *err)
{
    struct kv_txn *t = ctx;
    return bh_store_put_text(s, t->table, t->qid, t->value, err);
}

static bool tag_name_ok(const char *t)
{
    size_t n = strlen(t);
    if (n == 0 || n > 128)
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = t[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-'))
            return false;
    }
    return true;
}

int bh_qube_tag_set(struct bh_app *app, struct bh_qube *q, const char *tag, bool on, struct bh_exc *e)
{
    if (!tag_name_ok(tag))
        return bh_exc(e, "QubesValueError", "Invalid tag name");
    bool has = bh_kv_get(&q->tags, tag) != NULL;
    if (!on && !has)
        return bh_exc(e, "QubesTagNotFoundError", "Tag not set for domain %s: %s", q->name, tag);
    if (on == has)
        return 0;
    bh_error err = { 0 };
    struct kv_txn t = { "tags", q->qid, tag, on ? "1" : NULL };
    if (bh_store_txn(app->store, kv_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    if (on ? bh_kv_set(&q->tags, tag, "1") < 0 : !bh_kv_del(&q->tags, tag))
        return bh_exc(e, "QubesException", "out of memory");
    char ev[192];
    snprintf(ev, sizeof ev, "domain-tag-%s:%s", on ? "add" : "delete", tag);
    const char *kv[] = { "tag", tag, NULL };
    bh_events_emit(q->name, ev, kv);
    return 0;
}

static bool feature_name_ok(const char *k)
{
    return bh_ident_valid(k, 128);
}

static bool printable(const char *v, size_t max)
{
    size_t n = strlen(v);
    if (n > max)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)v[i] < 0x20 || (unsigned char)v[i] > 0x7e)
            return false;
    return true;
}

int bh_qube_feature_set(struct bh_app *app, struct bh_qube *q, const char *key, const char *value, struct bh_exc *e)
{
    if (!feature_name_ok(key))
        return bh_exc(e, "QubesValueError", "Invalid feature name");
    if (!printable(value, 4096))
        return bh_exc(e, "QubesValueError", "Invalid feature value");
    const char *old = bh_kv_get(&q->features, key);
    _cleanup_free_ char *oldc = old ? strdup(old) : NULL;
    const char *pkv[] = { "feature", key, "value", value, oldc ? "oldvalue" : NULL, oldc, NULL };
    char pev[192];
    snprintf(pev, sizeof pev, "domain-feature-pre-set:%s", key);
    bh_events_emit(q->name, pev, pkv);
    bh_error err = { 0 };
    struct kv_txn t = { "features", q->qid, key, value };
    if (bh_store_txn(app->store, kv_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    if (bh_kv_set(&q->features, key, value) < 0)
        return bh_exc(e, "QubesException", "out of memory");
    char ev[192];
    snprintf(ev, sizeof ev, "domain-feature-set:%s", key);
    const char *kv[] = { "feature", key, "value", value, oldc ? "oldvalue" : NULL, oldc, NULL };
    bh_events_emit(q->name, ev, kv);
    if (bh_hooks.feature_changed)
        bh_hooks.feature_changed(app, q, key);
    return 0;
}

int bh_qube_feature_del(struct bh_app *app, struct bh_qube *q, const char *key, struct bh_exc *e)
{
    if (!bh_kv_get(&q->features, key))
        return bh_exc(e, "QubesFeatureNotFoundError", "Feature not set for domain %s: %s", q->name, key);
    char pev[192];
    snprintf(pev, sizeof pev, "domain-feature-pre-delete:%s", key);
    const char *pkv[] = { "feature", key, NULL };
    bh_events_emit(q->name, pev, pkv);
    bh_error err = { 0 };
    struct kv_txn t = { "features", q->qid, key, NULL };
    if (bh_store_txn(app->store, kv_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    bh_kv_del(&q->features, key);
    char ev[192];
    snprintf(ev, sizeof ev, "domain-feature-delete:%s", key);
    const char *kv[] = { "feature", key, NULL };
    bh_events_emit(q->name, ev, kv);
    if (bh_hooks.feature_changed)
        bh_hooks.feature_changed(app, q, key);
    return 0;
}

int bh_qube_notes_set(struct bh_app *app, struct bh_qube *q, const char *text, struct bh_exc *e)
{
    /* Notes are free text for people; refuse control bytes other than newline and tab so
     * that a note shown in a terminal cannot carry escape sequences. */
    for (const unsigned char *p = (const unsigned char *)text; *p; p++)
        if ((*p < 0x20 && *p != '\n' && *p != '\t') || *p == 0x7f)
            return bh_exc(e, "QubesValueError", "Notes contain invalid characters");
    bh_error err = { 0 };
    struct kv_txn t = { "notes", q->qid, NULL, text };
    if (bh_store_txn(app->store, text_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    char *n = strdup(text);
    if (!n)
        return bh_exc(e, "QubesException", "out of memory");
    free(q->notes);
    q->notes = n;
    return 0;
}

int bh_qube_firewall_set(struct bh_app *app, struct bh_qube *q, const char *rules, struct bh_exc *e)
{
    bh_error err = { 0 };
    struct kv_txn t = { "firewall", q->qid, NULL, rules };
    if (bh_store_txn(app->store, text_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    char *n = strdup(rules);
    if (!n)
        return bh_exc(e, "QubesException", "out of memory");
    free(q->firewall);
    q->firewall = n;
    const char *kv[] = { NULL };
    bh_events_emit(q->name, "firewall-changed", kv);
    if (bh_hooks.firewall_changed)
        bh_hooks.firewall_changed(app, q);
    return 0;
}

struct label_txn {
    int index;
    const char *name, *color;
};
static int label_store(struct bh_store *s, void *ctx, bh_error *err)
{
    struct label_txn *t = ctx;
    return bh_store_put_label(s, t->index, t->name, t->color, err);
}

static bool color_ok(const char *c)
{
    if (strlen(c) != 8 || c[0] != '0' || (c[1] != 'x' && c[1] != 'X'))
        return false;
    for (int i = 2; i < 8; i++) {
        char h = c[i];
        if (!((h >= '0' && h <= '9') || (h >= 'a' && h <= 'f') || (h >= 'A' && h <= 'F')))
            return false;
    }
    return true;
}

int bh_label_create(struct bh_app *app, const char *name, const char *color, struct bh_exc *e)
{
    if (!bh_ident_valid(name, BH_LABEL_MAX - 1))
        return bh_exc(e, "QubesValueError", "Invalid label name");
    if (bh_label_find(app, name))
        return bh_exc(e, "QubesValueError", "label already exists");
    if (!color_ok(color))
        return bh_exc(e, "QubesValueError", "Invalid color value (expected 0xRRGGBB)");
    int idx = 0;
    for (size_t i = 0; i < app->nlabels; i++)
        if (app->labels[i].index > idx)
            idx = app->labels[i].index;
    idx++;
    char lc[16];
    snprintf(lc, sizeof lc, "0x%s", color + 2);
    for (char *p = lc; *p; p++)
        if (*p >= 'A' && *p <= 'F')
            *p = (char)(*p - 'A' + 'a');
    bh_error err = { 0 };
    struct label_txn t = { idx, name, lc };
    if (bh_store_txn(app->store, label_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    if (bh_app_add_label(app, idx, name, lc) < 0)
        return bh_exc(e, "QubesException", "out of memory");
    return 0;
}

int bh_label_remove(struct bh_app *app, const char *name, struct bh_exc *e)
{
    const struct bh_label *l = bh_label_find(app, name);
    if (!l)
        return bh_exc(e, "QubesLabelNotFoundError", "Label does not exist: %s", name);
    if (l->index <= 8)
        return bh_exc(e, "PermissionDenied", "Cannot remove a built-in label");
    for (size_t i = 0; i < app->nqubes; i++) {
        const char *ql = bh_kv_get(&app->qubes[i]->props, "label");
        if (ql && !strcmp(ql, name))
            return bh_exc(e, "QubesException", "label still in use");
    }
    bh_error err = { 0 };
    struct label_txn t = { l->index, NULL, NULL };
    if (bh_store_txn(app->store, label_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    size_t i = (size_t)(l - app->labels);
    memmove(&app->labels[i], &app->labels[i + 1], (app->nlabels - i - 1) * sizeof *app->labels);
    app->nlabels--;
    return 0;
}
