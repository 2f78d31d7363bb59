/* Requests from a qube's qrexec call identity (qrexec_ids.h: every host process a
 * qube's call starts, the dom0 services and Qubes' dom0 programs qubesd-query,
 * qubesd-import and qubesd-console included). Such a connection speaks for that qube
 * alone, never for dom0: the kernel names the peer (SO_PEERCRED), its UID names the
 * qube, and a request must carry that qube as its source (as Qubes' qubesd-query sends
 * the calling VM). What it may ask is what the qrexec policy lets that qube reach
 * (docs/qrexec.md, "What a call's dom0 program may ask of bulkheadd"). */
#pragma once
#include "api.h"
#include <stdbool.h>
#include <sys/types.h>

/* Is uid one of the qubes' call identities? */
bool bh_uid_is_call_identity(uid_t uid);
/* The qube whose call identity uid is, NULL when none (not a call identity, or the
 * qube is gone). */
struct bh_qube *bh_call_identity_qube(struct bh_app *app, uid_t uid);

/* Checks c (src and dest resolved) made by q's call identity before it is served; on
 * refusal fills c->exc (PermissionDenied) and returns -1. The qrexec call process's own
 * steps (internal.qrexec.*), once authorised, are served as dom0's (c->src set to
 * dom0), as Qubes' policy daemon makes them; admin.vm.List on dom0 gets the policy's
 * per-qube filter (c->list_policy). */
int bh_call_auth(struct bh_call *c, struct bh_qube *q);

/* The payload of internal.qrexec.StartTarget/CreateDisposable, "SERVICE[+ARG]
 * REQUESTED-TARGET" (bytes from a call process, which a qube may have taken over): one
 * space, printable ASCII otherwise, each part non-empty and shorter than its buffer
 * (sn, rn bytes with the NUL). false for anything else. */
bool bh_call_payload_parse(const char *p, size_t len, char *svc, size_t sn, char *req, size_t rn);
