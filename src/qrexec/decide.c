#include "decide.h"
#include "cleanup.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

#ifdef BH_HAVE_BHPOLICY
#include "io.h"
#include "policy.h"
#include "sysinfo.h"
#include <fcntl.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

/* `ask` needs a person. The prompt is a program (a terminal or window prompt, or a
 * test's script): argv = --source S --service SVC --default D -- CHOICE...; its first
 * output line is the chosen target. No program, no line, or a non-zero exit: deny.
 * bh_policy_confirm_ask() then refuses anything that was not offered. */
static int ask_person(const struct bh_qx_policy_ctx *ctx, const char *source, const char *service_full,
                      const struct bh_policy_result *r, char *answer, size_t size)
{
    const char *prog = ctx->ask_program;
    if (!prog || !*prog || r->n_choices == 0)
        return -1;
    char **argv = calloc(r->n_choices + 10, sizeof *argv);
    if (!argv)
        return -1;
    size_t i = 0;
    argv[i++] = (char *)prog;
    argv[i++] = (char *)"--source";
    argv[i++] = (char *)source;
    argv[i++] = (char *)"--service";
    argv[i++] = (char *)service_full;
    argv[i++] = (char *)"--default";
    argv[i++] = (char *)r->default_target;
    argv[i++] = (char *)"--";
    for (size_t k = 0; k < r->n_choices; k++)
        argv[i++] = r->choices[k];
    argv[i] = NULL;
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0) {
        free(argv);
        return -1;
    }
    pid_t pid = fork();
    if (pid == 0) {
        dup2(pfd[1], 1);
        int dn = open("/dev/null", O_RDONLY);
        if (dn >= 0)
            dup2(dn, 0);
        if (ctx->keep_fd >= 0) /* opened close-on-exec for every other program */
            fcntl(ctx->keep_fd, F_SETFD, 0);
        execv(prog, argv);
        _exit(127);
    }
    free(argv);
    close(pfd[1]);
    ssize_t n = pid > 0 ? bh_read_all(pfd[0], answer, size - 1) : -1;
    close(pfd[0]);
    int st = 0;
    if (pid > 0)
        waitpid(pid, &st, 0);
    if (n <= 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        answer[0] = '\0';
        return -1;
    }
    answer[n] = '\0';
    answer[strcspn(answer, "\n")] = '\0';
    return 0;
}

/* The policy engine: policy.d as it is now, the system as bulkheadd reports it now. */
static int decide_bhpolicy(const struct bh_qx_policy_ctx *ctx, const char *source, const char *target,
                           const char *service_full, struct bh_qx_decision *out, bh_error *err)
{
    if (!ctx->policy_dir) {
        snprintf(out->rule, sizeof out->rule, "(no --policy-dir: deny)");
        return 0;
    }
    _cleanup_policy_ bh_policy *own = ctx->preloaded ? NULL : bh_policy_load_dir(ctx->policy_dir);
    bh_policy *p = ctx->preloaded ? ctx->preloaded : own;
    if (!p) {
        snprintf(out->rule, sizeof out->rule, "(policy %s unreadable: deny)", ctx->policy_dir);
        return 0;
    }
    struct bh_sysinfo si;
    bh_sysinfo_init(&si);
    if (bh_sysinfo_from_admin(&si, err) < 0) {
        bh_sysinfo_free(&si);
        snprintf(out->rule, sizeof out->rule, "(no system information: deny)");
        return -1;
    }
    struct bh_policy_result r;
    memset(&r, 0, sizeof r);
    enum bh_policy_decision d = bh_policy_evaluate(p, &si, source, target, service_full, &r);
    if (r.rule_file[0])
        snprintf(out->rule, sizeof out->rule, "%.900s:%u", r.rule_file, r.rule_line);
    else
        snprintf(out->rule, sizeof out->rule, "(%.900s)", r.reason);
    if (d == BH_POLICY_ASK) {
        char answer[64] = "";
        if (ask_person(ctx, source, service_full, &r, answer, sizeof answer) == 0 && answer[0]) {
            d = bh_policy_confirm_ask(&r, &si, answer);
            snprintf(out->rule + strlen(out->rule), sizeof out->rule - strlen(out->rule),
                     " (asked: %s)", answer);
        } else {
            d = BH_POLICY_DENY;
            snprintf(out->rule + strlen(out->rule), sizeof out->rule - strlen(out->rule),
                     " (ask: no answer)");
        }
    }
    if (d == BH_POLICY_ALLOW && r.target_kind != BH_TARGET_NONE) {
        out->verdict = BH_QX_ALLOW;
        snprintf(out->target, sizeof out->target, "%s",
                 r.target_kind == BH_TARGET_ADMINVM ? "dom0" : r.target);
        if (r.target_kind == BH_TARGET_DISPVM) {
            out->dispvm = true;
            snprintf(out->dispvm_template, sizeof out->dispvm_template, "%s", r.dispvm_template);
        }
        if (r.user[0])
            snprintf(out->user, sizeof out->user, "%s", r.user);
        out->autostart = r.autostart;
    }
    bh_policy_result_free(&r);
    bh_sysinfo_free(&si);
    return 0;
}

