/* qvm: one program, many names. Installed as qvm-ls, qvm-prefs, ... (links to this
 * binary); `qvm TOOL ARGS...` works too. */
#include "tools.h"
#include <stdio.h>
#include <string.h>

static const struct {
    const char *name;
    int (*main)(int, char **);
} tools[] = {
    { "qvm-ls", qvm_ls_main },
    { "qvm-create", qvm_create_main },
    { "qvm-prefs", qvm_prefs_main },
    { "qubes-prefs", qubes_prefs_main },
    { "qvm-remove", qvm_remove_main },
    { "qvm-clone", qvm_clone_main },
    { "qvm-tags", qvm_tags_main },
    { "qvm-device", qvm_device_main },
    { "qvm-block", qvm_device_main },
    { "qvm-pci", qvm_device_main },
    { "qvm-features", qvm_features_main },
    { "qvm-service", qvm_service_main },
    { "qvm-check", qvm_check_main },
    { "qvm-firewall", qvm_firewall_main },
    { "qvm-volume", qvm_volume_main },
    { "qvm-pool", qvm_pool_main },
    { "qvm-label", qvm_label_main },
    { "qvm-start", qvm_start_main },
    { "qvm-shutdown", qvm_shutdown_main },
    { "qvm-kill", qvm_kill_main },
    { "qvm-pause", qvm_pause_main },
    { "qvm-unpause", qvm_unpause_main },
};

static int run(const char *name, int argc, char **argv)
{
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
        if (!strcmp(tools[i].name, name)) {
            int rc = tools[i].main(argc, argv);
            fflush(stdout);
            return rc;
        }
    return -1;
}

static void list_tools(FILE *f)
{
    fputs("usage: qvm TOOL [ARGS...]   (or call this program by a tool's name)\ntools:", f);
    for (size_t i = 0; i < sizeof tools / sizeof tools[0]; i++)
        fprintf(f, " %s", tools[i].name);
    fputc('\n', f);
}

int main(int argc, char **argv)
{
    const char *base = strrchr(argv[0], '/');
    base = base ? base + 1 : argv[0];
    int rc = run(base, argc, argv);
    if (rc >= 0)
        return rc;
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        list_tools(stdout);
        return 0;
    }
    if (argc >= 2) {
        /* "qvm ls" and "qvm qvm-ls" both name qvm-ls. */
        char name[64];
        snprintf(name, sizeof name, "%s%s", strchr(argv[1], '-') ? "" : "qvm-", argv[1]);
        argv[1] = name;
        rc = run(name, argc - 1, argv + 1);
        if (rc >= 0)
            return rc;
    }
    list_tools(stderr);
    return 2;
}
