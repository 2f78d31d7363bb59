/* bench-policy N [same] [ITER]: time to evaluate a call against a policy of N rules
 * whose last rule decides (the worst case for first-match), beside a plain linear
 * strcmp scan over the same rules' service strings in the same run — what a naive
 * first-match evaluator pays at least. With "same", every rule names the same service
 * and only the last one's source matches, so the service index cannot help and each
 * rule is really matched. Also the time to load the N-rule file. */
#include "policy.h"
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    bool same = argc > 2 && !strcmp(argv[2], "same");
    size_t iters = argc > 3 ? strtoul(argv[3], NULL, 10) : 0;
    if (n == 0 || n > BH_POLICY_MAX_RULES - 1)
        return 2;
    if (!iters)
        iters = n >= 10000 ? 200 : n >= 1000 ? 2000 : 20000;

    /* N rules with distinct services and varied source/target tokens; the call
     * matches only the last one. */
    size_t cap = (n + 1) * 96;
    char *text = malloc(cap), **names = malloc(n * sizeof *names);
    size_t len = 0;
    static const char *const srcs[] = { "@anyvm", "@tag:t1", "work", "@type:AppVM" };
    static const char *const tgts[] = { "@anyvm", "personal", "@dispvm", "@tag:t2" };
    for (size_t i = 0; i < n; i++) {
        char svc[48];
        snprintf(svc, sizeof svc, "bench.Service%zu", same ? n - 1 : i);
        const char *src = same && i < n - 1 ? (i % 2 ? "@tag:nomatch" : "personal") /* never the caller */
                                            : srcs[i % 4];
        char key[96];
        snprintf(key, sizeof key, "%s %s", svc, src);
        names[i] = strdup(key);
        len += (size_t)snprintf(text + len, cap - len, "%s * %s %s %s\n", svc, src, tgts[i % 4],
                                i % 3 ? "deny" : "allow");
    }
    char last[48];
    snprintf(last, sizeof last, "bench.Service%zu", n - 1);
    const char *lastkey = names[n - 1];

    struct bh_sysinfo si;
    bh_sysinfo_init(&si);
    bh_error err;
    if (bh_sysinfo_parse(&si, "work AppVM state=Running tags=t1 default_dispvm=dvm\n"
                              "personal AppVM tags=t2\ndvm AppVM template_for_dispvms=yes\n",
                         &err) < 0)
        return 2;

    double t0 = now();
    bh_policy *p = bh_policy_load_buffer("bench.policy", text, len, NULL);
    double load = now() - t0;
    if (!p || bh_policy_error_count(p)) {
        fprintf(stderr, "bench policy did not parse: %s\n", p ? bh_policy_error(p, 0) : "oom");
        return 1;
    }

    struct bh_policy_result r;
    enum bh_policy_decision d = BH_POLICY_DENY;
    t0 = now();
    for (size_t k = 0; k < iters; k++) {
        d = bh_policy_evaluate(p, &si, "work", "personal", last, &r);
        bh_policy_result_free(&r);
    }
    double eval = (now() - t0) / (double)iters;
    if (r.rule_line != n) {
        fprintf(stderr, "wrong rule decided: line %u, want %zu\n", r.rule_line, n);
        return 1;
    }

    /* the peer: find the first rule whose "service source" string equals the call's,
     * one strcmp per rule and nothing else */
    volatile size_t found = 0;
    t0 = now();
    for (size_t k = 0; k < iters; k++) {
        for (size_t i = 0; i < n; i++) {
            if (!strcmp(names[i], lastkey)) {
                found = i;
                break;
            }
        }
    }
    double scan = (now() - t0) / (double)iters;
    if (found != n - 1)
        return 1;

    printf("rules=%-7zu %-8s decision=%-5s eval=%9.2f us  strcmp-scan=%9.2f us  "
           "eval/scan=%8.3f  load=%8.2f ms\n",
           n, same ? "same" : "distinct", bh_policy_decision_name(d), eval * 1e6, scan * 1e6, scan > 0 ? eval / scan : 0.0,
           load * 1e3);
    bh_policy_free(p);
    bh_sysinfo_free(&si);
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    free(text);
    return 0;
}
