/* libFuzzer harness: whole Admin API requests dispatched against a model with the
 * default layout in an in-memory store: property, create, tag, feature, label, notes,
 * firewall parsers all see the bytes, and so does the real lifecycle (lifecycle.c:
 * Start with its netvm chain, Shutdown, Kill, Pause, Unpause, disposables).
 *
 * The lifecycle runs against an in-memory engine and storage, swapped in at link time
 * (-Wl,--wrap, see src/admin/meson.build), and without the network glue (namespaces,
 * links, nftables: kernel state): no process, file, mount or namespace is made. The fake
 * engine refuses to start a qube whose memory is 1 more than a multiple of 5, the fake
 * storage refuses to prepare a qube whose name ends in "-broken", so that the failure
 * paths are reached too. Checks that every reply is well-formed and that, after every
 * request, the model and the engine agree on which qubes run (no qube left half
 * started, no engine instance whose qube was removed or forgotten). */
#include "api.h"
#include "defaults.h"
#include "driver/driver.h"
#include "engine_glue.h"
#include "lifecycle.h"
#include "loop.h"
#include "qube_ids_reap.h"
#include "store.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct bh_app app;

/* ---- the in-memory engine: which qids run, nothing else ---- */

#define MAX_QID 65536
static bool running[MAX_QID];
static size_t nrunning;

static int fake_start(const struct bh_qube_spec *s, bh_error *err)
{
    if (s->qid >= MAX_QID || running[s->qid])
        abort(); /* started twice */
    if (s->memory_mib % 5 == 1)
        return bh_fail(err, EIO, "fake engine: no room for %s", s->name);
    running[s->qid] = true;
    nrunning++;
    return 0;
}

static int must_run(const struct bh_qube_spec *s)
{
    if (s->qid >= MAX_QID || !running[s->qid])
        abort(); /* the lifecycle asked the engine about a qube it does not run */
    return 0;
}

static int fake_shutdown(const struct bh_qube_spec *s, bh_error *err) { (void)err; return must_run(s); }
static int fake_pause(const struct bh_qube_spec *s, bh_error *err) { (void)err; return must_run(s); }
static int fake_unpause(const struct bh_qube_spec *s, bh_error *err) { (void)err; return must_run(s); }

/* Also on a halted qube (driver.h: a kill cleans up what its last run left; the
 * lifecycle has a failed start's engine clean up once more): nothing to do then. */
static int fake_kill(const struct bh_qube_spec *s, bh_error *err)
{
    (void)err;
    if (s->qid >= MAX_QID)
        abort();
    if (running[s->qid]) {
        running[s->qid] = false;
        nrunning--;
    }
    return 0;
}

static enum bh_power_state fake_state(const struct bh_qube_spec *s, struct bh_qube_stats *st)
{
    if (st)
        memset(st, 0, sizeof *st);
    return s->qid < MAX_QID && running[s->qid] ? BH_STATE_RUNNING : BH_STATE_HALTED;
}

static int fake_adopt(const struct bh_qube_spec *s, bh_error *err) { (void)s, (void)err; return 0; }
static int fake_watch_fd(const struct bh_qube_spec *s) { (void)s; return -1; }

static int fake_reap(const struct bh_qube_spec *s, bool *crashed, bh_error *err)
{
    (void)err;
    if (s->qid < MAX_QID && running[s->qid]) {
        running[s->qid] = false;
        nrunning--;
    }
    *crashed = false;
    return 0;
}

static const struct bh_driver fake_engine = {
    .name = "fake", .start = fake_start, .shutdown = fake_shutdown, .kill = fake_kill, .pause = fake_pause,
    .unpause = fake_unpause, .state = fake_state, .adopt = fake_adopt, .watch_fd = fake_watch_fd, .reap = fake_reap,
};

/* Linked with --wrap: the lifecycle's calls land here. An engine the real lookup does
 * not know stays unknown (that refusal is fuzzed too). */
const struct bh_driver *__real_bh_glue_driver(struct bh_app *a, const struct bh_qube *q);
const struct bh_driver *__wrap_bh_glue_driver(struct bh_app *a, const struct bh_qube *q)
{
    return __real_bh_glue_driver(a, q) ? &fake_engine : NULL;
}

