/* admin.pool.*: Bulkhead's storage pools as Qubes' Admin API shows them.
 *
 * `default` (<root>/pools/default) holds every qube's volumes. admin.pool.Add makes more
 * pools of Qubes' directory drivers (`file`, `file-reflink`: the same code here, a
 * directory of images that uses reflinks where the filesystem has them) at the given
 * dir_path; they are kept in the store (globals "pool.NAME" = "DRIVER DIR_PATH") and
 * opened on first use. Volumes are only ever made in `default` (docs/storage.md), so an
 * added pool holds none: admin.pool.Remove removes it (its directory stays, as Qubes
 * leaves it), and refuses `default`, which holds volumes, with Qubes'
 * QubesPoolInUseError. */
#include "api.h"
#include "cleanup.h"
#include "engine_glue.h"
#include "events.h"
#include "log.h"
#include "pool_config.h"
#include "props.h"
#include "store.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#define KEY_PREFIX "pool."
#define MAX_POOLS 32

/* Qubes' drivers that Bulkhead's directory pool stands for, with the parameters of
 * their __init__ in signature order (what admin.pool.ListDrivers lists; name excluded)
 * and which are required. */
static const struct driver {
    const char *name;
    const char *params[5];
    const char *required;
} drivers[] = {
    { "file", { "revisions_to_keep", "dir_path", "ephemeral_volatile", NULL }, "dir_path" },
    { "file-reflink", { "revisions_to_keep", "dir_path", "setup_check", "ephemeral_volatile", NULL }, "dir_path" },
};

static const struct driver *driver_find(const char *name)
{
    for (size_t i = 0; i < BH_ARRAY_SIZE(drivers); i++)
        if (!strcmp(drivers[i].name, name))
            return &drivers[i];
    return NULL;
}

/* Added pools open in this daemon, by name. */
static struct added {
    char name[64];
    struct bh_pool *pool; /* NULL: could not be opened (its directory is gone?) */
} added[MAX_POOLS];
static size_t nadded;

static struct added *added_find(const char *name)
{
    for (size_t i = 0; i < nadded; i++)
        if (!strcmp(added[i].name, name))
            return &added[i];
    return NULL;
}

/* The store's pools, opened once each (a daemon start finds them here). */
static void added_sync(struct bh_app *app)
{
    for (size_t i = 0; i < app->globals.n && nadded < MAX_POOLS; i++) {
        const char *k = app->globals.v[i].key, *v = app->globals.v[i].value;
        if (strncmp(k, KEY_PREFIX, strlen(KEY_PREFIX)) || added_find(k + strlen(KEY_PREFIX)))
            continue;
        struct added *a = &added[nadded++];
        snprintf(a->name, sizeof a->name, "%s", k + strlen(KEY_PREFIX));
        const char *sp = strchr(v, ' ');
        char driver[16] = "file";
        if (sp && (size_t)(sp - v) < sizeof driver)
            snprintf(driver, sizeof driver, "%.*s", (int)(sp - v), v);
        bool created;
        bh_error err = { 0 };
        a->pool = sp ? bh_pool_open_dir(sp + 1, a->name, &created, &err) : NULL;
        if (a->pool)
            bh_pool_set_driver(a->pool, driver);
        else
            bh_warn("pool %s: %s", a->name, err.msg);
    }
}

/* The pool the argument names (default or added), or an exception as Qubes'
 * enforce_arg (PermissionDenied "Argument not in 'pools'"). */
static struct bh_pool *pool_arg(struct bh_call *c)
{
    added_sync(c->app);
    struct bh_pool *p = NULL;
    if (!strcmp(c->req->arg, "default"))
        p = bh_glue_pool();
    else if (added_find(c->req->arg))
        p = added_find(c->req->arg)->pool;
    else {
        bh_exc(c->exc, "PermissionDenied", "Argument not in 'pools'");
        return NULL;
    }
    if (!p)
        bh_exc(c->exc, "QubesException", "Storage pool %s is not available", c->req->arg);
    return p;
}

