/* The property tool shared by qvm-prefs (a qube's properties) and qubes-prefs (global
 * properties): Qubes' process_actions(). */
#pragma once
#include "cli.h"

enum { PO_HELP_PROPERTIES = 100, PO_HIDE_DEFAULT, PO_GET, PO_SET, PO_DEFAULT };
extern const struct cli_opt prefs_opts[];

/* vm NULL = global properties. pos holds PROPERTY [VALUE]. Returns the exit code. */
int prefs_run(const char *vm, const struct cli_args *a, const struct strv *pos);
