/* qrexec-policy-test [--root DIR] [--policy-dir DIR] [--system-info FILE]
 *                    SOURCE TARGET SERVICE[+ARG]
 * Answers "what would policy do with this call, and which rule decides?". Prints
 *   decision: allow|deny|ask
 *   target: NAME | @dispvm:TEMPLATE | -        (ask: - until someone chooses)
 *   rule: FILE:LINE | -
 *   reason: ...
 * and for ask "choices:" and "default:", plus "user:", "notify:", "autostart:".
 * The qubes come from bulkheadd (Admin API, $BULKHEAD_SOCKET) unless --system-info
 * names a file (format in docs/policy.md). Exit 0 allow, 1 deny, 2 ask, 125 error. */
#include "policy.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include "tool_common.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: qrexec-policy-test [--root DIR] [--policy-dir DIR] [--system-info FILE] "
               "SOURCE TARGET SERVICE[+ARG]\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "root", required_argument, NULL, 'r' },
        { "policy-dir", required_argument, NULL, 'd' },
        { "system-info", required_argument, NULL, 's' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    const char *root = NULL, *dir = NULL, *sifile = NULL;
    for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        switch (c) {
        case 'r': root = optarg; break;
        case 'd': dir = optarg; break;
        case 's': sifile = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 125;
        }
    }
    if (argc - optind != 3) {
        usage(stderr);
        return 125;
    }
    char buf[PATH_MAX];
    dir = policy_dir_from(dir, root, buf, sizeof buf);

    _cleanup_sysinfo_ struct bh_sysinfo si;
    bh_sysinfo_init(&si);
    bh_error err = { 0 };
    if ((sifile ? bh_sysinfo_load_file(&si, sifile, &err) : bh_sysinfo_from_admin(&si, &err)) < 0) {
        fprintf(stderr, "qrexec-policy-test: system info: %s\n", err.msg);
        return 125;
    }
    _cleanup_policy_ bh_policy *p = bh_policy_load_dir(dir);
    if (!p) {
        fprintf(stderr, "qrexec-policy-test: out of memory\n");
        return 125;
    }
    for (size_t i = 0; i < bh_policy_error_count(p); i++)
        fprintf(stderr, "policy error: %s\n", bh_policy_error(p, i));

    struct bh_policy_result r;
    enum bh_policy_decision d =
        bh_policy_evaluate(p, &si, argv[optind], argv[optind + 1], argv[optind + 2], &r);
    printf("decision: %s\n", bh_policy_decision_name(d));
    printf("target: %s\n", r.target[0] ? r.target : "-");
    if (r.rule_file[0] && r.rule_line)
        printf("rule: %s:%u\n", r.rule_file, r.rule_line);
    else if (r.rule_file[0])
        printf("rule: %s\n", r.rule_file);
    else
        printf("rule: -\n");
    if (d == BH_POLICY_ASK) {
        printf("choices:");
        for (size_t i = 0; i < r.n_choices; i++)
            printf(" %s", r.choices[i]);
        printf("\ndefault: %s\n", r.default_target[0] ? r.default_target : "-");
    }
    if (d != BH_POLICY_DENY)
        printf("user: %s\nautostart: %s\n", r.user[0] ? r.user : "-", r.autostart ? "yes" : "no");
    printf("notify: %s\n", r.notify ? "yes" : "no");
    printf("reason: %s\n", r.reason);
    bh_policy_result_free(&r);
    return d == BH_POLICY_ALLOW ? 0 : d == BH_POLICY_ASK ? 2 : 1;
}