void bh_qx_policy_preload(struct bh_qx_policy_ctx *ctx)
{
    if (ctx->policy_dir && !ctx->stub_allow && !ctx->preloaded)
        ctx->preloaded = bh_policy_load_dir(ctx->policy_dir);
}

void bh_qx_policy_refresh(struct bh_qx_policy_ctx *ctx)
{
    static struct bh_policy_cache cache;
    if (!ctx->policy_dir || ctx->stub_allow)
        return;
    bh_policy_free(ctx->preloaded);
    ctx->preloaded = bh_policy_cache_get(&cache, ctx->policy_dir);
}

int bh_qx_policy_list_allowed(const struct bh_qx_policy_ctx *ctx, const char *source, char **out, bh_error *err)
{
    *out = NULL;
    if (!ctx->preloaded)
        return bh_fail(err, ENOENT, "no policy to filter by");
    struct bh_sysinfo si _cleanup_sysinfo_;
    bh_sysinfo_init(&si);
    if (bh_sysinfo_from_admin(&si, err) < 0)
        return -1;
    size_t cap = 1, len = 0;
    for (size_t i = 0; i < si.n; i++)
        cap += strlen(si.qubes[i].name) + 1;
    char *s = malloc(cap);
    if (!s)
        return bh_fail(err, ENOMEM, "out of memory");
    s[0] = '\0';
    for (size_t i = 0; i < si.n; i++) {
        struct bh_policy_result r;
        memset(&r, 0, sizeof r);
        enum bh_policy_decision d = bh_policy_evaluate(ctx->preloaded, &si, source, si.qubes[i].name, "admin.vm.List", &r);
        bh_policy_result_free(&r);
        if (d == BH_POLICY_ALLOW)
            len += (size_t)snprintf(s + len, cap - len, "%s%s", len ? " " : "", si.qubes[i].name);
    }
    *out = s;
    return 0;
}
#else
void bh_qx_policy_preload(struct bh_qx_policy_ctx *ctx)
{
    (void)ctx;
}

void bh_qx_policy_refresh(struct bh_qx_policy_ctx *ctx)
{
    (void)ctx;
}

int bh_qx_policy_list_allowed(const struct bh_qx_policy_ctx *ctx, const char *source, char **out, bh_error *err)
{
    (void)ctx, (void)source;
    *out = NULL;
    return bh_fail(err, ENOENT, "no policy engine");
}
#endif

/* ======================================================================================
 * Without the policy engine (`bhpolicy`, src/qrexec/policy/, detected by meson): deny.
 *
 * The test stub: qrexec-daemon --test-allow FILE, one exact rule a line,
 * "SERVICE+ARG SOURCE TARGET [RESOLVED]". No wildcards, no defaults: a missing or
 * unreadable file denies everything. bulkheadd never passes it.
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
    if (!ctx->stub_allow) {
#ifdef BH_HAVE_BHPOLICY
        return decide_bhpolicy(ctx, source, target, service_full, out, err);
#else
        return 0;
#endif
    }
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
        if (!strncmp(out->target, "@dispvm:", 8)) {
            out->dispvm = true;
            snprintf(out->dispvm_template, sizeof out->dispvm_template, "%s", out->target + 8);
        }
        snprintf(out->rule, sizeof out->rule, "%s:%d (test stub)", ctx->stub_allow, lineno);
        return 0;
    }
    (void)err;
    return 0;
}
