/* Client side of the Admin API (docs/admin.md): one request per connection.
 * Used by the qvm-* tools, the qrexec daemon (policy's view of the system) and tests. */
#pragma once
#include "err.h"
#include <stddef.h>

#define BH_ADMIN_DEFAULT_SOCKET "/run/bulkhead/qubesd.sock"
#define BH_ADMIN_MAX_RESPONSE (64u << 20)

struct bh_admin_reply {
    int ok;            /* 1 success, 0 Qubes exception */
    char *body;        /* success: body (NUL-terminated, may contain NULs; see len) */
    size_t len;
    char *exc_type;    /* error: exception name, e.g. "QubesVMNotFoundError" */
    char *exc_msg;     /* error: message with %% already unescaped */
};
void bh_admin_reply_free(struct bh_admin_reply *r);
#define _cleanup_reply_ __attribute__((cleanup(bh_admin_reply_free)))

/* Socket path: $BULKHEAD_SOCKET or the default. */
const char *bh_admin_socket_path(void);
/* The source every later request names: "dom0" (the default) for dom0's tools; a
 * qrexec call process names its own qube, which is all bulkheadd lets it speak for. */
void bh_admin_set_source(const char *name);
/* Calls method+arg on dest ("dom0" for global calls) with an optional payload.
 * Returns 0 when a reply (success or exception) was received, -1 on transport error. */
int bh_admin_call(const char *method, const char *arg, const char *dest,
                  const void *payload, size_t payload_len,
                  struct bh_admin_reply *out, bh_error *err);
/* The same, and an fd bulkheadd passes with the reply (SCM_RIGHTS) in *fd_out (-1 when
 * none; the caller closes it, also when the reply is an exception). */
int bh_admin_call_fd(const char *method, const char *arg, const char *dest, const void *payload, size_t payload_len,
                     struct bh_admin_reply *out, int *fd_out, bh_error *err);
/* The two halves of a call, for a client with several calls in flight (the Admin API
 * takes one request per connection, so concurrent calls are concurrent connections):
 * bh_admin_send connects, sends the request and half-closes (returns the fd or -1);
 * bh_admin_recv reads and parses its reply (0 for a reply, -1 on transport error; fd_out
 * as for bh_admin_call_fd, or NULL). The caller closes the fd. */
int bh_admin_send(const char *method, const char *arg, const char *dest, const void *payload, size_t payload_len,
                  bh_error *err);
int bh_admin_recv(int fd, struct bh_admin_reply *out, int *fd_out, bh_error *err);
/* Opens an admin.Events stream; returns the fd (caller reads events) or -1. */
int bh_admin_events_open(const char *dest, bh_error *err);
