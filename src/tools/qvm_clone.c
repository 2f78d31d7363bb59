/* qvm-clone: copy a qube under a new name (see clone.c). */
#include "api.h"
#include "cli.h"
#include "clone.h"
#include "tools.h"
#include <string.h>

enum { O_CLASS = 1, O_ONE_POOL, O_POOL };

static const struct cli_opt opts[] = {
    { "class", 'C', CLI_ARG, O_CLASS },
    { "", 'P', CLI_ARG, O_ONE_POOL },
    { "pool", 'p', CLI_ARG, O_POOL },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-clone",
    "[--verbose] [--quiet] [--help] [--class CLS]\n"
    "                 [-P POOL | --pool VOLUME=POOL] VMNAME NEWVM",
    "\nClone a domain\n\n"
    "positional arguments:\n"
    "  VMNAME                a domain name\n"
    "  NEWVM                 name of the domain to create\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --class CLS, -C CLS   specify the class of the new domain (default: same as source)\n"
    "  -P POOL               pool to use for the new domain\n"
    "  --pool VOLUME=POOL, -p VOLUME=POOL\n"
    "                        specify the pool to use for the specific volume\n",
};

int qvm_clone_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    if (cli_has(&a, O_ONE_POOL) && cli_has(&a, O_POOL))
        cli_usage_error("argument --pool/-p: not allowed with argument -P");
    if (a.pos.n < 2)
        cli_usage_error("the following arguments are required: %s",
                        a.pos.n ? "NEWVM" : "VMNAME, NEWVM");
    cli_at_most(&a.pos, 2);
    const struct vm *src = vm_arg(&a.pos);
    struct clone_opts co = { .new_class = cli_get(&a, O_CLASS), .pool = cli_get(&a, O_ONE_POOL) };
    struct strv pool_args = { 0 };
    cli_get_all(&a, O_POOL, &pool_args);
    for (size_t i = 0; i < pool_args.n; i++) {
        const char *eq = strchr(pool_args.v[i], '=');
        if (!eq || strchr(eq + 1, '='))
            cli_usage_error("Pool argument must be of form: -P volume_name=pool_name");
        strv_push(&co.pools, pool_args.v[i]);
    }
    strv_sort(&co.pools);
    const char *why;
    if (!clone_vm(src->name, a.pos.v[1], &co, &why))
        cli_runtime_error(1, "%s", why);
    return 0;
}
