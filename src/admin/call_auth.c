#include "call_auth.h"
#include "call_policy.h"
#include "cleanup.h"
#include "log.h"
#include "loop.h"
#include "qrexec_ids.h"
#include <stdio.h>
#include <string.h>

bool bh_uid_is_call_identity(uid_t uid)
{
    return uid >= BH_QX_CALL_ID_BASE && uid < BH_QX_CALL_ID_BASE + 0x10000u;
}

struct bh_qube *bh_call_identity_qube(struct bh_app *app, uid_t uid)
{
    if (!bh_uid_is_call_identity(uid))
        return NULL;
    struct bh_qube *q = bh_app_find_qid(app, uid - BH_QX_CALL_ID_BASE);
    return q && q->klass != BH_ADMINVM ? q : NULL;
}

static int refuse(struct bh_call *c, struct bh_qube *q, const char *why)
{
    /* the qube's to cause: at most one line a second */
    static int64_t logged;
    if (bh_now_ms() - logged >= 1000) {
        logged = bh_now_ms();
        bh_warn("%s: refused %s+%s from %s's qrexec call (source %s, destination %s): %s", q->name,
                c->req->method, c->req->arg, q->name, c->req->src, c->req->dest, why);
    }
    return bh_exc(c->exc, "PermissionDenied", "%s from a qrexec call of %s: %s", c->req->method, q->name, why);
}

/* The policy as it is now, for the system as it is now. */
static struct bh_call_policy *policy_now(struct bh_call *c)
{
    _cleanup_buf_ bh_buf si;
    bh_buf_init(&si, 0);
    if (bh_system_info_text(c->app, &si) < 0 || bh_buf_addc(&si, '\0') < 0)
        return NULL;
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/policy.d", c->app->root_dir);
    bh_error err = { 0 };
    struct bh_call_policy *p = bh_call_policy_open(dir, si.data, &err);
    if (!p)
        bh_warn("qrexec call authorisation: %s", err.msg);
    return p;
}

bool bh_call_payload_parse(const char *p, size_t len, char *svc, size_t sn, char *req, size_t rn)
{
    const char *sp = memchr(p, ' ', len);
    if (!sp || sp == p)
        return false;
    size_t a = (size_t)(sp - p), b = len - a - 1;
    if (a >= sn || b == 0 || b >= rn)
        return false;
    /* printable ASCII, no blank but the one separator (service names and targets have none) */
    for (size_t i = 0; i < len; i++)
        if (i != a && ((unsigned char)p[i] <= 0x20 || (unsigned char)p[i] >= 0x7f))
            return false;
    memcpy(svc, p, a);
    svc[a] = '\0';
    memcpy(req, sp + 1, b);
    req[b] = '\0';
    return true;
}

/* The qrexec call process's steps: start the target, make the call's disposable, connect
 * to the target's daemon (bulkheadd does it: qrexec_connect.c), end the disposable. Each
 * must follow from the policy for this qube's call as the caller made it. */
