#pragma once
#include "err.h"
/* Gives a new root its policy directory: <root>/policy.d with Bulkhead's default
 * policy (data/policy.d), copied once; an existing policy.d is the user's and is never
 * touched. The defaults are found in $BULKHEAD_DATADIR, next to the source tree of a
 * build, or under the installed share/bulkhead. */
int bh_policy_install_defaults(const char *root, bh_error *err);
