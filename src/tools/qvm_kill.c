/* qvm-kill: stop qubes at once (admin.vm.Kill). */
#include "cli.h"
#include "lifecycle.h"
#include "tools.h"

enum { O_ALL = 1, O_EXCLUDE };

static const struct cli_opt opts[] = {
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-kill",
    "[--verbose] [--quiet] [--help] [--all] [--exclude EXCLUDE] [VMNAME ...]",
    "\nforceful shutdown of a domain\n\n"
    "positional arguments:\n  VMNAME             one or more domain names\n\n"
    "options:\n"
    "  --verbose, -v      increase verbosity\n"
    "  --quiet, -q        decrease verbosity\n"
    "  --help, -h         show this help message and exit\n"
    "  --all              perform the action on all qubes\n"
    "  --exclude EXCLUDE  exclude the qube from --all\n",
};

int qvm_kill_main(int argc, char **argv)
{
    cli_init(&tool, ERR_PRINT);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    struct strv exclude = { 0 };
    cli_get_all(&a, O_EXCLUDE, &exclude);
    struct vmsel sel;
    vm_args_multi(&a.pos, cli_has(&a, O_ALL), &exclude, &sel);
    int rc = 0;
    for (size_t i = 0; i < sel.n; i++) {
        struct reply r;
        api_call(&r, sel.v[i]->name, "admin.vm.Kill", NULL, NULL, 0);
        if (!r.ok && !exc_not_started(&r)) {
            cli_print_error("Failed to kill '%s': %s", sel.v[i]->name, r.exc_msg);
            rc = 1;
        }
    }
    return rc;
}