static int pool_list(struct bh_call *c)
{
    added_sync(c->app);
    if (bh_buf_adds(c->out, "default\n") < 0)
        return bh_exc(c->exc, "QubesException", "out of memory");
    for (size_t i = 0; i < nadded; i++)
        if (bh_buf_printf(c->out, "%s\n", added[i].name) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int pool_drivers(struct bh_call *c)
{
    for (size_t i = 0; i < BH_ARRAY_SIZE(drivers); i++) {
        if (bh_buf_adds(c->out, drivers[i].name) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
        for (const char *const *p = drivers[i].params; *p; p++)
            if (bh_buf_printf(c->out, " %s", *p) < 0)
                return bh_exc(c->exc, "QubesException", "out of memory");
        if (bh_buf_adds(c->out, "\n") < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    }
    return 0;
}

static int pool_info(struct bh_call *c)
{
    struct bh_pool *p = pool_arg(c);
    if (!p)
        return -1;
    char buf[2048];
    int n = bh_pool_info_format(p, buf, sizeof buf);
    if (n < 0)
        return bh_exc(c->exc, "QubesException", "pool info too long");
    return bh_buf_add(c->out, buf, (size_t)n);
}

/* As qubesd: KEY=VALUE lines of pool.usage_details, sorted (data_size, data_usage). */
static int pool_usage(struct bh_call *c)
{
    struct bh_pool *p = pool_arg(c);
    if (!p)
        return -1;
    char buf[2048];
    if (bh_pool_info_format(p, buf, sizeof buf) < 0)
        return bh_exc(c->exc, "QubesException", "pool info too long");
    const char *size = strstr(buf, "\nsize="), *usage = strstr(buf, "\nusage=");
    unsigned long long sz = size ? strtoull(size + 6, NULL, 10) : 0, us = usage ? strtoull(usage + 7, NULL, 10) : 0;
    return bh_buf_printf(c->out, "data_size=%llu\ndata_usage=%llu\n", sz, us);
}

/* As qubesd: the vid of every volume in the pool, one a line (ours: qubes/NAME/VOLUME;
 * an app qube's root is its template's, listed once). Added pools hold none. */
static int pool_volumes(struct bh_call *c)
{
    struct bh_pool *p = pool_arg(c);
    if (!p)
        return -1;
    if (p != bh_glue_pool())
        return 0;
    for (size_t i = 0; i < c->app->nqubes; i++) {
        struct bh_qube *q = c->app->qubes[i];
        if (q->klass == BH_ADMINVM)
            continue;
        for (size_t v = 0; bh_volume_names[v]; v++) {
            struct bh_volume_info info;
            bh_error err = { 0 };
            struct bh_sq_buf sqb;
            bh_glue_sq(c->app, q, &sqb);
            int r = bh_volume_info(p, &sqb.sq, bh_volume_names[v], &info, &err);
            bh_glue_sq_free(&sqb);
            char own[300];
            snprintf(own, sizeof own, "qubes/%s/", q->name);
            if (r == 0 && !strncmp(info.vid, own, strlen(own)) && bh_buf_printf(c->out, "%s\n", info.vid) < 0)
                return bh_exc(c->exc, "QubesException", "out of memory");
        }
    }
    return 0;
}

static int pool_set_revisions(struct bh_call *c)
{
    struct bh_pool *p = pool_arg(c);
    long long v;
    if (!p || bh_api_payload_number(c, "revisions to keep", true, &v) < 0)
        return -1;
    if (v < -1)
        return bh_exc(c->exc, "ProtocolError", "Value can't be lower than -1"); /* enforce() */
    if (v > 1000000)
        return bh_exc(c->exc, "QubesValueError", "Invalid value for revisions_to_keep");
    bh_error err = { 0 };
    if (bh_pool_set_default_revisions(p, (int)v, &err) < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    return 0;
}

/* Volatile volumes are tmpfs (RAM, gone at the halt): always ephemeral. */
static int pool_set_ephemeral(struct bh_call *c)
{
    bool want;
    if (!pool_arg(c) || bh_api_payload_bool(c, &want) < 0)
        return -1;
    if (!want)
        return bh_exc(c->exc, "QubesException", "Bulkhead's volatile volumes are always ephemeral (tmpfs)");
    return 0;
}

/* ---- Add, Remove ---- */

struct kv_put {
    const char *key, *value;
};
static int kv_put(struct bh_store *s, void *ctx, bh_error *err)
{
    struct kv_put *t = ctx;
    return bh_store_put_kv(s, "globals", 0, t->key, t->value, err);
}


/* Is d inside `base`, equal to it, or does it hold it? */
static bool nested(const char *d, const char *base)
{
    size_t n = strlen(d), l = strlen(base), m = l < n ? l : n;
    return !strncmp(d, base, m) && (d[m] == '/' || !d[m] || m == 1) && (base[m] == '/' || !base[m] || m == 1);
}

/* The path d leads to: realpath of its longest existing prefix, then the rest as given
 * (the rest does not exist yet, so it holds no symlink). A component that exists but
 * does not resolve (a dangling symlink) is refused: mkdir would follow it. */
static int resolve_dir_path(const char *d, char *out, size_t n)
{
    char prefix[PATH_MAX], real[PATH_MAX];
    if (snprintf(prefix, sizeof prefix, "%s", d) >= (int)sizeof prefix)
        return -1;
    for (;;) {
        if (realpath(prefix, real)) {
            bool root = !strcmp(prefix, "/");
            const char *rest = root ? d : d + strlen(prefix);
            int r = snprintf(out, n, "%s%s", root ? "" : real, rest);
            return r < 0 || (size_t)r >= n ? -1 : 0;
        }
        struct stat st;
        if (errno != ENOENT || lstat(prefix, &st) == 0)
            return -1;
        char *slash = strrchr(prefix, '/');
        if (!slash)
            return -1;
        slash[slash == prefix] = '\0'; /* "/x" becomes "/" */
    }
}

/* Checks where a path lies: apart from the system and Bulkhead's own state and pools. */
static int placement_ok(struct bh_call *c, const char *shown, const char *d)
{
    static const char *const system[] = { "/proc", "/sys", "/dev", "/run", "/boot", "/etc", "/usr", "/bin", "/sbin",
                                          "/lib" };
    if (!strcmp(d, "/"))
        return bh_exc(c->exc, "QubesValueError", "dir_path must be an absolute, normalised path: %s", shown);
    for (size_t i = 0; i < BH_ARRAY_SIZE(system); i++) {
        size_t l = strlen(system[i]);
        if (!strncmp(d, system[i], l) && (d[l] == '/' || !d[l]))
            return bh_exc(c->exc, "QubesValueError", "dir_path %s is inside %s", shown, system[i]);
    }
    /* Nested in either direction with Bulkhead's state or another pool: one would hold
     * the other's files. Each is compared as written and as resolved. */
    const char *others[MAX_POOLS + 2];
    size_t no = 0;
    others[no++] = c->app->root_dir;
    for (size_t i = 0; i < nadded; i++)
        if (added[i].pool)
            others[no++] = bh_pool_path(added[i].pool);
    for (size_t i = 0; i < no; i++) {
        char real[PATH_MAX];
        if (nested(d, others[i]) || (realpath(others[i], real) && nested(d, real)))
            return bh_exc(c->exc, "QubesValueError", "dir_path %s overlaps %s", shown, others[i]);
    }
    return 0;
}

/* dir_path: absolute, normalised (Qubes normpaths it; here a path that needs it is
 * refused), printable, and apart from Bulkhead's own state and every other pool, both
 * as written and where its symlinks lead (resolved into `real`, which the pool uses). */
static int dir_path_ok(struct bh_call *c, const char *d, char *real, size_t rn)
{
    size_t n = strlen(d);
    if (d[0] != '/' || n < 2 || d[n - 1] == '/' || strstr(d, "//") || strstr(d, "/./") || strstr(d, "/../") ||
        (n >= 2 && !strcmp(d + n - 2, "/.")) || (n >= 3 && !strcmp(d + n - 3, "/..")))
        return bh_exc(c->exc, "QubesValueError", "dir_path must be an absolute, normalised path: %s", d);
    for (const char *p = d; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return bh_exc(c->exc, "QubesValueError", "dir_path contains control characters");
    if (placement_ok(c, d, d) < 0)
        return -1;
    if (resolve_dir_path(d, real, rn) < 0)
        return bh_exc(c->exc, "QubesValueError", "dir_path %s does not resolve to a directory path", d);
    return placement_ok(c, d, real);
}

static int pool_add(struct bh_call *c)
{
    added_sync(c->app);
    const struct driver *drv = driver_find(c->req->arg);
    if (!drv)
        return bh_exc(c->exc, "PermissionDenied", "Argument not in 'available drivers'");
    static struct bh_poolcfg cfg; /* 17 KiB: not on the stack */
    const char *type;
    char msg[256];
    if (bh_poolcfg_parse(c->req->payload, c->req->payload_len, &cfg, &type, msg, sizeof msg) < 0)
        return bh_exc(c->exc, type, "%s", msg);
    bool exists = !strcmp(cfg.name, "default") || added_find(cfg.name);
    for (size_t i = 0; i < cfg.n; i++) {
        bool known = false;
        for (const char *const *p = drv->params; *p; p++)
            known |= !strcmp(*p, cfg.o[i].key);
        if (!known)
            return bh_exc(c->exc, "ProtocolError", "Unexpected driver options found");
    }
    if (!bh_poolcfg_get(&cfg, drv->required))
        return bh_exc(c->exc, "QubesException", "missing required driver options: %s", drv->required);
    if (exists)
        return bh_exc(c->exc, "QubesPoolInUseError", "Storage pool is in use: '%s'", cfg.name);
    if (!cfg.name[0] || strlen(cfg.name) > 63 || cfg.name[0] == '.')
        return bh_exc(c->exc, "QubesException", "Invalid pool name: '%s'", cfg.name);
    if (nadded == MAX_POOLS)
        return bh_exc(c->exc, "QubesException", "Too many storage pools (at most %d)", MAX_POOLS);
    const char *dir = bh_poolcfg_get(&cfg, "dir_path"), *rev = bh_poolcfg_get(&cfg, "revisions_to_keep");
    const char *eph = bh_poolcfg_get(&cfg, "ephemeral_volatile"), *chk = bh_poolcfg_get(&cfg, "setup_check");
    bool b, check = true;
    long keep = 0;
    char *end = NULL;
    if (rev && (!*rev || (keep = strtol(rev, &end, 10), *end) || keep < -1 || keep > 1000000))
        return bh_exc(c->exc, "QubesValueError", "Invalid value for revisions_to_keep: %s", rev);
    if (eph && bh_qubes_bool(eph, &b) < 0)
        return bh_exc(c->exc, "QubesValueError", "Invalid literal for boolean property: '%s'", eph);
    if (eph && !b)
        return bh_exc(c->exc, "QubesException", "Bulkhead's volatile volumes are always ephemeral (tmpfs)");
    if (chk && bh_qubes_bool(chk, &check) < 0)
        return bh_exc(c->exc, "QubesValueError", "Invalid literal for boolean property: '%s'", chk);
    static char real[BH_POOLCFG_VAL + 1];
    if (dir_path_ok(c, dir, real, sizeof real) < 0)
        return -1;
    dir = real; /* where it leads: a symlink changed later does not move the pool */

    bool created;
    bh_error err = { 0 };
    struct bh_pool *p = bh_pool_open_dir(dir, cfg.name, &created, &err);
    if (!p)
        return bh_exc(c->exc, "StoragePoolException", "%s", err.msg);
    bh_pool_set_driver(p, drv->name);
    if (!strcmp(drv->name, "file-reflink") && check && !bh_pool_reflinks(p)) {
        bh_pool_close(p);
        if (created) { /* what setup made goes again (the qubes/ directory, then it) */
            char sub[1100];
            snprintf(sub, sizeof sub, "%s/qubes", dir);
            (void)rmdir(sub);
            (void)rmdir(dir);
        }
        return bh_exc(c->exc, "StoragePoolException",
                      "The filesystem for '%s' does not support reflinks. If you can live with delays on VM "
                      "startup/shutdown/etc. and wasted disk space, pass the 'setup_check=False' option.",
                      dir);
    }
    if (rev && bh_pool_set_default_revisions(p, (int)keep, &err) < 0) {
        bh_pool_close(p);
        return bh_exc(c->exc, "StoragePoolException", "%s", err.msg);
    }
    /* The directory exists before the store knows the pool: a crash in between leaves
     * an empty pool directory and no pool. */
    char key[80], val[BH_POOLCFG_VAL + 32];
    snprintf(key, sizeof key, KEY_PREFIX "%s", cfg.name);
    snprintf(val, sizeof val, "%s %s", drv->name, dir);
    struct kv_put t = { key, val };
    if (bh_store_txn(c->app->store, kv_put, &t, &err) < 0 || bh_kv_set(&c->app->globals, key, val) < 0) {
        bh_pool_close(p);
        return bh_exc(c->exc, "QubesException", "storing pool %s: %s", cfg.name, err.msg);
    }
    struct added *a = &added[nadded++];
    snprintf(a->name, sizeof a->name, "%s", cfg.name);
    a->pool = p;
    bh_info("pool %s added (%s at %s)", cfg.name, drv->name, dir);
    bh_events_emit(NULL, "pool-add", (const char *const[]){ "pool", cfg.name, NULL });
    return 0;
}

/* Does the pool directory hold any qube's volumes (an entry in its qubes/)? */
static bool holds_volumes(struct bh_pool *p)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/qubes", bh_pool_path(p));
    DIR *d = opendir(path);
    if (!d)
        return false;
    struct dirent *e;
    bool any = false;
    while (!any && (e = readdir(d)))
        any = strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    closedir(d);
    return any;
}

static int pool_remove(struct bh_call *c)
{
    added_sync(c->app);
    struct added *a = added_find(c->req->arg);
    if (strcmp(c->req->arg, "default") && !a)
        return bh_exc(c->exc, "PermissionDenied", "Argument not in 'pools'");
    /* Qubes: QubesPoolInUseError(pool) when any qube has a volume there (its message
     * shows the pool object's repr; here its name). */
    if (!a || (a->pool && holds_volumes(a->pool)))
        return bh_exc(c->exc, "QubesPoolInUseError", "Storage pool is in use: '%s'", c->req->arg);
    char key[80], name[64];
    snprintf(key, sizeof key, KEY_PREFIX "%s", a->name);
    snprintf(name, sizeof name, "%s", a->name);
    bh_events_emit(NULL, "pool-pre-delete", (const char *const[]){ "pool", name, NULL });
    struct kv_put t = { key, NULL };
    bh_error err = { 0 };
    if (bh_store_txn(c->app->store, kv_put, &t, &err) < 0)
        return bh_exc(c->exc, "QubesException", "removing pool %s: %s", name, err.msg);
    bh_kv_del(&c->app->globals, key);
    bh_pool_close(a->pool);
    *a = added[--nadded];
    bh_info("pool %s removed (its directory is left)", name);
    bh_events_emit(NULL, "pool-delete", (const char *const[]){ "pool", name, NULL });
    return 0;
}

bool bh_pool_is_added(struct bh_app *app, const char *name)
{
    added_sync(app);
    return added_find(name) != NULL;
}

#define NP BH_M_NOPAYLOAD
#define NA BH_M_NOARG
#define A BH_M_ARG
#define D BH_M_DOM0
const struct bh_method bh_api_pool[] = {
    { "admin.pool.List", pool_list, D | NA | NP },
    { "admin.pool.ListDrivers", pool_drivers, D | NA | NP },
    { "admin.pool.Info", pool_info, D | A | NP },
    { "admin.pool.UsageDetails", pool_usage, D | A | NP },
    { "admin.pool.Add", pool_add, D | A },
    { "admin.pool.Remove", pool_remove, D | A | NP },
    { "admin.pool.volume.List", pool_volumes, D | A | NP },
    { "admin.pool.Set.revisions_to_keep", pool_set_revisions, D | A },
    { "admin.pool.Set.ephemeral_volatile", pool_set_ephemeral, D | A },
    { NULL, NULL, 0 },
};
