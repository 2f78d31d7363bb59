/* admin.vm.List, Create*, CreateDisposable, Remove, CurrentState and lifecycle calls. */
#include "api.h"
#include "call_policy.h"
#include "cleanup.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "lifecycle.h"
#include "preload.h"
#include "qrexec_connect.h"
#include "events.h"
#include "props.h"
#include "store.h"
#include "waiters.h"
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

/* Plain appends rather than printf: admin.vm.List on dom0 writes a line per qube and
 * is among the most frequent calls (qvm-ls, every tool's name completion). */
static int list_one(struct bh_call *c, struct bh_qube *q)
{
    if (bh_buf_adds(c->out, q->name) < 0 || bh_buf_adds(c->out, " class=") < 0 ||
        bh_buf_adds(c->out, bh_klass_name(q->klass)) < 0 || bh_buf_adds(c->out, " state=") < 0 ||
        bh_buf_adds(c->out, bh_power_state_name(q->rt.state)) < 0 || bh_buf_adds(c->out, " uuid=") < 0 ||
        bh_buf_adds(c->out, q->uuid) < 0)
        return -1;
    return bh_buf_addc(c->out, '\n');
}

static int vm_list(struct bh_call *c)
{
    if (c->dest->klass != BH_ADMINVM)
        return list_one(c, c->dest) < 0 ? bh_exc(c->exc, "QubesException", "out of memory") : 0;
    for (size_t i = 0; i < c->app->nqubes; i++) {
        struct bh_qube *q = c->app->qubes[i];
        /* from a qube's call: only what policy lets it list (Qubes' admin extension) */
        if (c->list_policy && !bh_call_policy_allows(c->list_policy, c->call_qube->name, q->name, "admin.vm.List"))
            continue;
        if (list_one(c, q) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    }
    return 0;
}

/* The tags Qubes adds to a new qube: created-by-CALLER (and disp-created-by-CALLER for
 * a disposable made by CreateDisposable), and guivm-NAME / audiovm-NAME after its
 * (default) guivm and audiovm. Written with the qube, in its create transaction. */
struct auto_tags {
    char v[4][96];
};

static void auto_tags(struct bh_call *c, struct bh_create_args *a, struct auto_tags *t, bool disp)
{
    size_t n = 0;
    snprintf(t->v[n], sizeof t->v[n], "created-by-%s", c->src->name);
    a->tags[n] = t->v[n];
    n++;
    if (disp) {
        snprintf(t->v[n], sizeof t->v[n], "disp-created-by-%s", c->src->name);
        a->tags[n] = t->v[n];
        n++;
    }
    static const char *const g[][2] = { { "guivm", "default_guivm" }, { "audiovm", "default_audiovm" } };
    for (size_t i = 0; i < 2; i++) {
        _cleanup_free_ char *v = bh_global_prop(c->app, g[i][1]);
        if (v && *v) {
            snprintf(t->v[n], sizeof t->v[n], "%s-%s", g[i][0], v);
            a->tags[n] = t->v[n];
            n++;
        }
    }
    a->tags[n] = NULL;
}

/* A preloaded disposable handed out gets its caller's tags now (it exists already). */
static void created_by(struct bh_call *c, struct bh_qube *q, bool disp)
{
    char tag[96];
    struct bh_exc e = { 0 };
    snprintf(tag, sizeof tag, "created-by-%s", c->src->name);
    (void)bh_qube_tag_set(c->app, q, tag, true, &e);
    if (disp) {
        snprintf(tag, sizeof tag, "disp-created-by-%s", c->src->name);
        (void)bh_qube_tag_set(c->app, q, tag, true, &e);
    }
    bh_props_sync_tags(c->app, q);
}

/* Payload of Create: "name=N label=L [pool=P] [pool:VOL=P]". */
static int create(struct bh_call *c, enum bh_klass k, bool allow_pool)
{
    _cleanup_free_ char *p = NULL;
    if (bh_api_need_payload_text(c, &p) < 0)
        return -1;
    struct bh_create_args a = { .klass = k };
    char *save = NULL;
    for (char *tok = strtok_r(p, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return bh_exc(c->exc, "QubesValueError", "Invalid param: %s", tok);
        *eq = '\0';
        const char *v = eq + 1;
        if (!strcmp(tok, "name") && !a.name)
            a.name = v;
        else if (!strcmp(tok, "label") && !a.label)
            a.label = v;
        else if (allow_pool && (!strcmp(tok, "pool") || !strncmp(tok, "pool:", 5))) {
            if (strcmp(v, "default") != 0 && bh_pool_is_added(c->app, v))
                return bh_exc(c->exc, "QubesException",
                              "Pool %s holds no qube's volumes: Bulkhead makes volumes in pool default only", v);
            if (strcmp(v, "default") != 0)
                return bh_exc(c->exc, "QubesValueError", "No such pool: %s", v);
        } else
            return bh_exc(c->exc, "QubesValueError", "Invalid param name");
    }
    if (!a.name || !a.label)
        return bh_exc(c->exc, "QubesValueError", "Missing name or label");
    if (c->req->arg[0] && k != BH_APPVM && k != BH_DISPVM)
        return bh_exc(c->exc, "QubesValueError", "%s cannot be based on template", bh_klass_name(k));
    a.template_name = c->req->arg[0] ? c->req->arg : NULL;
    struct auto_tags at;
    auto_tags(c, &a, &at, false);
    struct bh_qube *q = bh_qube_create(c->app, &a, c->exc);
    if (!q)
        return -1;
    bh_events_emit(q->name, "domain-create-on-disk", (const char *const[]){ NULL });
    return 0;
}

#define CREATE_FN(fname, klass, pool) \
    static int fname(struct bh_call *c) { return create(c, klass, pool); }
CREATE_FN(create_app, BH_APPVM, false)
CREATE_FN(create_template, BH_TEMPLATEVM, false)
CREATE_FN(create_standalone, BH_STANDALONEVM, false)
CREATE_FN(create_disp, BH_DISPVM, false)
CREATE_FN(createp_app, BH_APPVM, true)
CREATE_FN(createp_template, BH_TEMPLATEVM, true)
CREATE_FN(createp_standalone, BH_STANDALONEVM, true)
CREATE_FN(createp_disp, BH_DISPVM, true)

/* The qube on whose behalf a disposable is asked for: the caller is a qrexec call
 * process, a child of that qube's qrexec-daemon (bulkheadd started every daemon and
 * knows its PID; a qube cannot pose as one). NULL for dom0's own tools. */
static struct bh_qube *disposable_caller(struct bh_call *c)
{
    if (c->call_qube)
        return c->call_qube;
    pid_t pid = bh_server_peer_pid(c->conn);
    if (pid <= 0)
        return NULL;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *st = bh_read_file(path, 4096, NULL);
    const char *rp = st ? strrchr(st, ')') : NULL;
    long ppid = 0;
    if (!rp || sscanf(rp, ") %*c %ld", &ppid) != 1)
        return NULL;
    for (size_t i = 0; i < c->app->nqubes; i++) {
        struct bh_qube *q = c->app->qubes[i];
        if (q->rt.qrexec_pid > 0 && (q->rt.qrexec_pid == (pid_t)ppid || q->rt.qrexec_pid == pid))
            return q;
    }
    return NULL;
}

/* Disposables one qube's calls may hold at once ($BULKHEAD_DISPVMS_PER_CALLER). */
static unsigned dispvms_per_caller(void)
{
    const char *e = getenv("BULKHEAD_DISPVMS_PER_CALLER");
    char *end;
    long v = e && *e ? strtol(e, &end, 10) : -1;
    return v >= 0 && v < 100000 && !*end ? (unsigned)v : BH_DISPVMS_PER_CALLER;
}

/* New disposables per second one qube's calls may make ($BULKHEAD_DISPVM_RATE; burst
 * BH_DISPVM_BURST): each costs bulkheadd a create, a private-volume copy, a start and a
 * removal, so churn past this rate is refused at once (the call fails) instead of
 * slowing every other qube's Admin API requests. */
static double dispvm_rate(void)
{
    const char *e = getenv("BULKHEAD_DISPVM_RATE");
    char *end;
    double v = e && *e ? strtod(e, &end) : -1;
    return v > 0 && v < 1e6 && !*end ? v : BH_DISPVM_RATE;
}

static bool dispvm_rate_ok(struct bh_qube *caller)
{
    double rate = dispvm_rate(), burst = BH_DISPVM_BURST;
    int64_t now = bh_now_ms();
    struct bh_runtime *rt = &caller->rt;
    if (!rt->disp_tokens_ms)
        rt->disp_tokens = burst;
    else
        rt->disp_tokens += (double)(now - rt->disp_tokens_ms) * rate / 1000.0;
    if (rt->disp_tokens > burst)
        rt->disp_tokens = burst;
    rt->disp_tokens_ms = now;
    if (rt->disp_tokens < 1)
        return false;
    rt->disp_tokens -= 1;
    return true;
}

static int create_disposable(struct bh_call *c)
{
    struct bh_qube *caller = disposable_caller(c);
    if (caller) {
        unsigned n = 0, limit = dispvms_per_caller();
        for (size_t i = 0; i < c->app->nqubes; i++)
            n += c->app->qubes[i]->klass == BH_DISPVM && c->app->qubes[i]->rt.disp_caller == caller->qid;
        if (n >= limit) {
            bh_warn("%s: refused a new disposable: it holds %u already (limit %u)", caller->name, n, limit);
            return bh_exc(c->exc, "QubesException", "Too many disposables for %s: %u in use (limit %u)",
                          caller->name, n, limit);
        }
    }
    if (caller && !dispvm_rate_ok(caller)) {
        static int64_t logged;
        if (bh_now_ms() - logged >= 1000) { /* the caller's to cause: at most one line a second */
            logged = bh_now_ms();
            bh_warn("%s: refused a new disposable: over %g per second", caller->name, dispvm_rate());
        }
        return bh_exc(c->exc, "QubesException", "Too many new disposables for %s: over %g per second",
                      caller->name, dispvm_rate());
    }
    bool want_uuid = c->req->payload_len == 4 && !memcmp(c->req->payload, "uuid", 4);
    if (c->req->payload_len && !want_uuid)
        return bh_exc(c->exc, "QubesValueError",
                      "Invalid payload for admin.vm.CreateDisposable: expected the empty string or 'uuid'");
    struct bh_qube *base = c->dest;
    _cleanup_free_ char *dflt = NULL;
    if (base->klass == BH_ADMINVM) {
        /* As qubesd: the caller's default_dispvm (dom0's defaults to the global one). */
        dflt = bh_qube_prop(c->app, c->src, "default_dispvm");
        base = dflt && *dflt ? bh_app_find(c->app, dflt) : NULL;
        if (!base)
            return bh_exc(c->exc, "QubesException", "No default disposable template set");
    }
    if (!bh_qube_prop_bool(c->app, base, "template_for_dispvms"))
        return bh_exc(c->exc, "QubesException", "Refusing to create DispVM out of this AppVM, because template_for_dispvms=False");
    /* Handing out a preloaded disposable changes it in the store several times (its
     * preload-dispvm feature goes, its caller's tags come): one commit for all. */
    bh_error berr = { 0 };
    bool batch = bh_store_batch_begin(c->app->store, &berr) == 0;
    struct bh_qube *pre = bh_preload_take(c->app, base);
    if (pre)
        created_by(c, pre, true);
    if (batch && bh_store_batch_commit(c->app->store, &berr) < 0 && pre) {
        /* In memory it is taken, on disk still preloaded: it must serve no one (after a
         * restart it would be handed out again). Killing removes it (auto-cleanup). */
        struct bh_exc ke = { 0 };
        (void)bh_lifecycle_kill(c->app, pre, &ke);
        return bh_exc(c->exc, "QubesException", "Cannot hand out a preloaded disposable: %s", berr.msg);
    }
    if (pre) {
        pre->rt.disp_caller = caller ? caller->qid : 0;
        if (c->req->payload_len == 4 && !memcmp(c->req->payload, "uuid", 4))
            return bh_buf_printf(c->out, "uuid:%s", pre->uuid);
        return bh_buf_adds(c->out, pre->name);
    }
    char name[32];
    for (int tries = 0;; tries++) {
        uint16_t r;
        if (tries > 1000 || getrandom(&r, sizeof r, 0) != sizeof r)
            return bh_exc(c->exc, "QubesException", "No free disposable name");
        snprintf(name, sizeof name, "disp%u", 1u + r % 9999u);
        if (!bh_app_find(c->app, name))
            break;
    }
    _cleanup_free_ char *label = bh_qube_prop(c->app, base, "label");
    /* auto-cleanup in the create's own commit: one synchronous store write, not two */
    struct bh_create_args a = { .klass = BH_DISPVM, .name = name, .label = label, .template_name = base->name,
                                .features = { { "internal.auto-cleanup", "1" } } };
    struct auto_tags at;
    auto_tags(c, &a, &at, true);
    struct bh_qube *q = bh_qube_create(c->app, &a, c->exc);
    if (!q)
        return -1;
    q->rt.disp_caller = caller ? caller->qid : 0;
    if (want_uuid)
        return bh_buf_printf(c->out, "uuid:%s", q->uuid);
    return bh_buf_adds(c->out, q->name);
}

static int vm_remove(struct bh_call *c) { return bh_qube_remove(c->app, c->dest, c->exc); }

static int current_state(struct bh_call *c)
{
    struct bh_qube_stats st;
    bh_lifecycle_stats(c->app, c->dest, &st);
    long long maxmem = c->dest->klass == BH_ADMINVM ? 0 : bh_qube_prop_int(c->app, c->dest, "maxmem");
    return bh_buf_printf(c->out, "mem=%llu mem_static_max=%lld cputime=%llu power_state=%s",
                         (unsigned long long)(st.mem_bytes >> 10), bh_qube_is_running(c->dest) ? maxmem << 10 : 0,
                         (unsigned long long)st.cputime_ns, bh_power_state_name(c->dest->rt.state));
}

static int not_dom0(struct bh_call *c)
{
    if (c->dest->klass == BH_ADMINVM)
        return bh_exc(c->exc, "QubesVMError", "Cannot change the state of dom0");
    return 0;
}

static int park(struct bh_call *c, enum bh_wait_kind kind)
{
    if (bh_waiters_add(c->dest, kind, c->conn, bh_waiters_halt_ms(c->app, c->dest), c->exc) < 0)
        return -1;
    c->park = true;
    return 0;
}

static int park_started(struct bh_call *c)
{
    if (bh_waiters_add(c->dest, BH_WAIT_STARTED, c->conn, bh_waiters_boot_ms(c->app, c->dest), c->exc) < 0)
        return -1;
    c->park = true;
    return 0;
}

static int vm_start(struct bh_call *c)
{
    if (not_dom0(c) < 0)
        return -1;
    /* qubesd would answer at once without starting anything (the qube is not
     * Halted); a client that shut the qube down and starts it again means "start it
     * once it is down", so the reply waits for the halt and then for the start. */
    if ((c->dest->rt.state == BH_STATE_HALTING || c->dest->rt.state == BH_STATE_DYING) && c->conn)
        return park(c, BH_WAIT_START); /* Dying: a Kill's or a halt's cleanup runs */
    /* A qube that boots asynchronously (vm engine): the reply comes when it is up, and
     * a second Start while it boots waits for the same moment. */
    if (bh_lifecycle_starting(c->dest))
        return c->conn ? park_started(c) : 0;
    /* A netvm of its chain on its way down (a Kill or Shutdown of it in progress): the
     * qube would be linked to it and lose its link at once. The reply waits for that
     * netvm's halt, then the qube starts and its chain with it (that netvm again). */
    struct bh_qube *down = c->conn && !bh_qube_is_running(c->dest) ? bh_lifecycle_netvm_stopping(c->app, c->dest) : NULL;
    if (down) {
        if (bh_waiters_add_start_after(down, c->dest, c->conn, bh_waiters_halt_ms(c->app, down), c->exc) < 0)
            return -1;
        c->park = true;
        return 0;
    }
    int r = bh_lifecycle_start(c->app, c->dest, c->exc);
    if (r == BH_LIFECYCLE_STARTING)
        return c->conn ? park_started(c) : 0;
    return r;
}

static int vm_shutdown(struct bh_call *c)
{
    if (not_dom0(c) < 0)
        return -1;
    /* Argument: "", "force", "wait", "force+wait". */
    bool force = false, wait = false;
    _cleanup_free_ char *arg = strdup(c->req->arg);
    char *save = NULL;
    for (char *t = strtok_r(arg, "+", &save); t; t = strtok_r(NULL, "+", &save)) {
        if (!strcmp(t, "force"))
            force = true;
        else if (!strcmp(t, "wait"))
            wait = true;
        else
            return bh_exc(c->exc, "PermissionDenied", "Invalid shutdown argument");
    }
    if (bh_lifecycle_shutdown(c->app, c->dest, force, c->exc) < 0)
        return -1;
    /* As qubesd: with wait, the reply comes once the qube is Halted and cleaned up. */
    if (wait && c->conn && bh_qube_is_running(c->dest))
        return park(c, BH_WAIT_SHUTDOWN);
    return 0;
}

static int vm_kill(struct bh_call *c)
{
    if (not_dom0(c) < 0)
        return -1;
    int r = bh_lifecycle_kill(c->app, c->dest, c->exc);
    /* The engine's work runs beside the loop: the reply comes once the qube is Halted,
     * as qubesd's. */
    if (r == BH_LIFECYCLE_KILLING) {
        if (!c->conn)
            return 0;
        if (bh_waiters_add(c->dest, BH_WAIT_KILLED, c->conn, 60000, c->exc) < 0)
            return -1;
        c->park = true;
        return 0;
    }
    return r;
}
static int vm_pause(struct bh_call *c) { return not_dom0(c) < 0 ? -1 : bh_lifecycle_pause(c->app, c->dest, c->exc); }
static int vm_unpause(struct bh_call *c) { return not_dom0(c) < 0 ? -1 : bh_lifecycle_unpause(c->app, c->dest, c->exc); }

/* As qubesd, where the OS inside cannot suspend to RAM (an ns qube has no kernel of its
 * own to do it): Suspend pauses the qube, Resume unpauses it. */
static int vm_suspend(struct bh_call *c)
{
    if (not_dom0(c) < 0)
        return -1;
    if (c->dest->rt.state == BH_STATE_PAUSED)
        return 0;
    return bh_lifecycle_pause(c->app, c->dest, c->exc);
}

static int vm_resume(struct bh_call *c) { return vm_unpause(c); }

/* Qubes answers the path of the domain's console pty (Xen's hvc0, which libvirt puts
 * on a dom0 pty), which /etc/qubes-rpc/admin.vm.Console then connects to the caller.
 * Here: the pty of the qube's console relay (console.c), made at the first call. */
static int vm_console(struct bh_call *c)
{
    if (!bh_qube_is_running(c->dest) || c->dest->rt.state == BH_STATE_PAUSED)
        return bh_exc(c->exc, "QubesVMNotRunningError", "Domain not running (either powered off or paused): '%s'",
                      c->dest->name);
    if (c->dest->klass == BH_ADMINVM)
        return bh_exc(c->exc, "QubesException", "dom0 has no console to connect to");
    char path[256];
    if (bh_console_path(c->app, c->dest, path, sizeof path, c->exc) < 0)
        return -1;
    /* The pty stays root's (0600); the reply carries it open (SCM_RIGHTS) for a caller
     * that is not root: a qube's allowed admin.vm.Console call is relayed by
     * qubesd-console as the call's unprivileged identity. */
    int fd = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd >= 0)
        bh_server_pass_fd(c->conn, fd);
    return bh_buf_adds(c->out, path) < 0 ? bh_exc(c->exc, "QubesException", "out of memory") : 0;
}

#define NP BH_M_NOPAYLOAD
#define NA BH_M_NOARG
/* The qrexec call process's own steps (call_auth.c checked each against the policy
 * for the call it serves, and serves it as dom0's, as Qubes' policy daemon makes them):
 * its payload "SERVICE REQUESTED-TARGET" is for that check, not for the handler. */
static int qrexec_start(struct bh_call *c) { return vm_start(c); }
static int qrexec_kill(struct bh_call *c) { return vm_kill(c); }
static int qrexec_create_disposable(struct bh_call *c)
{
    struct bh_request r = *c->req;
    r.payload = "";
    r.payload_len = 0;
    const struct bh_request *orig = c->req;
    c->req = &r;
    int ret = create_disposable(c);
    c->req = orig;
    return ret;
}

const struct bh_method bh_api_vm[] = {
    { "internal.qrexec.StartTarget", qrexec_start, NA },
    { "internal.qrexec.CreateDisposable", qrexec_create_disposable, NA },
    { "internal.qrexec.KillDisposable", qrexec_kill, NA | NP },
    { "internal.qrexec.ConnectTarget", bh_qrexec_connect_target, NA },
    { "admin.vm.List", vm_list, NA | NP },
    { "admin.vm.Create.AppVM", create_app, BH_M_DOM0 },
    { "admin.vm.Create.TemplateVM", create_template, BH_M_DOM0 },
    { "admin.vm.Create.StandaloneVM", create_standalone, BH_M_DOM0 },
    { "admin.vm.Create.DispVM", create_disp, BH_M_DOM0 },
    { "admin.vm.CreateInPool.AppVM", createp_app, BH_M_DOM0 },
    { "admin.vm.CreateInPool.TemplateVM", createp_template, BH_M_DOM0 },
    { "admin.vm.CreateInPool.StandaloneVM", createp_standalone, BH_M_DOM0 },
    { "admin.vm.CreateInPool.DispVM", createp_disp, BH_M_DOM0 },
    { "admin.vm.CreateDisposable", create_disposable, NA },
    { "admin.vm.Remove", vm_remove, NA | NP },
    { "admin.vm.CurrentState", current_state, NA | NP },
    { "admin.vm.Start", vm_start, NA | NP },
    { "admin.vm.Shutdown", vm_shutdown, NP },
    { "admin.vm.Kill", vm_kill, NA | NP },
    { "admin.vm.Pause", vm_pause, NA | NP },
    { "admin.vm.Unpause", vm_unpause, NA | NP },
    { "admin.vm.Suspend", vm_suspend, NA | NP },
    { "admin.vm.Resume", vm_resume, NA | NP },
    { "admin.vm.Console", vm_console, NA | NP },
    { NULL, NULL, 0 },
};
