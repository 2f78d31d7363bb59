/* Option handling shared by the two policy tools. */
#pragma once
#include "admin_client.h"
#include "cleanup.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The policy directory: --policy-dir DIR, else <root>/policy.d with root from --root
 * or $BULKHEAD_ROOT, else the policy of the bulkheadd that $BULKHEAD_SOCKET names
 * (internal.GetPolicyDir), else /var/lib/bulkhead/policy.d. */
static inline const char *policy_dir_from(const char *policy_dir, const char *root, char *buf,
                                          size_t n)
{
    if (policy_dir)
        return policy_dir;
    if (!root)
        root = getenv("BULKHEAD_ROOT");
    const char *sock = getenv("BULKHEAD_SOCKET");
    if ((!root || !*root) && sock && *sock) {
        _cleanup_reply_ struct bh_admin_reply rep = { 0 };
        bh_error err = { 0 };
        if (bh_admin_call("internal.GetPolicyDir", "", "dom0", "", 0, &rep, &err) == 0 && rep.ok &&
            strlen(rep.body) == rep.len && rep.len > 0 && rep.len < n && rep.body[0] == '/') {
            snprintf(buf, n, "%s", rep.body);
            return buf;
        }
    }
    if (!root || !*root)
        root = "/var/lib/bulkhead";
    snprintf(buf, n, "%s/policy.d", root);
    return buf;
}
