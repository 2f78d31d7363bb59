#include "engine_glue.h"
#include "cleanup.h"
#include "hooks.h"
#include "host_ids.h"
#include "io.h"
#include "log.h"
#include "props.h"
#include "store.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct bh_pool *pool;

struct bh_pool *bh_glue_pool(void) { return pool; }

void bh_glue_sq(struct bh_app *app, const struct bh_qube *q, struct bh_sq_buf *b)
{
    memset(b, 0, sizeof *b);
    b->sq.name = q->name;
    b->sq.klass = bh_klass_name(q->klass);
    if (q->klass == BH_APPVM) {
        b->tmpl = bh_qube_prop(app, q, "template");
    } else if (q->klass == BH_DISPVM) {
        /* A disposable's root is its disposable template's template; its private starts
         * as a copy of the disposable template's private. */
        b->disp_tmpl = bh_qube_prop(app, q, "template");
        struct bh_qube *dt = b->disp_tmpl && *b->disp_tmpl ? bh_app_find(app, b->disp_tmpl) : NULL;
        if (dt && dt->klass == BH_APPVM)
            b->tmpl = bh_qube_prop(app, dt, "template");
    }
    b->sq.template_name = b->tmpl && *b->tmpl ? b->tmpl : NULL;
    b->sq.dispvm_template = b->disp_tmpl && *b->disp_tmpl ? b->disp_tmpl : NULL;
    b->sq.revisions_to_keep = bh_glue_revisions(app, q, "private");
    /* The ns engine layers a disposable's writes over its template's private, read-only;
     * other engines get a copy of their own. */
    const struct bh_driver *drv = q->klass == BH_DISPVM ? bh_glue_driver(app, q) : NULL;
    b->sq.private_layer = drv && !strcmp(drv->name, "ns");
}

void bh_glue_sq_free(struct bh_sq_buf *b)
{
    free(b->tmpl);
    free(b->disp_tmpl);
    memset(b, 0, sizeof *b);
}

/* Each qube gets its own 65536 host UIDs above 2^20 (host_ids.h: qids up to
 * BH_QID_MAX, so ranges never overlap or wrap). */
#define UID_FIRST BH_QUBE_UID_FIRST
#define UID_RANGE BH_QUBE_UID_RANGE

void bh_glue_spec(struct bh_app *app, const struct bh_qube *q, struct bh_spec_buf *b)
{
    memset(b, 0, sizeof *b);
    snprintf(b->runtime, sizeof b->runtime, "%s/qubes/%s", app->runtime_dir, q->name);
    snprintf(b->state, sizeof b->state, "%s/qubes/%s", app->root_dir, q->name);
    struct bh_qube_spec *s = &b->spec;
    s->name = q->name;
    s->qid = q->qid;
    s->klass = bh_klass_name(q->klass);
    s->runtime_dir = b->runtime;
    s->state_dir = b->state;
    s->memory_mib = (uint64_t)bh_qube_prop_int(app, q, "memory");
    s->maxmem_mib = (uint64_t)bh_qube_prop_int(app, q, "maxmem");
    if (s->maxmem_mib < s->memory_mib)
        s->maxmem_mib = s->memory_mib;
    s->vcpus = (uint32_t)bh_qube_prop_int(app, q, "vcpus");
    s->uid_base = UID_FIRST + q->qid * UID_RANGE;
    s->uid_count = UID_RANGE;
    b->user = bh_qube_prop(app, q, "default_user");
    s->default_user = b->user;
    s->debug = bh_qube_prop_bool(app, q, "debug");
    /* Only an engine that boots a kernel reads these; the default kernel's lookup
     * (the vm-kernel directory near our executable) is not free, and a spec is built
     * several times per start and stop. The engine is the one the qube runs in (or
     * was left in), not what virt_mode says now. */
    const struct bh_driver *drv = bh_glue_driver(app, q);
    if (drv && strcmp(drv->name, "ns")) {
        b->kernel = bh_qube_prop(app, q, "kernel");
        s->kernel = b->kernel;
        b->kernelopts = bh_qube_prop(app, q, "kernelopts");
        s->kernelopts = b->kernelopts && *b->kernelopts ? b->kernelopts : NULL;
    }
    long long qt = bh_qube_prop_int(app, q, "qrexec_timeout");
    s->boot_timeout_s = qt > 0 && qt < 100000 ? (uint32_t)qt : 0;
    s->provides_network = bh_qube_prop_bool(app, q, "provides_network");
    s->all_qubes_mib = bh_glue_memory_budget_mib();
    bh_net_glue_spec(app, q, &s->net, &b->net);
}