static int qrexec_step(struct bh_call *c, struct bh_qube *q)
{
    const struct bh_request *r = c->req;
    bool own_disp = c->dest->klass == BH_DISPVM && c->dest->rt.disp_caller == q->qid;
    if (!strcmp(r->method, "internal.qrexec.KillDisposable")) {
        if (!own_disp)
            return refuse(c, q, "not a disposable made for this qube's call");
        c->src = bh_app_find(c->app, "dom0");
        return 0;
    }
    if (!strcmp(r->method, "internal.qrexec.StartTarget") && own_disp) {
        c->src = bh_app_find(c->app, "dom0"); /* the disposable the policy gave this call */
        return 0;
    }
    char svc[520], requested[80], actual[80];
    if (!bh_call_payload_parse(r->payload, r->payload_len, svc, sizeof svc, requested, sizeof requested))
        return refuse(c, q, "payload is not 'SERVICE REQUESTED-TARGET'");
    if (c->dest->klass == BH_ADMINVM)
        return refuse(c, q, "names dom0");
    bool disp = !strcmp(r->method, "internal.qrexec.CreateDisposable");
    bool connect = !strcmp(r->method, "internal.qrexec.ConnectTarget");
    if (connect && own_disp) {
        /* the call's own disposable: the policy must lead this very call (the service
         * run in it, and its user) to a disposable of that template */
        const char *tpl = bh_kv_get(&c->dest->props, "template");
        if (!tpl)
            return refuse(c, q, "the disposable has no template");
        snprintf(actual, sizeof actual, "@dispvm:%s", tpl);
    } else {
        snprintf(actual, sizeof actual, "%s%s", disp ? "@dispvm:" : "", c->dest->name);
    }
    struct bh_call_policy *p = policy_now(c);
    bool autostart = false;
    bool ok = p && bh_call_policy_reaches_as(p, q->name, requested, svc, actual, c->call_user, sizeof c->call_user,
                                             &autostart);
    bh_call_policy_close(p);
    if (!ok)
        return refuse(c, q, "the qrexec policy does not lead this call there");
    if (!strcmp(r->method, "internal.qrexec.StartTarget") && !autostart)
        return refuse(c, q, "the qrexec policy's rule says autostart=no");
    c->src = bh_app_find(c->app, "dom0");
    return 0;
}

/* Qubes' misc services (qubes/api/misc.py) that reach qubesd over qrexec. */
static bool qube_service(const char *m)
{
    return !strncmp(m, "admin.", 6) || !strcmp(m, "qubes.FeaturesRequest") || !strcmp(m, "qubes.NotifyTools") ||
           !strcmp(m, "qubes.NotifyUpdates");
}

int bh_call_auth(struct bh_call *c, struct bh_qube *q)
{
    const struct bh_request *r = c->req;
    if (c->src != q)
        return refuse(c, q, "a call may only name its own qube as the source");
    if (!strcmp(r->method, "internal.GetSystemInfo"))
        return 0; /* the policy's view of the system: the call process decides with it */
    if (!strncmp(r->method, "internal.qrexec.", 16))
        return qrexec_step(c, q);
    char svc[BH_REQ_METHOD_MAX + BH_REQ_ARG_MAX + 40];
    const char *why = "the qrexec policy does not allow this qube that call";
    if (!strcmp(r->method, "internal.vm.volume.ImportBegin") || !strcmp(r->method, "internal.vm.volume.ImportEnd")) {
        /* qubesd-import, for the qube's admin.vm.volume.Import[WithSize] call (as Qubes'
         * ImportBegin fires admin-permission:admin.vm.volume.Import on the source) */
        bool begin = !strcmp(r->method, "internal.vm.volume.ImportBegin");
        struct bh_call_policy *p = policy_now(c);
        bool ok = false;
        for (int sized = 0; sized < 2 && p && !ok; sized++) {
            if (begin && sized != (r->payload_len > 0))
                continue;
            snprintf(svc, sizeof svc, "admin.vm.volume.Import%s+%s", sized ? "WithSize" : "", r->arg);
            ok = bh_call_policy_reaches(p, q->name, c->dest->name, svc, "dom0");
        }
        bh_call_policy_close(p);
        return ok ? 0 : refuse(c, q, why);
    }
    if (!qube_service(r->method))
        return refuse(c, q, "only dom0 may make this request");
    /* A stream of every qube's events or stats is not filtered per qube here. */
    if ((!strcmp(r->method, "admin.Events") || !strcmp(r->method, "admin.vm.Stats")) &&
        c->dest->klass == BH_ADMINVM)
        return refuse(c, q, "not on dom0 (name a qube)");
    snprintf(svc, sizeof svc, "%s+%s", r->method, r->arg);
    struct bh_call_policy *p = policy_now(c);
    if (!p || !bh_call_policy_reaches(p, q->name, c->dest->name, svc, "dom0")) {
        bh_call_policy_close(p);
        return refuse(c, q, why);
    }
    if (!strcmp(r->method, "admin.vm.List") && c->dest->klass == BH_ADMINVM) {
        c->list_policy = p; /* closed by the dispatcher */
        return 0;
    }
    bh_call_policy_close(p);
    return 0;
}
