/* The response head an origin sends to the updates proxy (see proxyhead.h): bytes from
 * the network, so bounded and parsed strictly. Only what decides the framing is read:
 * the status, Content-Length, Transfer-Encoding; the head is re-written for the
 * template without hop-by-hop headers, so the proxy alone decides whether the
 * connection to the template stays open. */
#include "proxyhead.h"
#include <errno.h>
#include <string.h>
#include <strings.h>

static bool named(const char *line, size_t n, const char *name)
{
    size_t k = strlen(name);
    return n > k && !strncasecmp(line, name, k) && line[k] == ':';
}

/* The value of a header line (after the colon, without surrounding blanks). */
static const char *value(const char *line, size_t n, size_t *vn)
{
    const char *c = memchr(line, ':', n);
    const char *v = c + 1, *end = line + n;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        end--;
    *vn = (size_t)(end - v);
    return v;
}

int bh_proxy_resp_parse(const char *head, size_t head_len, bool head_request, struct bh_proxy_resp *r, bh_buf *out,
                        bh_error *err)
{
    memset(r, 0, sizeof r[0]);
    r->length = -1;
    if (head_len < 16 || head_len > BH_PROXY_HEAD_MAX || memcmp(head + head_len - 4, "\r\n\r\n", 4))
        return bh_fail(err, EINVAL, "incomplete response head");
    for (size_t i = 0; i < head_len; i++) {
        unsigned char c = (unsigned char)head[i];
        if (c == 0 || c == 0x7f || (c < 0x20 && c != '\r' && c != '\n' && c != '\t'))
            return bh_fail(err, EINVAL, "invalid byte in response head");
        if ((c == '\n' && (i == 0 || head[i - 1] != '\r')) || (c == '\r' && head[i + 1] != '\n'))
            return bh_fail(err, EINVAL, "bare CR or LF in response head");
    }
    /* HTTP/1.x SP DDD [SP reason] */
    const char *eol = memchr(head, '\r', head_len);
    size_t ll = (size_t)(eol - head);
    if (ll < 12 || (memcmp(head, "HTTP/1.1 ", 9) && memcmp(head, "HTTP/1.0 ", 9)) || head[9] < '1' || head[9] > '5' ||
        head[10] < '0' || head[10] > '9' || head[11] < '0' || head[11] > '9' || (ll > 12 && head[12] != ' '))
        return bh_fail(err, EINVAL, "bad status line");
    r->status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    unsigned headers = 0;
    bool chunked = false, have_len = false;
    long long len = -1;
    /* the proxy answers in its own version (it frames the body itself) */
    if (out) {
        bh_buf_adds(out, "HTTP/1.1");
        bh_buf_add(out, head + 8, ll + 2 - 8);
    }
    /* a transfer coding decides first: a Content-Length beside it is dropped, wherever */
    for (size_t p = ll + 2; p + 2 < head_len;) {
        const char *line = head + p;
        size_t n = (size_t)((const char *)memchr(line, '\r', head_len - p) - line);
        p += n + 2;
        chunked |= named(line, n, "transfer-encoding");
    }
    size_t pos = ll + 2;
    while (pos + 2 < head_len) {
        const char *nl = memchr(head + pos, '\r', head_len - pos);
        size_t n = (size_t)(nl - (head + pos));
        const char *line = head + pos;
        pos += n + 2;
        if (++headers > BH_PROXY_HEADERS_MAX)
            return bh_fail(err, EINVAL, "too many response headers");
        const char *colon = memchr(line, ':', n);
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t')
            return bh_fail(err, EINVAL, "bad response header"); /* no folded lines either */
        for (const char *p = line; p < colon; p++)
            if (*p == ' ' || *p == '\t')
                return bh_fail(err, EINVAL, "bad response header name");
        size_t vn;
        const char *v = value(line, n, &vn);
        if (named(line, n, "content-length")) {
            long long x = 0;
            if (vn == 0 || vn > 18)
                return bh_fail(err, EINVAL, "bad Content-Length");
            for (size_t i = 0; i < vn; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return bh_fail(err, EINVAL, "bad Content-Length");
                x = x * 10 + (v[i] - '0');
            }
            if (have_len && x != len)
                return bh_fail(err, EINVAL, "two different Content-Lengths");
            have_len = true;
            len = x;
        }
        bool hop = named(line, n, "connection") || named(line, n, "keep-alive") || named(line, n, "proxy-connection") ||
                   named(line, n, "proxy-authenticate") || named(line, n, "te") || named(line, n, "trailer") ||
                   named(line, n, "upgrade") || (chunked && named(line, n, "content-length"));
        if (out && !hop)
            bh_buf_add(out, line, n + 2);
    }
    if (r->status < 200 || chunked) {
        /* interim answers and coded bodies (relayed as they come, for the template to
         * decode; a Content-Length beside them is dropped): delimited by the close */
        r->length = -1;
    } else if (head_request || r->status == 204 || r->status == 304) {
        r->length = 0;
    } else if (have_len) {
        r->length = len;
    } else {
        r->length = -1;
    }
    return 0;
}
