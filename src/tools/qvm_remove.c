/* qvm-remove: remove qubes (admin.vm.Remove), asking first unless --force. */
#include "api.h"
#include "cli.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>

enum { O_FORCE = 1, O_ALL, O_EXCLUDE };

static const struct cli_opt opts[] = {
    { "force", 'f', CLI_FLAG, O_FORCE },
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-remove",
    "[--verbose] [--quiet] [--help] [--all] [--exclude EXCLUDE] [--force]\n"
    "                  [VMNAME ...]",
    "\nRemove domains from the system\n\n"
    "positional arguments:\n  VMNAME             one or more domain names\n\n"
    "options:\n"
    "  --verbose, -v      increase verbosity\n"
    "  --quiet, -q        decrease verbosity\n"
    "  --help, -h         show this help message and exit\n"
    "  --all              perform the action on all qubes\n"
    "  --exclude EXCLUDE  exclude the qube from --all\n"
    "  --force, -f        Do not prompt for confirmation\n",
};

int qvm_remove_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    struct strv exclude = { 0 };
    cli_get_all(&a, O_EXCLUDE, &exclude);
    struct vmsel sel;
    vm_args_multi(&a.pos, cli_has(&a, O_ALL), &exclude, &sel);

    bool go = cli_has(&a, O_FORCE);
    if (!go) {
        printf("This will completely remove the selected VM(s)...\n");
        for (size_t i = 0; i < sel.n; i++)
            printf("  %s\n", sel.v[i]->name);
        printf("Are you sure? [y/N] ");
        fflush(stdout);
        char line[64] = "";
        if (!fgets(line, sizeof line, stdin)) {
            /* Python's input() at EOF raises EOFError; nothing is removed. */
            putchar('\n');
            return 1;
        }
        line[strcspn(line, "\n")] = '\0';
        go = !strcmp(line, "y") || !strcmp(line, "Y");
    }
    if (!go) {
        printf("Remove cancelled.\n");
        return 1;
    }
    for (size_t i = 0; i < sel.n; i++) {
        struct reply r;
        api_call(&r, sel.v[i]->name, "admin.vm.Remove", NULL, NULL, 0);
        if (!r.ok)
            cli_runtime_error(1, "%s", r.exc_msg);
    }
    return 0;
}
