/* Option handling shared by the two policy tools. */
#pragma once
#include <limits.h>

/* The policy directory: --policy-dir DIR, else <root>/policy.d with root from --root,
 * $BULKHEAD_ROOT, or /var/lib/bulkhead. */
static inline const char *policy_dir_from(const char *policy_dir, const char *root, char *buf,
                                          size_t n)
{
    if (policy_dir)
        return policy_dir;
    if (!root)
        root = getenv("BULKHEAD_ROOT");
    if (!root || !*root)
        root = "/var/lib/bulkhead";
    snprintf(buf, n, "%s/policy.d", root);
    return buf;
}