uint64_t bh_glue_memory_budget_mib(void)
{
    const char *e = getenv("BULKHEAD_QUBES_MEMORY_MIB");
    char *end;
    if (e && *e) {
        unsigned long long v = strtoull(e, &end, 10);
        if (!*end && v > 0)
            return v;
    }
    /* MemTotal is fixed while we run (no memory hot-plug on the hosts we support). */
    static uint64_t cached;
    if (cached)
        return cached;
    FILE *f = fopen("/proc/meminfo", "re");
    unsigned long long kib = 0;
    char line[128];
    while (f && fgets(line, sizeof line, f))
        if (sscanf(line, "MemTotal: %llu kB", &kib) == 1)
            break;
    if (f)
        fclose(f);
    uint64_t total = kib >> 10, reserve = total / 10 > BH_HOST_RESERVE_MIB ? total / 10 : BH_HOST_RESERVE_MIB;
    cached = total > reserve ? total - reserve : total / 2;
    return cached;
}

void bh_glue_spec_free(struct bh_spec_buf *b)
{
    free(b->user);
    b->user = NULL;
    free(b->kernelopts);
    b->kernelopts = NULL;
    free(b->kernel);
    b->kernel = NULL;
}

/* <runtime>/engines/<name>: the engine a qube was started in, for the next bulkheadd
 * should this one stop while the qube runs. */
static void pin_path(struct bh_app *app, const struct bh_qube *q, char *out, size_t n)
{
    snprintf(out, n, "%s/engines/%s", app->runtime_dir, q->name);
}

void bh_glue_engine_pin(struct bh_app *app, struct bh_qube *q, const struct bh_driver *drv)
{
    char path[4096], dir[4096];
    q->rt.engine = drv;
    snprintf(dir, sizeof dir, "%s/engines", app->runtime_dir);
    pin_path(app, q, path, sizeof path);
    if ((mkdir(dir, 0700) < 0 && errno != EEXIST) ||
        bh_write_runtime_file(path, drv->name, strlen(drv->name), 0600) < 0)
        bh_warn("%s: recording its engine in %s: %s", q->name, path, strerror(errno));
}

void bh_glue_engine_unpin(struct bh_app *app, struct bh_qube *q)
{
    char path[4096];
    if (q->rt.engine_dirty)
        return; /* its engine's cleanup failed: kept (bh_glue_engine_clean) */
    q->rt.engine = NULL;
    pin_path(app, q, path, sizeof path);
    (void)unlink(path);
}

int bh_glue_engine_clean(struct bh_app *app, struct bh_qube *q, bh_error *err)
{
    if (!q->rt.engine) {
        q->rt.engine_dirty = false;
        return 0;
    }
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    int r = q->rt.engine->kill(&sb.spec, err);
    bh_glue_spec_free(&sb);
    if (r < 0)
        return bh_prefix(err, "what %s's last run left in engine '%s' cannot be cleaned up", q->name,
                         q->rt.engine->name);
    q->rt.engine_dirty = false;
    bh_glue_engine_unpin(app, q);
    return 0;
}

