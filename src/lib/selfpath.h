/* Finding our own files relative to the running program, so that the same binary works
 * from the build tree and from an installed prefix; and other programs on $PATH. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

/* Tries <dir of /proc/self/exe>/<rel>/<name> for each rel in rels (NULL-terminated);
 * the first that passes access(amode) is written, resolved, into out. 0 or -1. */
int bh_find_near_self(const char *const *rels, const char *name, int amode, char *out, size_t n);

/* The first executable `name` in $PATH's directories (/usr/local/bin:/usr/bin:/bin if
 * unset or empty), written into out. */
bool bh_find_in_path(const char *name, char *out, size_t size);
