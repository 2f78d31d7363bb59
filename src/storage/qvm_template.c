/* qvm-template: builds templates into a pool of the Bulkhead root, offline from the
 * host (`host`) or with debootstrap (`debian`), and lists the built ones.
 *   qvm-template [--root DIR] [--pool P] build host NAME [--root-size SIZE]
 *   qvm-template [--root DIR] [--pool P] build debian NAME [--suite S] [--mirror URL] [--root-size SIZE]
 *   qvm-template [--root DIR] [--pool P] list
 * A built template is adopted by bulkheadd when a TemplateVM of that name is created
 * (qvm-create --class TemplateVM NAME --label black). */
#include "storage.h"
#include "admin_client.h"
#include "cleanup.h"
#include "log.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: qvm-template [--root DIR] [--pool P] build host NAME [--root-size SIZE]\n"
                    "       qvm-template [--root DIR] [--pool P] build debian NAME [--suite S] [--mirror URL]"
                    " [--root-size SIZE]\n"
                    "       qvm-template [--root DIR] [--pool P] list\n");
    exit(2);
}

struct progress {
    bool tty;
    char phase[16];
    unsigned count;
};

/* Bytes from the network (package names, mirror messages) reach the user's terminal:
 * printable ASCII only, so no escape sequence gets through. */
static void sanitize(char *s)
{
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || (unsigned char)*s > 0x7e)
            *s = '?';
}

static void show_progress(const char *line, void *vctx)
{
    struct progress *p = vctx;
    static const struct {
        const char *prefix, *phase;
    } steps[] = {
        { "I: Retrieving ", "download" }, { "I: Extracting ", "extract" },
        { "I: Unpacking ", "unpack" },    { "I: Configuring ", "configure" },
    };
    char buf[200];
    snprintf(buf, sizeof buf, "%s", line);
    sanitize(buf);
    for (size_t i = 0; i < sizeof steps / sizeof steps[0]; i++) {
        size_t n = strlen(steps[i].prefix);
        if (strncmp(buf, steps[i].prefix, n))
            continue;
        if (strcmp(p->phase, steps[i].phase)) {
            if (p->tty && p->phase[0])
                fputc('\n', stderr);
            snprintf(p->phase, sizeof p->phase, "%s", steps[i].phase);
            p->count = 0;
        }
        p->count++;
        if (p->tty)
            fprintf(stderr, "\r\033[K[%s %u] %.60s", p->phase, p->count, buf + n);
        else if (p->count == 1 || p->count % 25 == 0)
            fprintf(stderr, "[%s %u] %s\n", p->phase, p->count, buf + n);
        return;
    }
    if (!strncmp(buf, "I: Validating", 13) || !buf[0])
        return;
    if (p->tty && p->phase[0])
        fputc('\n', stderr);
    p->phase[0] = '\0';
    fprintf(stderr, "%s\n", buf);
}

/* A built template becomes a qube when bulkheadd uses this very pool (its pool's
 * dir_path is ours): then admin.vm.Create.TemplateVM adopts the volumes just built.
 * Otherwise say how to register it. */
static void register_template(struct bh_pool *p, const char *name)
{
    bh_error err = { 0 };
    _cleanup_reply_ struct bh_admin_reply info = { 0 };
    _cleanup_reply_ struct bh_admin_reply made = { 0 };
    char want[4200];
    snprintf(want, sizeof want, "dir_path=%s\n", bh_pool_path(p));
    bool same = bh_admin_call("admin.pool.Info", "default", "dom0", "", 0, &info, &err) == 0 && info.ok &&
                info.body && strstr(info.body, want);
    if (!same) {
        printf("register it with: qvm-create --class TemplateVM --label black %s\n", name);
        return;
    }
    char payload[128];
    int n = snprintf(payload, sizeof payload, "name=%s label=black", name);
    if (bh_admin_call("admin.vm.Create.TemplateVM", "", "dom0", payload, (size_t)n, &made, &err) < 0)
        printf("register it with: qvm-create --class TemplateVM --label black %s\n", name);
    else if (made.ok)
        printf("registered template %s with bulkheadd\n", name);
    else if (!made.exc_type || strcmp(made.exc_type, "QubesVMAlreadyExistsError") != 0)
        fprintf(stderr, "qvm-template: registering %s: %s\n", name, made.exc_msg ? made.exc_msg : "?");
}

int main(int argc, char **argv)
{
    bh_log_init("qvm-template");
    const char *root = getenv("BULKHEAD_ROOT"), *pool = "default", *suite = NULL, *mirror = NULL;
    uint64_t root_size = 0; /* default: BH_ROOT_DEFAULT_SIZE */
    if (!root || !*root)
        root = "/var/lib/bulkhead";
    static const struct option opts[] = {
        { "root", required_argument, NULL, 'r' },  { "pool", required_argument, NULL, 'p' },
        { "suite", required_argument, NULL, 's' }, { "mirror", required_argument, NULL, 'm' },
        { "root-size", required_argument, NULL, 'z' },
        { "help", no_argument, NULL, 'h' },        { NULL, 0, NULL, 0 },
    };
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'r': root = optarg; break;
        case 'p': pool = optarg; break;
        case 's': suite = optarg; break;
        case 'm': mirror = optarg; break;
        case 'z':
            if (bh_size_parse(optarg, &root_size) < 0 || root_size < BH_VOLUME_MIN_SIZE) {
                fprintf(stderr, "qvm-template: invalid --root-size %s\n", optarg);
                return 2;
            }
            break;
        default: usage();
        }
    }
    int na = argc - optind;
    char **a = argv + optind;
    if (na < 1)
        usage();
    bool list = !strcmp(a[0], "list") && na == 1;
    bool build = !strcmp(a[0], "build") && na == 3 && (!strcmp(a[1], "host") || !strcmp(a[1], "debian"));
    if (!list && !build)
        usage();
    if (build && !strcmp(a[1], "host") && (suite || mirror))
        usage();
    bh_error err = { 0 };
    struct bh_pool *p = bh_pool_open(root, pool, &err);
    if (!p) {
        fprintf(stderr, "qvm-template: %s\n", err.msg);
        return 1;
    }
    int r;
    if (list) {
        char *out = NULL;
        r = bh_template_list(p, &out, &err);
        if (r == 0) {
            printf("%-31s %-18s %-10s %s\n", "NAME", "ORIGIN", "STATE", "USAGE");
            for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
                char name[64], origin[64], state[16];
                unsigned long long usage;
                if (sscanf(line, "%63s %63s %15s %llu", name, origin, state, &usage) == 4)
                    printf("%-31s %-18s %-10s %.1f MiB\n", name, origin, state, usage / 1048576.0);
            }
        }
        free(out);
    } else if (!strcmp(a[1], "host")) {
        r = bh_template_build_host(p, a[2], root_size, &err);
        if (r == 0) {
            printf("built template %s (host) in %s\n", a[2], bh_pool_path(p));
            register_template(p, a[2]);
        }
    } else {
        struct progress pr = { .tty = isatty(2) };
        r = bh_template_build_debian(p, a[2], suite, mirror, root_size, show_progress, &pr, &err);
        if (pr.tty && pr.phase[0])
            fputc('\n', stderr);
        if (r == 0) {
            printf("built template %s (debian %s) in %s\n", a[2], suite ? suite : "bookworm", bh_pool_path(p));
            register_template(p, a[2]);
        }
    }
    bh_pool_close(p);
    if (r < 0) {
        sanitize(err.msg);
        fprintf(stderr, "qvm-template: %s\n", err.msg);
        return 1;
    }
    return 0;
}