int __wrap_bh_volumes_prepare(struct bh_pool *p, const struct bh_storage_qube *q, struct bh_volume_layout *out,
                              bh_error *err)
{
    (void)p;
    memset(out, 0, sizeof *out);
    size_t n = strlen(q->name);
    if (n >= 7 && !strcmp(q->name + n - 7, "-broken"))
        return bh_fail(err, EIO, "fake storage: volumes of %s are broken", q->name);
    return 0;
}

int __wrap_bh_volumes_stopped(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err)
{
    (void)p, (void)q, (void)err;
    return 0;
}

int __wrap_bh_glue_runtime_check(struct bh_app *a, bh_error *err)
{
    (void)a, (void)err;
    return 0;
}

/* The network side (namespaces, links, nftables) works on the kernel: not here. */
int __wrap_bh_net_glue_prestart(struct bh_app *a, struct bh_qube *q, const struct bh_qube_spec *spec, bh_error *err)
{
    (void)a, (void)q, (void)spec, (void)err;
    return 0;
}
void __wrap_bh_net_glue_started(struct bh_app *a, struct bh_qube *q) { (void)a, (void)q; }
void __wrap_bh_net_glue_stopped(struct bh_app *a, struct bh_qube *q) { (void)a, (void)q; }
void __wrap_bh_net_glue_adopted(struct bh_app *a) { (void)a; }
/* never kill processes from a fuzz run (another daemon's qube may hold the qid) */
int __wrap_bh_qube_ids_reap(uint32_t qid) { (void)qid; return 0; }
void __wrap_bh_qube_ids_reap_begin(uint32_t qid, struct bh_ids_sweep *s)
{
    (void)qid;
    memset(s, 0, sizeof *s);
}
int __wrap_bh_qube_ids_reap_end(struct bh_ids_sweep *s)
{
    (void)s;
    return 0;
}

/* ---- the harness ---- */

static void setup(void)
{
    /* no qrexec-daemon is ever started (the lifecycle finds none and says so, quietly) */
    setenv("BULKHEAD_QREXEC_DAEMON", "/nonexistent/qrexec-daemon", 1);
    setenv("BULKHEAD_LOG", "error", 1);
    bh_error err;
    struct bh_store *s = bh_store_open(":memory:", &err);
    if (!s || bh_app_load(&app, s, &err) < 0 || bh_defaults_create(&app, &err) < 0)
        abort();
    static char runtime[] = "/nonexistent-runtime", root[] = "/nonexistent-root";
    app.runtime_dir = runtime;
    app.root_dir = root;
    bh_lifecycle_boot(&app, false);
}

static void check_engine_agrees(void)
{
    size_t up_in_model = 0;
    for (size_t i = 0; i < app.nqubes; i++) {
        struct bh_qube *q = app.qubes[i];
        enum bh_power_state st = q->rt.state;
        if (st == BH_STATE_TRANSIENT || st == BH_STATE_DYING)
            abort(); /* a call returned with a qube half started or half killed */
        bool up = st == BH_STATE_RUNNING || st == BH_STATE_PAUSED || st == BH_STATE_HALTING;
        if (q->klass == BH_ADMINVM || q->qid >= MAX_QID)
            continue;
        if (up != running[q->qid])
            abort(); /* model and engine disagree */
        up_in_model += up;
    }
    if (up_in_model != nrunning)
        abort(); /* the engine runs a qube the model no longer has */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!app.store)
        setup();
    struct bh_request r;
    if (bh_request_parse((const char *)data, size, &r, NULL) < 0)
        return 0;
    /* Keep the model bounded across runs: no creation of thousands of qubes. */
    if (app.nqubes > 64 && !strncmp(r.method, "admin.vm.Create", 15))
        return 0;
    bh_buf out;
    bh_buf_init(&out, 0);
    bh_dispatch(&app, &r, &out, NULL);
    /* as the server does after each reply: disposables are removed here */
    bh_loop_run_deferred();
    if (out.len < 2 || (out.data[0] != '0' && out.data[0] != '2') || out.data[1] != '\0')
        __builtin_trap();
    if (out.data[0] == '2' && out.data[out.len - 1] != '\0')
        __builtin_trap();
    static int trace = -1;
    if (trace < 0)
        trace = getenv("FUZZ_ADMIN_TRACE") != NULL; /* for writing seeds: show the replies */
    if (trace)
        fprintf(stderr, "%s+%s %s -> %.*s\n", r.method, r.arg, r.dest, (int)(out.len > 302 ? 300 : out.len - 2), out.data + 2);
    bh_buf_free(&out);
    check_engine_agrees();
    return 0;
}
