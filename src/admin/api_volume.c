/* admin.vm.volume.*, over the storage pool (src/storage); admin.pool.* is api_pool.c. */
#include "api.h"
#include "cleanup.h"
#include "engine_glue.h"
#include "events.h"
#include "props.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

static struct bh_pool *need_pool(struct bh_call *c)
{
    struct bh_pool *p = bh_glue_pool();
    if (!p)
        bh_exc(c->exc, "QubesException", "Storage is not available");
    return p;
}

static bool vol_known(const char *v)
{
    for (size_t i = 0; bh_volume_names[i]; i++)
        if (!strcmp(bh_volume_names[i], v))
            return true;
    return false;
}

static int need_vol(struct bh_call *c)
{
    if (c->dest->klass == BH_ADMINVM)
        return bh_exc(c->exc, "QubesException", "dom0 has no volumes");
    if (!vol_known(c->req->arg))
        return bh_exc(c->exc, "PermissionDenied", "No such volume: %s", c->req->arg);
    return 0;
}

/* Every qube has a `kernel` volume (read-only, pool linux-kernel; storage keeps it empty:
 * an ns qube runs the host's kernel). For a qube of the vm engine it is, as in Qubes,
 * the kernel it boots: vid = the `kernel` property, size = its files. Returns that
 * name (malloc'd), or NULL: the storage's empty volume stands. */
static char *kernel_volume(struct bh_call *c)
{
    const struct bh_driver *drv = bh_glue_driver(c->app, c->dest);
    if (c->dest->klass == BH_ADMINVM || !drv || strcmp(drv->name, "vm"))
        return NULL;
    char *k = bh_qube_prop(c->app, c->dest, "kernel");
    if (k && !*k) {
        free(k);
        k = NULL;
    }
    return k;
}

