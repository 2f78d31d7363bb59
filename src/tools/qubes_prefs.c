/* qubes-prefs: list, get, set and reset global properties (default_netvm, ...). */
#include "cli.h"
#include "prefs.h"
#include "tools.h"

static const struct cli_tool tool = {
    "qubes-prefs",
    "[--verbose] [--quiet] [--help] [--help-properties] [--hide-default] [--get] [--set]\n"
    "                   [--default] [PROPERTY] [VALUE]",
    "\npositional arguments:\n"
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

int qubes_prefs_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, prefs_opts, &a);
    return prefs_run(NULL, &a, &a.pos);
}
