/* qvm-service: a qube's services, which are the features named "service.NAME". */
#include "api.h"
#include "cli.h"
#include "table.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>
#include <strings.h>

enum { O_UNSET = 1, O_LIST, O_ENABLE, O_DISABLE };

static const struct cli_opt opts[] = {
    { "unset", 'D', CLI_FLAG, O_UNSET },
    { "default", 0, CLI_FLAG, O_UNSET },
    { "delete", 0, CLI_FLAG, O_UNSET },
    { "list", 'l', CLI_FLAG, O_LIST },
    { "enable", 'e', CLI_FLAG, O_ENABLE },
    { "disable", 'd', CLI_FLAG, O_DISABLE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-service",
    "[--verbose] [--quiet] [--help] [--unset] [--list] [--enable] [--disable]\n"
    "                   VMNAME [SERVICE] [VALUE]",
    "\nmanage domain's services\n\n"
    "positional arguments:\n"
    "  VMNAME                a domain name\n"
    "  SERVICE               name of the feature\n"
    "  VALUE                 new value of the service (on/off)\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --unset, --default, --delete, -D\n"
    "                        unset service (default to VM preference)\n"
    "  --list, -l            list services (default action)\n"
    "  --enable, -e          enable service (same as setting \"on\" value)\n"
    "  --disable, -d         disable service (same as setting \"off\" value)\n",
};

/* Qubes' parse_bool: 0/no/false/off and 1/yes/true/on, case-insensitive. */
static int parse_bool(const char *v)
{
    static const char *const no[] = { "0", "no", "false", "off", NULL };
    static const char *const yes[] = { "1", "yes", "true", "on", NULL };
    for (size_t i = 0; no[i]; i++)
        if (!strcasecmp(v, no[i]))
            return 0;
    for (size_t i = 0; yes[i]; i++)
        if (!strcasecmp(v, yes[i]))
            return 1;
    return -1;
}

int qvm_service_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    const struct vm *vm = vm_arg(&a.pos);
    cli_at_most(&a.pos, 3);
    const char *service = a.pos.n > 1 ? a.pos.v[1] : NULL;
    const char *value = a.pos.n > 2 ? a.pos.v[2] : NULL;
    /* --enable/--disable store into VALUE like a positional would (last one wins). */
    for (size_t i = 0; i < a.nopts; i++) {
        if (a.opts[i].id == O_ENABLE)
            value = "1";
        else if (a.opts[i].id == O_DISABLE)
            value = "0";
    }
    bool unset = cli_has(&a, O_UNSET);
    struct reply r;

    if (!service) {
        if (unset)
            cli_usage_error("--unset requires a feature");
        struct strv names = { 0 };
        strv_split_lines(&names, api_must(vm->name, "admin.vm.feature.List", NULL, NULL, 0));
        struct table t;
        table_init(&t, 2);
        for (size_t i = 0; i < names.n; i++) {
            if (!str_startswith(names.v[i], "service."))
                continue;
            api_call(&r, vm->name, "admin.vm.feature.Get", names.v[i], NULL, 0);
            if (!r.ok)
                cli_runtime_error(1, "%s", r.exc_msg);
            /* Any non-empty value is true, as in Qubes (even "0" set by hand). */
            const char *row[2] = { names.v[i] + 8, *r.body ? "on" : "off" };
            table_add(&t, row, 2);
        }
        table_print(&t, stdout);
        return 0;
    }
    const char *feature = qt_printf("service.%s", service);
    if (unset) {
        if (value)
            cli_usage_error("cannot both set and unset a value");
        api_call(&r, vm->name, "admin.vm.feature.Remove", feature, NULL, 0);
        if (!r.ok && !exc_is_keyerror(&r))
            cli_runtime_error(1, "%s", r.exc_msg);
        return 0;
    }
    if (value) {
        int b = parse_bool(value);
        if (b < 0)
            cli_runtime_error(1, "Invalid literal for boolean value: %s", py_repr(value));
        api_call(&r, vm->name, "admin.vm.feature.Set", feature, b ? "1" : "", b ? 1 : 0);
        if (!r.ok)
            cli_runtime_error(1, "%s", r.exc_msg);
        return 0;
    }
    api_call(&r, vm->name, "admin.vm.feature.Get", feature, NULL, 0);
    if (exc_is_keyerror(&r))
        return 1;
    if (!r.ok)
        cli_runtime_error(1, "%s", r.exc_msg);
    puts(*r.body ? "on" : "off");
    return 0;
}
