#include "request.h"
#include <errno.h>
#include <stdbool.h>
#include <string.h>

/* Copies [s, s+n) into dst (size cap) if it fits and holds only printable ASCII
 * without spaces; the header is ASCII in Qubes and we refuse anything else. */
static int copy_field(char *dst, size_t cap, const char *s, size_t n, bool allow_empty, const char *what, bh_error *err)
{
    if (n >= cap)
        return bh_fail(err, EINVAL, "%s too long", what);
    if (n == 0 && !allow_empty)
        return bh_fail(err, EINVAL, "empty %s", what);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= 0x20 || c >= 0x7f)
            return bh_fail(err, EINVAL, "invalid character in %s", what);
    }
    memcpy(dst, s, n);
    dst[n] = '\0';
    return 0;
}

int bh_request_parse(const char *buf, size_t len, struct bh_request *out, bh_error *err)
{
    memset(out, 0, sizeof *out);
    if (len > BH_REQ_MAX)
        return bh_fail(err, E2BIG, "request too large");
    const char *nul = memchr(buf, '\0', len);
    if (!nul)
        return bh_fail(err, EINVAL, "no header terminator");
    size_t hlen = (size_t)(nul - buf);
    /* Exactly four space-separated fields, single spaces. */
    const char *f[4];
    size_t fl[4];
    size_t start = 0;
    int nf = 0;
    for (size_t i = 0; i <= hlen; i++) {
        if (i == hlen || buf[i] == ' ') {
            if (nf == 4)
                return bh_fail(err, EINVAL, "too many header fields");
            f[nf] = buf + start;
            fl[nf] = i - start;
            nf++;
            start = i + 1;
        }
    }
    if (nf != 4)
        return bh_fail(err, EINVAL, "expected 4 header fields, got %d", nf);
    const char *plus = memchr(f[0], '+', fl[0]);
    if (!plus)
        return bh_fail(err, EINVAL, "method without '+'");
    size_t mlen = (size_t)(plus - f[0]);
    if (copy_field(out->method, sizeof out->method, f[0], mlen, false, "method", err) < 0 ||
        copy_field(out->arg, sizeof out->arg, plus + 1, fl[0] - mlen - 1, true, "argument", err) < 0 ||
        copy_field(out->src, sizeof out->src, f[1], fl[1], false, "source", err) < 0)
        return -1;
    char dtype[16];
    if (copy_field(dtype, sizeof dtype, f[2], fl[2], false, "destination type", err) < 0 ||
        copy_field(out->dest, sizeof out->dest, f[3], fl[3], false, "destination", err) < 0)
        return -1;
    if (!strcmp(dtype, "keyword")) {
        if (strcmp(out->dest, "adminvm") != 0)
            return bh_fail(err, EINVAL, "unknown keyword destination");
        strcpy(out->dest, "dom0");
    } else if (strcmp(dtype, "name") != 0) {
        return bh_fail(err, EINVAL, "unknown destination type");
    }
    out->payload = nul + 1;
    out->payload_len = len - hlen - 1;
    return 0;
}
