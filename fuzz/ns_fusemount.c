/* libFuzzer harness: the FUSE mount request an ns qube's root sends to its broker
 * (bh_fusemount_req_check, src/lib/fusemount.c). Invariants on an accepted request:
 * known op and flags, both strings terminated within their fields, only the allowed
 * characters, a source for a mount. */
#include "lib/fusemount.h"
#include <stdlib.h>
#include <string.h>

static void check_field(const char *s, size_t cap, int need)
{
    size_t n = strnlen(s, cap);
    if (n == cap || (need && n == 0))
        abort();
    for (size_t i = 0; i < n; i++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+:@/-", s[i]) || s[i] == '\0')
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bh_fusemount_req r;
    if (bh_fusemount_req_check(data, size, &r) < 0)
        return 0;
    if (size != sizeof r || (r.op != 'M' && r.op != 'U') || (r.flags & ~(uint32_t)BH_FUSEMOUNT_FLAGS))
        abort();
    check_field(r.subtype, sizeof r.subtype, 0);
    check_field(r.source, sizeof r.source, r.op == 'M');
    return 0;
}