static int v_list(struct bh_call *c)
{
    if (c->dest->klass == BH_ADMINVM)
        return 0;
    for (size_t i = 0; bh_volume_names[i]; i++)
        if (bh_buf_printf(c->out, "%s\n", bh_volume_names[i]) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int kernel_info(struct bh_call *c, const char *k)
{
    uint64_t size = bh_kernel_size(k); /* 0: not installed (the start says so) */
    struct bh_volume_info info = { .pool = "linux-kernel", .size = size, .usage = size };
    snprintf(info.vid, sizeof info.vid, "%s", k);
    char buf[2048];
    int n = bh_volume_info_format(&info, buf, sizeof buf);
    if (n < 0)
        return bh_exc(c->exc, "QubesException", "volume info too long");
    return bh_buf_add(c->out, buf, (size_t)n);
}

#define WITH_SQ(c, body)                                  \
    do {                                                  \
        struct bh_sq_buf sqb;                             \
        bh_glue_sq((c)->app, (c)->dest, &sqb);            \
        body;                                             \
        bh_glue_sq_free(&sqb);                            \
    } while (0)

/* The argument volume's Info from the pool. */
static int vol_info(struct bh_call *c, struct bh_pool *p, struct bh_volume_info *info)
{
    bh_error err = { 0 };
    int r;
    WITH_SQ(c, r = bh_volume_info(p, &sqb.sq, c->req->arg, info, &err));
    return r < 0 ? bh_exc(c->exc, "QubesException", "%s", err.msg) : 0;
}

static int v_info(struct bh_call *c)
{
    _cleanup_free_ char *k = !strcmp(c->req->arg, "kernel") ? kernel_volume(c) : NULL;
    if (k)
        return kernel_info(c, k);
    struct bh_pool *p = need_pool(c);
    struct bh_volume_info info;
    if (!p || need_vol(c) < 0 || vol_info(c, p, &info) < 0)
        return -1;
    info.revisions_to_keep = bh_glue_revisions(c->app, c->dest, c->req->arg);
    char buf[2048];
    int n = bh_volume_info_format(&info, buf, sizeof buf);
    if (n < 0)
        return bh_exc(c->exc, "QubesException", "volume info too long");
    return bh_buf_add(c->out, buf, (size_t)n);
}

static int v_snapshots(struct bh_call *c)
{
    struct bh_pool *p = need_pool(c);
    if (!p || need_vol(c) < 0)
        return -1;
    _cleanup_free_ char *out = NULL;
    bh_error err = { 0 };
    int r;
    WITH_SQ(c, r = bh_volume_list_snapshots(p, &sqb.sq, c->req->arg, &out, &err));
    if (r < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    return bh_buf_adds(c->out, out ? out : "");
}

static int need_halted(struct bh_call *c)
{
    if (bh_qube_is_running(c->dest))
        return bh_exc(c->exc, "QubesVMNotHaltedError", "Domain is powered on: %s", c->dest->name);
    return 0;
}

/* Qubes' qubes.property.bool spellings. */
int bh_api_payload_bool(struct bh_call *c, bool *out)
{
    char v[8] = "";
    if (c->req->payload_len >= sizeof v || memchr(c->req->payload, '\0', c->req->payload_len))
        return bh_exc(c->exc, "ProtocolError", "Payload is not boolean ASCII");
    memcpy(v, c->req->payload, c->req->payload_len);
    if (bh_qubes_bool(v, out) < 0)
        return bh_exc(c->exc, "ProtocolError", "Payload is not boolean ASCII");
    return 0;
}

/* Set.rw and Set.ephemeral: Bulkhead's volumes have fixed kinds (docs/storage.md), so a
 * value is accepted when it is what the volume is, and refused otherwise. */
static int v_set_flag(struct bh_call *c, bool rw)
{
    struct bh_pool *p = need_pool(c);
    bool want = false;
    if (!p || need_vol(c) < 0 || bh_api_payload_bool(c, &want) < 0)
        return -1;
    struct bh_volume_info info;
    if ((rw && need_halted(c) < 0) || vol_info(c, p, &info) < 0)
        return -1;
    if ((rw ? info.rw : info.ephemeral) == want)
        return 0;
    return bh_exc(c->exc, "QubesException", "Bulkhead cannot make the %s volume %s%s", c->req->arg,
                  want ? "" : "not ", rw ? "writable" : "ephemeral");
}

static int v_set_rw(struct bh_call *c) { return v_set_flag(c, true); }
static int v_set_ephemeral(struct bh_call *c) { return v_set_flag(c, false); }

static int v_revert(struct bh_call *c)
{
    struct bh_pool *p = need_pool(c);
    _cleanup_free_ char *rev = NULL;
    if (!p || need_vol(c) < 0 || need_halted(c) < 0 || bh_api_need_payload_text(c, &rev) < 0)
        return -1;
    bh_error err = { 0 };
    int r;
    WITH_SQ(c, r = bh_volume_revert(p, &sqb.sq, c->req->arg, *rev ? rev : NULL, &err));
    return r < 0 ? bh_exc(c->exc, "QubesException", "%s", err.msg) : 0;
}

static int v_resize(struct bh_call *c)
{
    struct bh_pool *p = need_pool(c);
    _cleanup_free_ char *txt = NULL;
    if (!p || need_vol(c) < 0 || bh_api_need_payload_text(c, &txt) < 0)
        return -1;
    uint64_t size;
    if (bh_size_parse(txt, &size) < 0)
        return bh_exc(c->exc, "QubesValueError", "Invalid size: %s", txt);
    bh_error err = { 0 };
    int r;
    WITH_SQ(c, r = bh_volume_resize(p, &sqb.sq, c->req->arg, size, &err));
    return r < 0 ? bh_exc(c->exc, "QubesException", "%s", err.msg) : 0;
}

static int v_set_revisions(struct bh_call *c)
{
    _cleanup_free_ char *txt = NULL;
    if (need_vol(c) < 0 || bh_api_need_payload_text(c, &txt) < 0)
        return -1;
    char *end;
    long n = strtol(txt, &end, 10);
    if (!*txt || *end || n < 0 || n > 100)
        return bh_exc(c->exc, "QubesValueError", "Invalid value for revisions_to_keep");
    bh_error err = { 0 };
    if (bh_glue_set_revisions(c->app, c->dest, c->req->arg, (int)n, &err) < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    return 0;
}

/* Cloning, as qvm-clone drives it: CloneFrom on the source returns a token, CloneTo on
 * the new qube takes it. Our pool copies a qube's persistent volumes as one set, so the
 * first CloneTo of a pair copies them all and the later ones find the work done. */
struct clone_token {
    char token[33];
    uint32_t src_qid, dst_qid;
    bool done;
};
static struct clone_token tokens[16];
static size_t next_token;

static int v_clone_from(struct bh_call *c)
{
    if (need_vol(c) < 0)
        return -1;
    unsigned char rnd[16];
    if (getrandom(rnd, sizeof rnd, 0) != sizeof rnd)
        return bh_exc(c->exc, "QubesException", "no randomness");
    struct clone_token *t = &tokens[next_token++ % BH_ARRAY_SIZE(tokens)];
    memset(t, 0, sizeof *t);
    for (int i = 0; i < 16; i++)
        snprintf(t->token + 2 * i, 3, "%02x", rnd[i]);
    t->src_qid = c->dest->qid;
    return bh_buf_adds(c->out, t->token);
}

static int v_clone_to(struct bh_call *c)
{
    struct bh_pool *p = need_pool(c);
    if (!p || need_vol(c) < 0 || need_halted(c) < 0)
        return -1;
    struct clone_token *t = NULL;
    for (size_t i = 0; i < BH_ARRAY_SIZE(tokens); i++)
        if (tokens[i].token[0] && c->req->payload_len == 32 && !memcmp(tokens[i].token, c->req->payload, 32))
            t = &tokens[i];
    if (!t)
        return bh_exc(c->exc, "PermissionDenied", "Invalid clone token");
    struct bh_qube *src = bh_app_find_qid(c->app, t->src_qid);
    if (!src)
        return bh_exc(c->exc, "QubesVMNotFoundError", "Clone source is gone");
    bh_error derr = { 0 };
    if (bh_glue_refuse_dirty_root(src, &derr) < 0)
        return bh_exc(c->exc, "StoragePoolException", "%s", derr.msg);
    for (size_t i = 0; i < BH_ARRAY_SIZE(tokens); i++)
        if (tokens[i].src_qid == t->src_qid && tokens[i].dst_qid == c->dest->qid && tokens[i].done) {
            t->dst_qid = c->dest->qid;
            t->done = true;
            return 0;
        }
    struct bh_sq_buf sb, db;
    bh_glue_sq(c->app, src, &sb);
    bh_glue_sq(c->app, c->dest, &db);
    bh_error err = { 0 };
    /* Replace the fresh volumes of the new qube with copies of the source's. */
    int r = bh_volumes_remove(p, &db.sq, &err);
    if (r == 0)
        r = bh_volumes_clone(p, &sb.sq, &db.sq, &err);
    bh_glue_sq_free(&sb);
    bh_glue_sq_free(&db);
    if (r < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    t->dst_qid = c->dest->qid;
    t->done = true;
    return 0;
}

/* ---- import and clear (Qubes' two-step import: qubes/api/internal.py) ---- */

static void emit_import(struct bh_call *c, bool begin, uint64_t size, bool success)
{
    char sz[32];
    snprintf(sz, sizeof sz, "%" PRIu64, size);
    if (begin)
        bh_events_emit(c->dest->name, "domain-volume-import-begin",
                       (const char *const[]){ "volume", c->req->arg, "size", sz, NULL });
    else
        bh_events_emit(c->dest->name, "domain-volume-import-end",
                       (const char *const[]){ "volume", c->req->arg, "success", success ? "True" : "False", NULL });
}

/* Qubes' validate_number: decimal ASCII digits only. */
int bh_api_payload_number(struct bh_call *c, const char *name, bool allow_negative, long long *out)
{
    const char *s = c->req->payload;
    size_t n = c->req->payload_len, i = 0;
    if (allow_negative && n && s[0] == '-')
        i = 1;
    if (n == i || n - i > 19)
        return bh_exc(c->exc, "ProtocolError", "Invalid %s", name);
    long long v = 0;
    for (; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return bh_exc(c->exc, "ProtocolError", "Invalid %s", name);
        if (v > (LLONG_MAX - (s[i] - '0')) / 10) /* 19 digits can pass LLONG_MAX */
            return bh_exc(c->exc, "ProtocolError", "Invalid %s", name);
        v = v * 10 + (s[i] - '0');
    }
    *out = s[0] == '-' ? -v : v;
    return 0;
}

/* Which import a Begin or End belongs to: the importing client's PID (qubesd-import and
 * qvm-volume make both calls from one process), so imports into one volume at once each
 * get their own temporary file. */
static long import_token(struct bh_call *c)
{
    return (long)bh_server_peer_pid(c->conn);
}

static int import_begin(struct bh_call *c)
{
    struct bh_pool *p = need_pool(c);
    if (!p)
        return -1;
    if (c->dest->klass == BH_ADMINVM || !vol_known(c->req->arg))
        return bh_exc(c->exc, "ProtocolError", "Argument not in volume names of the destination");
    if (need_halted(c) < 0)
        return -1;
    long long want = 0;
    if (c->req->payload_len && bh_api_payload_number(c, "size of new data", false, &want) < 0)
        return -1;
    if (c->req->payload_len && want == 0)
        return bh_exc(c->exc, "QubesValueError", "size of new data must be positive");
    char path[4096];
    uint64_t size = 0;
    bh_error err = { 0 };
    int r;
    long importer = import_token(c);
    WITH_SQ(c, r = bh_volume_import_begin(p, &sqb.sq, c->req->arg, importer, (uint64_t)want, path, sizeof path, &size, &err));
    if (r < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    emit_import(c, true, size, false);
    /* The importer may be a qrexec call's dom0 program, which is not root and cannot
     * reach the pool (under the 0700 state dir): it gets the file open for writing,
     * nothing else; root's tools may use the path. */
    int wfd = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (wfd >= 0)
        bh_server_pass_fd(c->conn, wfd);
    return bh_buf_printf(c->out, "%" PRIu64 " %s", size, path) < 0 ? bh_exc(c->exc, "QubesException", "out of memory")
                                                                    : 0;
}

static int import_end(struct bh_call *c)
{
    struct bh_pool *p = need_pool(c);
    if (!p)
        return -1;
    if (c->dest->klass == BH_ADMINVM || !vol_known(c->req->arg))
        return bh_exc(c->exc, "ProtocolError", "Argument not in volume names of the destination");
    bool ok = c->req->payload_len == 2 && !memcmp(c->req->payload, "ok", 2);
    bh_error err = { 0 };
    int r;
    long importer = import_token(c);
    WITH_SQ(c, r = bh_volume_import_end(p, &sqb.sq, c->req->arg, importer, ok, &err));
    if (r < 0) {
        emit_import(c, false, 0, false);
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    }
    emit_import(c, false, 0, ok);
    if (!ok) {
        const char *nl = memchr(c->req->payload, '\n', c->req->payload_len);
        size_t ml = nl ? c->req->payload_len - (size_t)(nl + 1 - c->req->payload) : 0;
        if (ml > 1024)
            ml = 1024;
        for (size_t i = 0; nl && i < ml; i++)
            if ((unsigned char)nl[1 + i] < 0x20 || (unsigned char)nl[1 + i] > 0x7e)
                return bh_exc(c->exc, "QubesException", "Data import failed: (unprintable message)");
        return bh_exc(c->exc, "QubesException", "Data import failed: %.*s", (int)ml, nl ? nl + 1 : "");
    }
    return 0;
}

static int v_clear(struct bh_call *c)
{
    struct bh_pool *p = need_pool(c);
    if (!p || need_vol(c) < 0 || need_halted(c) < 0)
        return -1;
    struct bh_volume_info info;
    bh_error err = { 0 };
    int r;
    WITH_SQ(c, r = bh_volume_info(p, &sqb.sq, c->req->arg, &info, &err));
    if (r < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    WITH_SQ(c, r = bh_volume_clear(p, &sqb.sq, c->req->arg, &err));
    if (r < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    emit_import(c, true, info.size, false);
    emit_import(c, false, 0, true);
    return 0;
}

#define NP BH_M_NOPAYLOAD
#define NA BH_M_NOARG
#define A BH_M_ARG
#define D BH_M_DOM0
const struct bh_method bh_api_volume[] = {
    { "admin.vm.volume.List", v_list, NA | NP },
    { "admin.vm.volume.Info", v_info, A | NP },
    { "admin.vm.volume.ListSnapshots", v_snapshots, A | NP },
    { "admin.vm.volume.Revert", v_revert, A },
    { "admin.vm.volume.Resize", v_resize, A },
    { "admin.vm.volume.Set.revisions_to_keep", v_set_revisions, A },
    { "admin.vm.volume.CloneFrom", v_clone_from, A | NP },
    { "admin.vm.volume.Set.rw", v_set_rw, A },
    { "admin.vm.volume.Set.ephemeral", v_set_ephemeral, A },
    { "admin.vm.volume.CloneTo", v_clone_to, A },
    { "admin.vm.volume.Clear", v_clear, A | NP },
    { "internal.vm.volume.ImportBegin", import_begin, A },
    { "internal.vm.volume.ImportEnd", import_end, A },
    { NULL, NULL, 0 },
};
