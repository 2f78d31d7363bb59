/* Checking a FUSE mount request (fusemount.h). The broker runs in a qube's namespaces
 * and parses what the qube's root sent: fixed size, every byte checked. */
#include "fusemount.h"
#include <string.h>

static int field_ok(const char *s, size_t cap, int need)
{
    const char *end = memchr(s, '\0', cap);
    if (!end || (need && end == s))
        return -1;
    for (const char *p = s; p < end; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("._+:@/-", c)))
            return -1;
    }
    for (const char *p = end; p < s + cap; p++) /* nothing hidden after the terminator */
        if (*p)
            return -1;
    return 0;
}

int bh_fusemount_req_check(const void *buf, size_t len, struct bh_fusemount_req *out)
{
    if (len != sizeof *out)
        return -1;
    memcpy(out, buf, sizeof *out);
    if (out->op != 'M' && out->op != 'U')
        return -1;
    if (out->pad[0] || out->pad[1] || out->pad[2] || (out->flags & ~(uint32_t)BH_FUSEMOUNT_FLAGS))
        return -1;
    if (field_ok(out->subtype, sizeof out->subtype, 0) < 0 ||
        field_ok(out->source, sizeof out->source, out->op == 'M') < 0)
        return -1;
    return 0;
}
