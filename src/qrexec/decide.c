#include "decide.h"
#include "cleanup.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ======================================================================================
 * STUB — deny by default until the policy engine (branch `policy`, library `bhpolicy`)
 * is merged. Replace the body of bh_qx_policy_decide() with the bhpolicy call.
 *
 * The only way this stub allows anything is an explicit test file (qrexec-daemon
 * --test-allow FILE), one exact rule a line: "SERVICE+ARG SOURCE TARGET [RESOLVED]".
 * No wildcards, no defaults: a missing or unreadable file denies everything.
 * ====================================================================================== */
int bh_qx_policy_decide(const struct bh_qx_policy_ctx *ctx, const char *source, const char *target,
                        const char *service_full, struct bh_qx_decision *out, bh_error *err)
{
    memset(out, 0, sizeof *out);
    out->verdict = BH_QX_DENY;
    snprintf(out->user, sizeof out->user, "DEFAULT");
    snprintf(out->rule, sizeof out->rule, "(no policy engine: default deny)");
    /* A call to itself is denied, as in Qubes. */
    if (!strcmp(source, target))
        return 0;
    if (!ctx->stub_allow)
        return 0;
    _cleanup_fclose_ FILE *f = fopen(ctx->stub_allow, "re");
    if (!f)
        return 0;
    char line[512];
    int lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        char svc[256], src[64], tgt[64], res[64] = "";
        int n = sscanf(line, "%255s %63s %63s %63s", svc, src, tgt, res);
        if (n < 3 || svc[0] == '#')
            continue;
        if (strcmp(svc, service_full) || strcmp(src, source) || strcmp(tgt, target))
            continue;
        out->verdict = BH_QX_ALLOW;
        snprintf(out->target, sizeof out->target, "%s", n == 4 ? res : target);
        if (!strcmp(out->target, "@adminvm"))
            snprintf(out->target, sizeof out->target, "dom0");
        snprintf(out->rule, sizeof out->rule, "%s:%d (test stub)", ctx->stub_allow, lineno);
        return 0;
    }
    (void)err;
    return 0;
}
