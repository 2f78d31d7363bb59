#include "crc32.h"
#include <dlfcn.h>
#include <limits.h>
#include <stdlib.h>
#include <zlib.h>

typedef uint32_t (*isal_crc_fn)(uint32_t init, const unsigned char *buf, uint64_t len);

static isal_crc_fn isal;
static int looked_up;

void bh_crc32_init(void)
{
    if (looked_up)
        return;
    looked_up = 1;
    if (getenv("BULKHEAD_CRC32_ZLIB")) /* tests and benches: force the fallback */
        return;
    /* RTLD_NOW: a broken library fails here, not in the middle of a copy. Never closed:
     * the function is used for the life of the process. */
    void *h = dlopen("libisal.so.2", RTLD_NOW | RTLD_LOCAL);
    if (h)
        isal = (isal_crc_fn)(uintptr_t)dlsym(h, "crc32_gzip_refl");
}

uint32_t bh_crc32_zlib(uint32_t crc, const void *buf, size_t len)
{
    const unsigned char *p = buf;
    while (len) { /* zlib's length is an unsigned int */
        unsigned n = len > UINT_MAX ? UINT_MAX : (unsigned)len;
        crc = (uint32_t)crc32(crc, p, n);
        p += n;
        len -= n;
    }
    return crc;
}

uint32_t bh_crc32(uint32_t crc, const void *buf, size_t len)
{
    bh_crc32_init();
    /* ISA-L's crc32_gzip_refl takes and returns the same (final-xored) value as zlib */
    if (isal)
        return isal(crc, buf, len);
    return bh_crc32_zlib(crc, buf, len);
}

const char *bh_crc32_impl(void)
{
    bh_crc32_init();
    return isal ? "isa-l" : "zlib";
}
