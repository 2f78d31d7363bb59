/* Why: a host user whom /etc/subuid gives a range that meets Bulkhead's IDs can map one
 * of them inside a user namespace of their own (newuidmap) and be, to the kernel, a
 * qube's root, a qrexec process, or a member of the group that reaches bulkheadd's
 * socket. bulkheadd refuses to start on such a host instead of sharing IDs. */
#include "subid.h"
#include "cleanup.h"
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse_u64(const char *s, uint64_t *out)
{
    if (!*s || strlen(s) > 20)
        return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9' || v > (UINT64_MAX - 9) / 10)
            return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    *out = v;
    return true;
}

int bh_subid_check(const char *path, uint64_t lo, uint64_t hi, bh_error *err)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : bh_fail_errno(err, "%s", path);
    char line[512];
    unsigned lineno = 0;
    while (fgets(line, sizeof line, f)) {
        lineno++;
        line[strcspn(line, "\n")] = 0;
        char *start = strchr(line, ':');
        char *count = start ? strchr(start + 1, ':') : NULL;
        if (!count)
            continue;
        *start++ = 0;
        *count++ = 0;
        uint64_t a, n;
        if (!parse_u64(start, &a) || !parse_u64(count, &n) || !n || n > UINT32_MAX + 1ull)
            continue;
        if (a < hi && a + n > lo)
            return bh_fail(err, EEXIST,
                           "%s:%u gives %s the host IDs %llu-%llu, which meet Bulkhead's own (%llu-%llu): "
                           "that user could become a qube's root or reach bulkheadd; move the range below %llu "
                           "(e.g. usermod --del-subuids/--add-subuids) and start again",
                           path, lineno, line, (unsigned long long)a, (unsigned long long)(a + n - 1),
                           (unsigned long long)lo, (unsigned long long)(hi - 1), (unsigned long long)lo);
    }
    return 0;
}
