#include "proxyhead.h"
#include <netinet/in.h>
#include <stdint.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

long bh_proxy_head_len(const char *buf, size_t len)
{
    size_t n = len < BH_PROXY_HEAD_MAX ? len : BH_PROXY_HEAD_MAX;
    for (size_t i = 3; i < n; i++)
        if (buf[i - 3] == '\r' && buf[i - 2] == '\n' && buf[i - 1] == '\r' && buf[i] == '\n')
            return (long)i + 1;
    return len >= BH_PROXY_HEAD_MAX ? -1 : 0;
}

static bool host_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
}

/* host[:port] of length n into r (port default def, 0 = required). */
static int authority(const char *s, size_t n, unsigned def, struct bh_proxy_req *r, bh_error *err)
{
    const char *colon = memchr(s, ':', n);
    size_t hn = colon ? (size_t)(colon - s) : n;
    if (hn == 0 || hn >= sizeof r->host || s[0] == '-' || s[0] == '.')
        return bh_fail(err, EINVAL, "bad host");
    for (size_t i = 0; i < hn; i++)
        if (!host_char(s[i]))
            return bh_fail(err, EINVAL, "bad host");
    memcpy(r->host, s, hn);
    r->host[hn] = '\0';
    if (!colon) {
        if (!def)
            return bh_fail(err, EINVAL, "port required");
        r->port = def;
        return 0;
    }
    size_t pn = n - hn - 1;
    unsigned long p = 0;
    if (pn == 0 || pn > 5)
        return bh_fail(err, EINVAL, "bad port");
    for (size_t i = 0; i < pn; i++) {
        char c = colon[1 + i];
        if (c < '0' || c > '9')
            return bh_fail(err, EINVAL, "bad port");
        p = p * 10 + (unsigned long)(c - '0');
    }
    if (p == 0 || p > 65535)
        return bh_fail(err, EINVAL, "bad port");
    r->port = (unsigned)p;
    return 0;
}

static bool hop_by_hop(const char *line, size_t n)
{
    static const char *const names[] = { "connection:", "keep-alive:", "proxy-connection:", "proxy-authorization:",
                                         "proxy-authenticate:", "te:", "upgrade:" };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t k = strlen(names[i]);
        if (n >= k && !strncasecmp(line, names[i], k))
            return true;
    }
    return false;
}

/* Does s[0..n) contain word (case-insensitive)? */
static bool strcasestr_n(const char *s, size_t n, const char *word)
{
    size_t k = strlen(word);
    for (size_t i = 0; i + k <= n; i++)
        if (!strncasecmp(s + i, word, k))
            return true;
    return false;
}

