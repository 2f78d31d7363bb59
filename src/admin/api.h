/* Admin API method handlers. dispatch.c resolves the method and destination, then
 * calls a handler with a bh_call; the handler writes the success body into c->out or
 * fills c->exc and returns -1. */
#pragma once
#include <sys/types.h>
#include "buf.h"
#include "model.h"
#include "request.h"
#include "response.h"

struct bh_call_policy;

struct bh_call {
    struct bh_app *app;
    const struct bh_request *req;
    struct bh_qube *src;    /* the calling qube (dom0 for local tools) */
    struct bh_qube *dest;   /* resolved destination qube (dom0 for global calls) */
    bh_buf *out;            /* success body */
    struct bh_exc *exc;
    void *conn;             /* the connection, for streaming calls */
    bool stream;            /* set by admin.Events: keep the connection open */
    bool park;              /* set by calls that answer later (waiters.h): no reply now */
    struct bh_qube *call_qube; /* the qube whose qrexec call identity made the request (call_auth.h), or NULL */
    struct bh_call_policy *list_policy; /* admin.vm.List on dom0 for call_qube: the policy's filter */
    char call_user[64];     /* internal.qrexec.ConnectTarget: the user the policy runs the call as */
};

typedef int (*bh_handler)(struct bh_call *c);

enum {
    BH_M_DOM0 = 1,     /* destination must be dom0 */
    BH_M_NOARG = 2,    /* argument must be empty */
    BH_M_ARG = 4,      /* argument required */
    BH_M_NOPAYLOAD = 8 /* payload must be empty */
};

struct bh_method {
    const char *name;
    bh_handler fn;
    unsigned flags;
};

/* Dispatches one parsed request; writes the full response (ok/exception) into out.
 * Returns 1 if the connection becomes a stream (admin.Events), 0 otherwise. */
enum { BH_DISPATCH_REPLIED = 0, BH_DISPATCH_STREAM = 1, BH_DISPATCH_PARKED = 2 };
int bh_dispatch(struct bh_app *app, const struct bh_request *req, bh_buf *out, void *conn);

/* Tables contributed by each api_*.c file, NULL-name terminated. */
extern const struct bh_method bh_api_vm[], bh_api_prop[], bh_api_label[], bh_api_meta[], bh_api_firewall[],
    bh_api_volume[], bh_api_pool[], bh_api_misc[], bh_api_device[], bh_api_features_request[];

/* For admin.Events: implemented by the server. */
int bh_server_subscribe(void *conn, const char *filter);
/* The PID of the process at the other end of a connection (SO_PEERCRED), 0 if unknown. */
pid_t bh_server_peer_pid(void *conn);
/* Its UID as the kernel named it at accept; 0 (root) for no connection (tests). */
uid_t bh_server_peer_uid(void *conn);
/* fd (taken over) goes to the client with the reply's first bytes (SCM_RIGHTS). */
void bh_server_pass_fd(void *conn, int fd);

/* The policy's system-info text (internal.GetSystemInfo's body), appended to out. */
int bh_system_info_text(struct bh_app *app, bh_buf *out);

/* Shared helpers for handlers. */
int bh_api_need_payload_text(struct bh_call *c, char **out); /* payload as a C string, refuses NULs */
/* Qubes' validate_number (decimal ASCII, "-" only if allow_negative): ProtocolError
 * "Invalid NAME" otherwise. */
int bh_api_payload_number(struct bh_call *c, const char *name, bool allow_negative, long long *out);
/* Qubes' qubes.property.bool spellings: ProtocolError "Payload is not boolean ASCII". */
int bh_api_payload_bool(struct bh_call *c, bool *out);

/* The path of a running qube's console pty, made at the first call (console.c). */
int bh_console_path(struct bh_app *app, struct bh_qube *q, char *path, size_t n, struct bh_exc *e);
/* Is name a pool admin.pool.Add made (api_pool.c)? */
bool bh_pool_is_added(struct bh_app *app, const char *name);

/* A qube halted: what was attached to it is detached (device-detach events). */
void bh_devices_qube_stopped(struct bh_app *app, struct bh_qube *q);
/* Start: the check of `required` assignments before anything starts, then their
 * attachment (required) and that of auto-attach ones once the qube runs. */
int bh_devices_required_check(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
int bh_devices_attach_assigned(struct bh_app *app, struct bh_qube *q, bool required, struct bh_exc *e);
