/* Qubes' naming rules, shared by every component that takes a qube name. */
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define BH_NAME_MAX 31

/* Checks a qube name as Qubes does; on failure returns false and, if why is non-NULL,
 * points it at Qubes' message. */
bool bh_qube_name_valid(const char *name, const char **why);
/* Names of labels, tags, features, properties: [A-Za-z0-9_.-] (tags/features also allow
 * leading digits); length limited. */
bool bh_ident_valid(const char *s, size_t max);
