/* Text forms shared by bulkheadd and the tools: Qubes' volume info body, sizes. */
#include "internal.h"
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>

static const char *tf(bool b)
{
    return b ? "True" : "False";
}

int bh_volume_info_format(const struct bh_volume_info *i, char *buf, size_t n)
{
    int r = snprintf(buf, n,
                     "pool=%s\nvid=%s\nsize=%" PRIu64 "\nusage=%" PRIu64 "\nrw=%s\nsource=%s\nsave_on_stop=%s\n"
                     "snap_on_start=%s\nrevisions_to_keep=%d\nephemeral=%s\nis_outdated=%s\n",
                     i->pool, i->vid, i->size, i->usage, tf(i->rw), i->source, tf(i->save_on_stop),
                     tf(i->snap_on_start), i->revisions_to_keep, tf(i->ephemeral), tf(i->is_outdated));
    if (r < 0 || (size_t)r >= n)
        return -1;
    return r;
}

int bh_size_parse(const char *s, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return -1;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno)
        return -1;
    unsigned shift = 0;
    switch (*end) {
    case '\0': break;
    case 'K': case 'k': shift = 10; end++; break;
    case 'M': case 'm': shift = 20; end++; break;
    case 'G': case 'g': shift = 30; end++; break;
    case 'T': case 't': shift = 40; end++; break;
    default: return -1;
    }
    if (*end == 'i' && shift)
        end++;
    if (*end == 'B' && shift)
        end++;
    if (*end)
        return -1;
    if (shift && v > (UINT64_MAX >> shift))
        return -1;
    *out = (uint64_t)v << shift;
    return 0;
}
