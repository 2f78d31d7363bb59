/* qrexec-policy-lint [--root DIR] [--policy-dir DIR] [FILE...]
 * Checks policy files and prints every error as "file:line: message". Without FILEs it
 * checks the whole policy directory as the qrexec daemon would read it. Exit 0 when
 * clean, 1 when there are errors, 2 on usage errors. */
#include "policy.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include "tool_common.h"

static void usage(FILE *f)
{
    fprintf(f, "usage: qrexec-policy-lint [--root DIR] [--policy-dir DIR] [FILE...]\n");
}

static int report(bh_policy *p, const char *what)
{
    if (!p) {
        fprintf(stderr, "qrexec-policy-lint: out of memory\n");
        return 1;
    }
    size_t n = bh_policy_error_count(p);
    for (size_t i = 0; i < n; i++)
        printf("%s\n", bh_policy_error(p, i));
    if (n == 0)
        fprintf(stderr, "%s: OK (%zu rules)\n", what, bh_policy_rule_count(p));
    bh_policy_free(p);
    return n ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        { "root", required_argument, NULL, 'r' },
        { "policy-dir", required_argument, NULL, 'd' },
        { "help", no_argument, NULL, 'h' },
        { 0 },
    };
    const char *root = NULL, *dir = NULL;
    for (int c; (c = getopt_long(argc, argv, "h", opts, NULL)) != -1;) {
        switch (c) {
        case 'r': root = optarg; break;
        case 'd': dir = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char buf[PATH_MAX];
    dir = policy_dir_from(dir, root, buf, sizeof buf);
    if (optind == argc)
        return report(bh_policy_load_dir(dir), dir);
    int rc = 0;
    for (int i = optind; i < argc; i++)
        rc |= report(bh_policy_load_file(argv[i], dir), argv[i]);
    return rc;
}
