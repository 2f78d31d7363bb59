/* qvm-kill, qvm-pause, qvm-unpause: one Admin API call per selected qube. They differ
 * only in the call, the help text and how a refusal is reported, so one function
 * serves all three. */
#include "cli.h"
#include "lifecycle.h"
#include "tools.h"

enum { O_ALL = 1, O_EXCLUDE };

static const struct cli_opt opts[] = {
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { NULL, 0, 0, 0 },
};

#define USAGE "[--verbose] [--quiet] [--help] [--all] [--exclude EXCLUDE] [VMNAME ...]"
#define OPTIONS                                                                   \
    "positional arguments:\n  VMNAME             one or more domain names\n\n"   \
    "options:\n"                                                                  \
    "  --verbose, -v      increase verbosity\n"                                   \
    "  --quiet, -q        decrease verbosity\n"                                   \
    "  --help, -h         show this help message and exit\n"                      \
    "  --all              perform the action on all qubes\n"                      \
    "  --exclude EXCLUDE  exclude the qube from --all\n"

struct state_action {
    struct cli_tool tool;
    const char *method;
    bool kill; /* qvm-kill: a halted qube is not an error; messages name the qube */
};

static int run(const struct state_action *act, int argc, char **argv)
{
    cli_init(&act->tool, ERR_PRINT);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    struct strv exclude = { 0 };
    cli_get_all(&a, O_EXCLUDE, &exclude);
    struct vmsel sel;
    vm_args_multi(&a.pos, cli_has(&a, O_ALL), &exclude, &sel);
    int rc = 0;
    for (size_t i = 0; i < sel.n; i++) {
        struct reply r;
        api_call(&r, sel.v[i]->name, act->method, NULL, NULL, 0);
        if (r.ok || (act->kill && exc_not_started(&r)))
            continue;
        if (act->kill)
            cli_print_error("Failed to kill '%s': %s", sel.v[i]->name, r.exc_msg);
        else
            cli_print_error("%s", r.exc_msg);
        rc = 1;
    }
    return rc;
}

static const struct state_action kill_action = {
    { "qvm-kill", USAGE, "\nforceful shutdown of a domain\n\n" OPTIONS }, "admin.vm.Kill", true,
};
static const struct state_action pause_action = {
    { "qvm-pause", USAGE, "\npause a domain\n\n" OPTIONS }, "admin.vm.Pause", false,
};
static const struct state_action unpause_action = {
    { "qvm-unpause", USAGE, "\nunpause a domain\n\n" OPTIONS }, "admin.vm.Unpause", false,
};

int qvm_kill_main(int argc, char **argv) { return run(&kill_action, argc, argv); }
int qvm_pause_main(int argc, char **argv) { return run(&pause_action, argc, argv); }
int qvm_unpause_main(int argc, char **argv) { return run(&unpause_action, argc, argv); }
