/* qvm-features: list, get, set and unset a qube's features. */
#include "api.h"
#include "cli.h"
#include "table.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>

enum { O_UNSET = 1, O_CHECK_TEMPLATE };

static const struct cli_opt opts[] = {
    { "unset", 'D', CLI_FLAG, O_UNSET },
    { "default", 0, CLI_FLAG, O_UNSET },
    { "delete", 0, CLI_FLAG, O_UNSET },
    /* Bulkhead extension: admin.vm.feature.CheckWithTemplate (value from the qube, else
     * from its template), what Qubes' services consult for template-provided features. */
    { "check-with-template", 0, CLI_FLAG, O_CHECK_TEMPLATE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-features",
    "[--verbose] [--quiet] [--help] [--unset] [--check-with-template]\n"
    "                    VMNAME [FEATURE] [VALUE]",
    "\nmanage domain's features\n\n"
    "positional arguments:\n"
    "  VMNAME                a domain name\n"
    "  FEATURE               name of the feature\n"
    "  VALUE                 new value of the feature\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --unset, --default, --delete, -D\n"
    "                        unset the feature\n"
    "  --check-with-template\n"
    "                        get the feature's value from the qube or, if unset there,\n"
    "                        from its template (Bulkhead extension)\n",
};

int qvm_features_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    const struct vm *vm = vm_arg(&a.pos);
    cli_at_most(&a.pos, 3);
    const char *feature = a.pos.n > 1 ? a.pos.v[1] : NULL;
    const char *value = a.pos.n > 2 ? a.pos.v[2] : NULL;
    bool unset = cli_has(&a, O_UNSET);
    struct reply r;

    if (!feature) {
        if (unset)
            cli_usage_error("--unset requires a feature");
        struct strv names = { 0 };
        strv_split_lines(&names, api_must(vm->name, "admin.vm.feature.List", NULL, NULL, 0));
        struct table t;
        table_init(&t, 2);
        for (size_t i = 0; i < names.n; i++) {
            api_call(&r, vm->name, "admin.vm.feature.Get", names.v[i], NULL, 0);
            if (!r.ok)
                cli_runtime_error(1, "%s", r.exc_msg);
            const char *row[2] = { names.v[i], r.body };
            table_add(&t, row, 2);
        }
        table_print(&t, stdout);
        return 0;
    }
    if (unset) {
        if (value)
            cli_usage_error("cannot both set and unset a value");
        api_call(&r, vm->name, "admin.vm.feature.Remove", feature, NULL, 0);
        if (!r.ok && !exc_is_keyerror(&r))
            cli_runtime_error(1, "%s", r.exc_msg);
        return 0;
    }
    if (!value) {
        api_call(&r, vm->name,
                 cli_has(&a, O_CHECK_TEMPLATE) ? "admin.vm.feature.CheckWithTemplate"
                                                : "admin.vm.feature.Get",
                 feature, NULL, 0);
        if (exc_is_keyerror(&r))
            return 1;
        if (!r.ok)
            cli_runtime_error(1, "%s", r.exc_msg);
        printf("%s\n", r.body);
        return 0;
    }
    api_call(&r, vm->name, "admin.vm.feature.Set", feature, value, strlen(value));
    if (!r.ok)
        cli_runtime_error(1, "%s", r.exc_msg);
    return 0;
}