void bh_glue_engine_sweep_records(struct bh_app *app)
{
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/engines", app->runtime_dir);
    _cleanup_closedir_ DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        struct bh_qube *q = bh_app_find(app, e->d_name);
        if (q && q->klass != BH_ADMINVM)
            continue;
        /* a qube removed while no record could go (a bulkheadd stopped in between), or a
         * write's temporary file: a qube created later under that name would be taken for
         * one started in that engine at the next bulkheadd's start */
        if (unlinkat(dirfd(d), e->d_name, 0) < 0)
            bh_warn("%s/%s: removing the engine record of no qube: %s", dir, e->d_name, strerror(errno));
        else
            bh_info("%s/%s: an engine record of no qube: removed", dir, e->d_name);
    }
}

void bh_glue_engine_load(struct bh_app *app, struct bh_qube *q)
{
    char path[4096];
    pin_path(app, q, path, sizeof path);
    _cleanup_free_ char *pin = bh_read_file(path, 16, NULL);
    q->rt.engine = pin ? bh_driver_get(pin) : NULL;
    if (q->rt.engine)
        return;
    /* none (or not ours): left running by a bulkheadd that recorded none (an older
     * version)? Every engine keeps a running qube's files in <runtime>/qubes/NAME: with
     * no such directory there is nothing to ask. Else the engine that finds it alive
     * is its engine; one that finds only a crashed qube's leftovers, failing that. */
    char rt[4200];
    struct stat st;
    snprintf(rt, sizeof rt, "%s/qubes/%s", app->runtime_dir, q->name); /* as bh_glue_spec */
    if (stat(rt, &st) < 0)
        return;
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    static const char *const engines[] = { "ns", "vm" };
    const struct bh_driver *found = NULL;
    bool alive = false;
    for (size_t i = 0; i < sizeof engines / sizeof *engines && !alive; i++) {
        const struct bh_driver *drv = bh_driver_get(engines[i]);
        enum bh_power_state ps = drv && drv->state ? drv->state(&sb.spec, NULL) : BH_STATE_NA;
        if (ps == BH_STATE_HALTED || ps == BH_STATE_NA)
            continue;
        alive = ps != BH_STATE_CRASHED;
        if (alive || !found)
            found = drv;
    }
    bh_glue_spec_free(&sb);
    if (found)
        bh_glue_engine_pin(app, q, found);
}

/* The engine of a qube: the one it was started in until it has halted and been cleaned
 * up (recorded at start, forgotten by the halt's cleanup; a restarted bulkheadd reads
 * the record), else its virt_mode's. virt_mode's default follows the host
 * (default_virt_mode: KVM, an installed kernel, the environment) and provides_network,
 * so it can change under a running qube: asking the other engine would find it halted
 * and clean up nothing, and a restarted bulkheadd would refuse to start (its IDs in
 * use) or clean up a qube that runs. */
const struct bh_driver *bh_glue_driver(struct bh_app *app, const struct bh_qube *q)
{
    if (q->rt.engine)
        return q->rt.engine;
    _cleanup_free_ char *vm = bh_qube_prop(app, q, "virt_mode");
    return bh_driver_get(vm ? vm : "ns");
}

int bh_glue_revisions(struct bh_app *app, const struct bh_qube *q, const char *vol)
{
    (void)app;
    char key[64];
    snprintf(key, sizeof key, "volume.%s.revisions_to_keep", vol);
    const char *v = bh_kv_get(&q->props, key);
    if (v)
        return atoi(v);
    /* Revisions cost a full copy where the pool cannot reflink: the pool decides. */
    int d = pool && (!strcmp(vol, "private") || !strcmp(vol, "root")) ? bh_pool_default_revisions(pool) : 0;
    return d < 0 ? 0 : d; /* a pool's -1 (Qubes: no snapshots) keeps none here */
}

struct rev_txn {
    uint32_t qid;
    const char *key, *value;
};
static int rev_store(struct bh_store *s, void *ctx, bh_error *err)
{
    struct rev_txn *t = ctx;
    return bh_store_put_kv(s, "props", t->qid, t->key, t->value, err);
}

