/* qvm-prefs: list, get, set and reset a qube's properties. */
#include "api.h"
#include "cli.h"
#include "prefs.h"
#include "tools.h"

static const struct cli_tool tool = {
    "qvm-prefs",
    "[--verbose] [--quiet] [--help] [--help-properties] [--hide-default] [--get] [--set]\n"
    "                 [--default] VMNAME [PROPERTY] [VALUE]",
    "\npositional arguments:\n"
    "  VMNAME             a domain name\n"
    "  PROPERTY           name of the property to show or change\n"
    "  VALUE              new value of the property\n\n"
    "options:\n"
    "  --verbose, -v      increase verbosity\n"
    "  --quiet, -q        decrease verbosity\n"
    "  --help, -h         show this help message and exit\n"
    "  --help-properties  list all available properties with short descriptions and exit\n"
    "  --hide-default     Do not show properties that are set to the default value.\n"
    "  --get, -g          Ignored; for compatibility with older scripts.\n"
    "  --set, -s          Ignored; for compatibility with older scripts.\n"
    "  --default, -D      reset property to its default value\n",
};

int qvm_prefs_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, prefs_opts, &a);
    if (a.pos.n < 1)
        cli_usage_error("the following arguments are required: VMNAME");
    struct strv one = { 0 }, rest = { 0 };
    strv_push(&one, a.pos.v[0]);
    struct vmsel sel;
    vm_select(&one, false, NULL, &sel, NULL);
    for (size_t i = 1; i < a.pos.n; i++)
        strv_push(&rest, a.pos.v[i]);
    if (!sel.n)
        cli_usage_error("no such domain: %s", py_repr(a.pos.v[0]));
    return prefs_run(sel.v[sel.n - 1]->name, &a, &rest);
}
