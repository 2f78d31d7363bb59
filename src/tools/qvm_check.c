/* qvm-check: exit status tells whether qubes exist, run, are paused, are templates or
 * are networked. 0 = all match, 1 = none (or a qube does not exist), 3 = some. */
#include "api.h"
#include "cli.h"
#include "tools.h"
#include <string.h>

enum { O_RUNNING = 1, O_PAUSED, O_TEMPLATE, O_NETWORKED, O_ALL, O_EXCLUDE };

static const struct cli_opt opts[] = {
    { "running", 0, CLI_FLAG, O_RUNNING },
    { "paused", 0, CLI_FLAG, O_PAUSED },
    { "template", 0, CLI_FLAG, O_TEMPLATE },
    { "networked", 0, CLI_FLAG, O_NETWORKED },
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-check",
    "[--verbose] [--quiet] [--help] [--all] [--exclude EXCLUDE] [--running] [--paused]\n"
    "                 [--template] [--networked] [VMNAME ...]",
    "\nExits sucessfull if the provided domain(s) exist, else returns failure\n\n"
    "positional arguments:\n  VMNAME             one or more domain names\n\n"
    "options:\n"
    "  --verbose, -v      increase verbosity\n"
    "  --quiet, -q        decrease verbosity\n"
    "  --help, -h         show this help message and exit\n"
    "  --all              perform the action on all qubes\n"
    "  --exclude EXCLUDE  exclude the qube from --all\n"
    "  --running          Determine if (any of given) VM is running\n"
    "  --paused           Determine if (any of given) VM is paused\n"
    "  --template         Determine if (any of given) VM is a template\n"
    "  --networked        Determine if (any of given) VM can reach network\n",
};

static bool is_networked(const struct vm *vm)
{
    if (!strcmp(vm->klass, "AdminVM"))
        return false;
    const struct props *ps = props_all(vm->name);
    const struct prop *pn = props_find(ps, "provides_network");
    if (pn && !strcmp(pn->value, "True"))
        return true;
    const struct prop *netvm = props_find(ps, "netvm");
    return netvm && *netvm->value;
}

static bool check(const struct vm *vm, int id)
{
    switch (id) {
    case O_RUNNING:
        return vm_is_running(vm);
    case O_PAUSED:
        return vm_is_paused(vm);
    case O_TEMPLATE:
        return !strcmp(vm->klass, "TemplateVM");
    default:
        return is_networked(vm);
    }
}

int qvm_check_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    struct strv exclude = { 0 }, missing = { 0 };
    cli_get_all(&a, O_EXCLUDE, &exclude);
    bool all = cli_has(&a, O_ALL);
    if (all && a.pos.n)
        cli_usage_error("argument VMNAME: not allowed with argument --all");
    if (!all && !a.pos.n)
        cli_usage_error("one of the arguments --all VMNAME is required");
    struct vmsel doms;
    vm_select(&a.pos, all, &exclude, &doms, &missing);
    strv_sort(&missing);

    static const struct { int id; const char *status; } filters[] = {
        { O_RUNNING, "running" }, { O_PAUSED, "paused" }, { O_TEMPLATE, "template" },
        { O_NETWORKED, "networked" },
    };
    struct strv status = { 0 };
    bool *match = qt_alloc((doms.n + 1) * sizeof *match);
    for (size_t i = 0; i < doms.n; i++)
        match[i] = true;
    for (size_t f = 0; f < 4; f++) {
        if (!cli_has(&a, filters[f].id))
            continue;
        strv_push(&status, filters[f].status);
        for (size_t i = 0; i < doms.n; i++)
            if (match[i] && !check(doms.v[i], filters[f].id))
                match[i] = false;
    }
    int rc = 0;
    size_t nmatch = 0;
    for (size_t i = 0; i < doms.n; i++)
        nmatch += match[i];
    if (status.n) {
        if (nmatch != doms.n)
            rc = nmatch ? 3 : 1;
        const char *what = strv_join(&status, ", ");
        if (!nmatch)
            cli_log_info("qvm-check", "None of qubes: %s", what);
        struct strv names = { 0 };
        for (size_t i = 0; i < doms.n; i++)
            if (match[i])
                strv_push(&names, doms.v[i]->name);
        strv_sort(&names);
        for (size_t i = 0; i < names.n; i++)
            cli_log_info("qvm-check", "%s: %s", names.v[i], what);
    } else {
        if (!doms.n)
            rc = 1;
        struct strv names = { 0 };
        for (size_t i = 0; i < doms.n; i++)
            strv_push(&names, doms.v[i]->name);
        strv_sort(&names);
        for (size_t i = 0; i < names.n; i++)
            cli_log_info("qvm-check", "%s: exists", names.v[i]);
    }
    if (missing.n) {
        for (size_t i = 0; i < missing.n; i++)
            cli_log_error("qvm-check", "%s: non-existent!", missing.v[i]);
        rc = 1;
    }
    return rc;
}
