#include "api.h"
#include "call_auth.h"
#include "call_policy.h"
#include "cleanup.h"
#include "log.h"
#include <stdlib.h>
#include <string.h>

static const struct bh_method *const tables[] = { bh_api_vm, bh_api_prop, bh_api_label, bh_api_meta,
                                                  bh_api_firewall, bh_api_volume, bh_api_pool, bh_api_misc, bh_api_device,
                                                  bh_api_features_request };

static const struct bh_method *find_method(const char *name)
{
    for (size_t t = 0; t < BH_ARRAY_SIZE(tables); t++)
        for (const struct bh_method *m = tables[t]; m->name; m++)
            if (!strcmp(m->name, name))
                return m;
    return NULL;
}

int bh_api_need_payload_text(struct bh_call *c, char **out)
{
    if (memchr(c->req->payload, '\0', c->req->payload_len))
        return bh_exc(c->exc, "QubesValueError", "Payload contains NUL bytes");
    *out = strndup(c->req->payload, c->req->payload_len);
    if (!*out)
        return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int run(struct bh_app *app, const struct bh_method *m, struct bh_call *c)
{
    const struct bh_request *req = c->req;
    /* As qubesd: the source must be a qube too (calls forwarded from qubes name it). */
    c->src = bh_app_find(app, req->src);
    if (!c->src)
        return bh_exc(c->exc, "QubesVMNotFoundError", "No such domain: '%s'", req->src);
    /* A qrexec call's process speaks for its own qube only, whatever source it names. */
    uid_t peer = bh_server_peer_uid(c->conn);
    if (peer != 0) {
        c->call_qube = bh_call_identity_qube(app, peer);
        if (!c->call_qube)
            return bh_exc(c->exc, "PermissionDenied", "%s: the calling qube is gone", req->method);
    }
    /* internal.* serve dom0's own components (the qrexec policy); a qube's call gets the
     * few that call_auth.c lets it have. */
    if (!c->call_qube && !strncmp(req->method, "internal.", 9) && c->src->klass != BH_ADMINVM)
        return bh_exc(c->exc, "PermissionDenied", "%s is for dom0 only", req->method);
    c->dest = bh_app_find(app, req->dest);
    if (!c->dest)
        return bh_exc(c->exc, "QubesVMNotFoundError", "No such domain: '%s'", req->dest);
    if (c->call_qube && bh_call_auth(c, c->call_qube) < 0)
        return -1;
    if ((m->flags & BH_M_DOM0) && c->dest->klass != BH_ADMINVM)
        return bh_exc(c->exc, "PermissionDenied", "%s must be called on dom0", req->method);
    if ((m->flags & BH_M_NOARG) && req->arg[0])
        return bh_exc(c->exc, "PermissionDenied", "%s takes no argument", req->method);
    if ((m->flags & BH_M_ARG) && !req->arg[0])
        return bh_exc(c->exc, "PermissionDenied", "%s needs an argument", req->method);
    if ((m->flags & BH_M_NOPAYLOAD) && req->payload_len)
        return bh_exc(c->exc, "PermissionDenied", "%s takes no payload", req->method);
    return m->fn(c);
}

int bh_dispatch(struct bh_app *app, const struct bh_request *req, bh_buf *out, void *conn)
{
    _cleanup_buf_ bh_buf body;
    bh_buf_init(&body, 0);
    struct bh_exc exc = { 0 };
    struct bh_call c = { .app = app, .req = req, .out = &body, .exc = &exc, .conn = conn };
    const struct bh_method *m = find_method(req->method);
    int r;
    if (!m)
        r = bh_exc(&exc, "ProtocolError", "no such method: '%s'", req->method);
    else
        r = run(app, m, &c);
    bh_call_policy_close(c.list_policy);
    if (r < 0) {
        if (!exc.type)
            bh_exc(&exc, "QubesException", "internal error");
        bh_debug("%s+%s %s: %s: %s", req->method, req->arg, req->dest, exc.type, exc.msg);
        bh_reply_exc(out, &exc);
        return 0;
    }
    if (c.stream)
        return BH_DISPATCH_STREAM;
    if (c.park)
        return BH_DISPATCH_PARKED;
    size_t mark = out->len;
    if (bh_reply_ok(out, body.data ? body.data : "", body.len) < 0) {
        /* Over the connection's output limit: "0\0" with a cut or empty body would
         * pass for a complete answer, so take it back and say so. */
        out->len = mark;
        bh_exc(&exc, "QubesException", "reply too large (%zu bytes)", body.len);
        bh_reply_exc(out, &exc);
    }
    return 0;
}
