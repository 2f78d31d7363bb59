/* The one place where the qrexec daemon asks policy about a qube's call.
 *
 * The source is always the daemon's own qube (what the daemon knows), never a name from
 * the message. When the policy engine (`bhpolicy`, src/qrexec/policy/) is merged, wiring
 * it is a change to decide.c only. */
#pragma once
#include "err.h"
#include <stdbool.h>

enum bh_qx_verdict { BH_QX_DENY = 0, BH_QX_ALLOW = 1 };

struct bh_qx_decision {
    enum bh_qx_verdict verdict;
    char target[64];    /* the resolved target qube ("dom0" for the admin domain) */
    char user[64];      /* user to run as in the target; "DEFAULT" when policy says nothing */
    bool autostart;     /* start the target if it is not running */
    bool dispvm;        /* a new disposable from dispvm_template serves the call */
    char dispvm_template[64];
    char rule[1024];    /* file:line that decided (or why nothing did), for logs */
};

struct bh_qx_policy_ctx {
    const char *policy_dir;   /* <root>/policy.d */
    const char *stub_allow;   /* TEST STUB ONLY, see decide.c */
    const char *ask_program;  /* answers `ask`: --ask-program or $BULKHEAD_QREXEC_ASK */
    int keep_fd;              /* an fd the ask program inherits (its $XAUTHORITY), or -1 */
    void *preloaded;          /* the policy, loaded by bh_qx_policy_preload() */
};

/* Loads policy_dir now (the call process does, as root, before it gives up root:
 * policy.d is dom0's own file tree under bulkheadd's 0700 state dir); later decisions
 * evaluate that copy. A directory that does not load is decided as before (deny). */
void bh_qx_policy_preload(struct bh_qx_policy_ctx *ctx);
/* Sets ctx->preloaded to policy_dir as a load now would give it, reusing the last load
 * while policy.d is unchanged (bh_policy_cache_get): the qrexec-daemon's root side does
 * it before forking each call process, which then finds the policy loaded. */
void bh_qx_policy_refresh(struct bh_qx_policy_ctx *ctx);

/* The qubes `source` may see in admin.vm.List: those policy lets it call admin.vm.List
 * on (allow; ask and deny hide them), among the qubes bulkheadd reports now, as one
 * malloc'd space-separated string (empty when none). -1 without a policy engine, a
 * preloaded policy or the system information: the caller must then list nothing. */
int bh_qx_policy_list_allowed(const struct bh_qx_policy_ctx *ctx, const char *source, char **out, bh_error *err);

/* 0 with *out filled (deny included), -1 on an internal error (treated as deny). */
int bh_qx_policy_decide(const struct bh_qx_policy_ctx *ctx, const char *source, const char *target,
                        const char *service_full, struct bh_qx_decision *out, bh_error *err);
