/* qvm-shutdown: shut qubes down (admin.vm.Shutdown); with --wait, wait for them to
 * halt and kill what is still running after --timeout seconds. */
#include "cli.h"
#include "lifecycle.h"
#include "tools.h"
#include <stdlib.h>
#include <string.h>

enum { O_WAIT = 1, O_TIMEOUT, O_FORCE, O_DRY_RUN, O_ALL, O_EXCLUDE };

static const struct cli_opt opts[] = {
    { "wait", 0, CLI_FLAG, O_WAIT },
    { "timeout", 0, CLI_ARG, O_TIMEOUT },
    { "force", 0, CLI_FLAG, O_FORCE },
    { "dry-run", 0, CLI_FLAG, O_DRY_RUN },
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-shutdown",
    "[--verbose] [--quiet] [--help] [--all] [--exclude EXCLUDE] [--wait]\n"
    "                    [--timeout TIMEOUT] [--force] [--dry-run] [VMNAME ...]",
    "\nShutdown a qube\n\n"
    "positional arguments:\n  VMNAME             one or more domain names\n\n"
    "options:\n"
    "  --verbose, -v      increase verbosity\n"
    "  --quiet, -q        decrease verbosity\n"
    "  --help, -h         show this help message and exit\n"
    "  --all              perform the action on all qubes\n"
    "  --exclude EXCLUDE  exclude the qube from --all\n"
    "  --wait             wait for the VMs to shut down\n"
    "  --timeout TIMEOUT  timeout after which domains are killed when using --wait\n"
    "                     (default: 60)\n"
    "  --force            force shutdown regardless of connected domains; use with caution\n"
    "  --dry-run          don't really shutdown or kill the domains; useful with --wait\n",
};

static char *names_of(const struct vmsel *s, const bool *mask)
{
    struct strv n = { 0 };
    for (size_t i = 0; i < s->n; i++)
        if (!mask || mask[i])
            strv_push(&n, s->v[i]->name);
    return strv_join(&n, ", ");
}

static size_t not_halted(const struct vmsel *in, struct vmsel *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < in->n; i++) {
        const char *s = vm_power_state(in->v[i]);
        if (!(!strcmp(s, "Halted") || (!strcmp(in->v[i]->klass, "DispVM") && !strcmp(s, "NA"))))
            vmsel_add(out, in->v[i]);
    }
    return out->n;
}

int qvm_shutdown_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    double timeout = 60;
    if (cli_has(&a, O_TIMEOUT)) {
        const char *t = cli_get(&a, O_TIMEOUT);
        char *end;
        timeout = strtod(t, &end);
        if (!*t || *end)
            cli_usage_error("argument --timeout: invalid float value: %s", py_repr(t));
    }
    struct strv exclude = { 0 };
    cli_get_all(&a, O_EXCLUDE, &exclude);
    bool all = cli_has(&a, O_ALL), wait = cli_has(&a, O_WAIT), dry = cli_has(&a, O_DRY_RUN);
    struct vmsel doms;
    vm_args_multi(&a.pos, all, &exclude, &doms);
    /* --all shuts down in dependency-free mode: a netvm goes down with its clients. */
    bool force = cli_has(&a, O_FORCE) || (all && !exclude.n);

    /* With --wait, as Qubes: clients go down before their netvms. Each round shuts
     * down the qubes that no other selected, running qube uses as netvm, and waits for
     * them; a netvm follows in a later round. A qube that failed (in use by a qube
     * outside the selection) is retried while rounds make progress. */
    struct vmsel remaining = doms;
    for (size_t round = 0; round <= doms.n && remaining.n; round++) {
        struct vmsel wave = { 0 }, held = { 0 }, failed = { 0 }, awaiting = { 0 };
        for (size_t i = 0; i < remaining.n; i++) {
            bool used = false;
            for (size_t k = 0; wait && k < remaining.n && !used; k++) {
                const struct vm *y = remaining.v[k];
                if (y == remaining.v[i] || !vm_is_running(y))
                    continue;
                const struct prop *nv = props_find(props_all(y->name), "netvm");
                used = nv && nv->value && !strcmp(nv->value, remaining.v[i]->name);
            }
            vmsel_add(used ? &held : &wave, remaining.v[i]);
        }
        if (!wave.n) { /* a netvm loop: nothing to order by */
            wave = held;
            held = (struct vmsel){ 0 };
        }
        if (!dry) {
            for (size_t i = 0; i < wave.n; i++) {
                struct reply r;
                api_call(&r, wave.v[i]->name, "admin.vm.Shutdown", force ? "force" : NULL,
                         NULL, 0);
                if (r.ok || exc_not_started(&r))
                    continue;
                if (!wait)
                    cli_log_error(wave.v[i]->name, "Shutdown error: %s", r.exc_msg);
                vmsel_add(&failed, wave.v[i]);
            }
        }
        if (!wait) {
            if (failed.n)
                cli_runtime_error((int)failed.n, "Failed to shut down: %s", names_of(&failed, NULL));
            return 0;
        }
        for (size_t i = 0; i < wave.n; i++) {
            bool f = false;
            for (size_t k = 0; k < failed.n; k++)
                f |= failed.v[k] == wave.v[i];
            if (!f)
                vmsel_add(&awaiting, wave.v[i]);
        }
        remaining = held;
        for (size_t k = 0; k < failed.n; k++)
            vmsel_add(&remaining, failed.v[k]);
        if (!awaiting.n && !held.n)
            break;
        if (awaiting.n && !wait_for_shutdown(&awaiting, timeout) && !dry) {
            struct vmsel current;
            if (not_halted(&awaiting, &current))
                cli_log_info("app", "Killing remaining qubes: %s", names_of(&current, NULL));
            for (size_t i = 0; i < current.n; i++) {
                struct reply r;
                api_call(&r, current.v[i]->name, "admin.vm.Kill", NULL, NULL, 0);
                if (!r.ok && !exc_not_started(&r))
                    cli_runtime_error(1, "%s", r.exc_msg);
            }
        }
        /* The qubes of this round are down: they hold no netvm up any more. */
        for (size_t i = 0; i < awaiting.n; i++)
            ((struct vm *)awaiting.v[i])->state = "Halted";
    }
    struct vmsel failed;
    if (not_halted(&doms, &failed))
        cli_runtime_error((int)failed.n, "Failed to shut down: %s", names_of(&failed, NULL));
    return 0;
}