int bh_glue_set_revisions(struct bh_app *app, struct bh_qube *q, const char *vol, int keep, bh_error *err)
{
    char key[64], val[16];
    snprintf(key, sizeof key, "volume.%s.revisions_to_keep", vol);
    snprintf(val, sizeof val, "%d", keep);
    struct rev_txn t = { q->qid, key, val };
    if (bh_store_txn(app->store, rev_store, &t, err) < 0)
        return -1;
    return bh_kv_set(&q->props, key, val);
}

static bool qube_known(const char *name, void *ctx)
{
    return bh_app_find(ctx, name) != NULL;
}

/* A running template's or standalone's root is being written: a copy of it would need a
 * freeze of the filesystem (FIFREEZE), which waits, uninterruptibly and in bulkheadd's
 * thread, for every writer in it to leave the write path, and a writer in the qube can be
 * made to never leave (a page fault on its own FUSE mount while it holds the write lock).
 * So, as Qubes' file driver refuses to copy a dirty volume, the copy waits for the halt. */
int bh_glue_refuse_dirty_root(const struct bh_qube *src, bh_error *err)
{
    if (!src || (src->klass != BH_TEMPLATEVM && src->klass != BH_STANDALONEVM) || !bh_qube_is_running(src))
        return 0;
    return bh_fail(err, EBUSY, "Cannot import data from dirty volume qubes/%s/root - start and stop a qube to cleanup",
                   src->name);
}

static int hook_create(struct bh_app *app, struct bh_qube *q, bh_error *err)
{
    if (q->klass == BH_STANDALONEVM || q->klass == BH_TEMPLATEVM) {
        _cleanup_free_ char *t = bh_qube_prop(app, q, "template");
        if (t && *t && bh_glue_refuse_dirty_root(bh_app_find(app, t), err) < 0)
            return -1;
    }
    struct bh_sq_buf b;
    bh_glue_sq(app, q, &b);
    int r = bh_volumes_create(pool, &b.sq, err);
    bh_glue_sq_free(&b);
    return r;
}

static int hook_remove(struct bh_app *app, struct bh_qube *q, bh_error *err)
{
    struct bh_sq_buf b;
    bh_glue_sq(app, q, &b);
    int r = bh_volumes_remove(pool, &b.sq, err);
    bh_glue_sq_free(&b);
    return r;
}

int bh_glue_init(struct bh_app *app, bh_error *err)
{
    pool = bh_pool_open(app->root_dir, "default", err);
    if (!pool)
        return -1;
    bool created;
    if (bh_template_ensure_host(pool, &created, err) < 0)
        return bh_prefix(err, "building the host template");
    /* A crash between making a qube's volumes and its store commit (create, clone), or
     * between the commit and the delete (remove), leaves volumes the store does not know;
     * a later create of that name would fail with "already exist" forever. */
    bh_error oe = { 0 };
    if (bh_volumes_collect_orphans(pool, qube_known, app, &oe) < 0)
        bh_warn("collecting orphaned volumes: %s", oe.msg);
    bh_hooks.volumes_create = hook_create;
    bh_hooks.volumes_remove = hook_remove;
    return 0;
}

int bh_glue_runtime_check(struct bh_app *app, bh_error *err)
{
    char p[4096];
    snprintf(p, sizeof p, "%s", app->runtime_dir);
    for (;;) {
        struct stat st;
        if (stat(p, &st) < 0)
            return bh_fail_errno(err, "stat %s", p);
        if (!(st.st_mode & S_IXOTH))
            return bh_fail(err, EACCES,
                           "%s is not searchable by others (mode %o): qubes cannot start under it; chmod o+x it or use another --runtime-dir",
                           p, st.st_mode & 07777);
        char *slash = strrchr(p, '/');
        if (!slash || slash == p)
            return 0;
        *slash = '\0';
    }
}