int bh_proxy_head_parse(const char *head, size_t head_len, struct bh_proxy_req *r, bh_buf *out, bh_error *err)
{
    memset(r, 0, sizeof r[0]);
    if (head_len < 4 || head_len > BH_PROXY_HEAD_MAX || memcmp(head + head_len - 4, "\r\n\r\n", 4))
        return bh_fail(err, EINVAL, "incomplete head");
    for (size_t i = 0; i < head_len; i++) {
        unsigned char c = (unsigned char)head[i];
        if (c == 0 || c >= 0x7f || (c < 0x20 && c != '\r' && c != '\n' && c != '\t'))
            return bh_fail(err, EINVAL, "invalid byte in head");
        if ((c == '\n') != (i > 0 && head[i - 1] == '\r' && c == '\n') || (c == '\r' && head[i + 1] != '\n'))
            return bh_fail(err, EINVAL, "bare CR or LF");
    }
    const char *eol = memchr(head, '\r', head_len);
    size_t ll = (size_t)(eol - head);
    /* METHOD SP TARGET SP HTTP/1.x */
    const char *sp1 = memchr(head, ' ', ll);
    if (!sp1 || sp1 == head)
        return bh_fail(err, EINVAL, "bad request line");
    const char *target = sp1 + 1;
    const char *sp2 = memchr(target, ' ', ll - (size_t)(target - head));
    if (!sp2 || sp2 == target)
        return bh_fail(err, EINVAL, "bad request line");
    size_t vn = ll - (size_t)(sp2 + 1 - head);
    if (!(vn == 8 && (!memcmp(sp2 + 1, "HTTP/1.1", 8) || !memcmp(sp2 + 1, "HTTP/1.0", 8))))
        return bh_fail(err, EINVAL, "bad HTTP version");
    size_t mn = (size_t)(sp1 - head), tn = (size_t)(sp2 - target);
    for (size_t i = 0; i < mn; i++)
        if (head[i] < 'A' || head[i] > 'Z')
            return bh_fail(err, EINVAL, "bad method");
    unsigned headers = 0;
    for (size_t i = ll + 2; i + 2 < head_len; i++)
        if (head[i] == '\n' && ++headers > BH_PROXY_HEADERS_MAX)
            return bh_fail(err, EINVAL, "too many headers");
    if (mn == 7 && !memcmp(head, "CONNECT", 7)) {
        r->connect = true;
        return authority(target, tn, 0, r, err);
    }
    static const char http[] = "http://";
    if (tn < sizeof http - 1 || strncasecmp(target, http, sizeof http - 1))
        return bh_fail(err, EINVAL, "only absolute http:// targets and CONNECT are proxied");
    const char *auth = target + sizeof http - 1;
    size_t rest = tn - (sizeof http - 1);
    const char *slash = memchr(auth, '/', rest);
    size_t an = slash ? (size_t)(slash - auth) : rest;
    if (memchr(auth, '@', an))
        return bh_fail(err, EINVAL, "credentials in the target");
    if (authority(auth, an, 80, r, err) < 0)
        return -1;
    /* what decides whether the connection to the template can carry another request */
    r->head = mn == 4 && !memcmp(head, "HEAD", 4);
    /* HTTP/1.1 stays open unless told to close; HTTP/1.0 closes unless asked to keep */
    bool v10 = !memcmp(sp2 + 1, "HTTP/1.0", 8), close = false, keep = false;
    for (size_t pos = ll + 2; pos + 2 < head_len;) {
        const char *line = head + pos;
        size_t n = (size_t)((const char *)memchr(line, '\r', head_len - pos) - line);
        pos += n + 2;
        if ((n > 15 && !strncasecmp(line, "content-length:", 15)) ||
            (n > 18 && !strncasecmp(line, "transfer-encoding:", 18)))
            r->body = true;
        size_t k = n > 11 && !strncasecmp(line, "connection:", 11)         ? 11
                   : n > 17 && !strncasecmp(line, "proxy-connection:", 17) ? 17
                                                                            : 0;
        if (k) {
            close |= strcasestr_n(line + k, n - k, "close");
            keep |= strcasestr_n(line + k, n - k, "keep-alive");
        }
    }
    r->client_close = close || (v10 && !keep);
    if (!out)
        return 0;
    /* for the origin: the request line in origin form (not every server takes the
     * absolute form), Host from the target, the end-to-end headers, one request */
    bh_buf_add(out, head, mn + 1);
    if (slash)
        bh_buf_add(out, slash, rest - an);
    else
        bh_buf_adds(out, "/");
    bh_buf_add(out, sp2, ll - (size_t)(sp2 - head));
    bh_buf_adds(out, "\r\n");
    if (r->port == 80)
        bh_buf_printf(out, "Host: %s\r\n", r->host);
    else
        bh_buf_printf(out, "Host: %s:%u\r\n", r->host, r->port);
    size_t pos = ll + 2;
    while (pos + 2 < head_len) {
        const char *nl = memchr(head + pos, '\r', head_len - pos);
        size_t n = (size_t)(nl - (head + pos));
        if (!hop_by_hop(head + pos, n) && !(n >= 5 && !strncasecmp(head + pos, "host:", 5)))
            bh_buf_add(out, head + pos, n + 2);
        pos += n + 2;
    }
    return bh_buf_adds(out, "Connection: close\r\n\r\n");
}

bool bh_proxy_addr_refused(unsigned long a)
{
    unsigned b0 = (unsigned)(a >> 24) & 255, b1 = (unsigned)(a >> 16) & 255, b2 = (unsigned)(a >> 8) & 255;
    return b0 == 0 || b0 == 10 || b0 == 127 || (b0 == 100 && (b1 & 0xc0) == 64) || (b0 == 169 && b1 == 254) ||
           (b0 == 172 && (b1 & 0xf0) == 16) || (b0 == 192 && b1 == 168) || (b0 == 192 && b1 == 0 && b2 == 0) ||
           (b0 == 198 && (b1 & 0xfe) == 18) || b0 >= 224;
}

static unsigned long v4_at(const uint8_t *p)
{
    return (unsigned long)p[0] << 24 | (unsigned long)p[1] << 16 | (unsigned long)p[2] << 8 | p[3];
}

bool bh_proxy_addr6_refused(const struct in6_addr *in)
{
    const uint8_t *a = in->s6_addr;
    static const uint8_t zero[12], mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff },
                                   nat64[12] = { 0, 0x64, 0xff, 0x9b };
    if (!memcmp(a, zero, 12))
        return true; /* ::, ::1, IPv4-compatible */
    if (!memcmp(a, mapped, 12) || !memcmp(a, nat64, 12))
        return bh_proxy_addr_refused(v4_at(a + 12));
    if (a[0] == 0x20 && a[1] == 0x02)
        return bh_proxy_addr_refused(v4_at(a + 2)); /* 6to4 */
    if (a[0] == 1 && a[1] == 0 && !a[2] && !a[3] && !a[4] && !a[5] && !a[6] && !a[7])
        return true; /* 100::/64, discard */
    return (a[0] & 0xfe) == 0xfc || (a[0] == 0xfe && (a[1] & 0x80)) || a[0] == 0xff;
}

bool bh_proxy_connect_port_ok(unsigned port) { return port == 443 || port == 873; }
