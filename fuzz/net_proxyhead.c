/* libFuzzer harness: the updates proxy's request head (src/net/proxyhead.c), bytes a
 * template sends to qubes.UpdatesProxy. Checks: the head length is found within the
 * bound; a parsed head names a clean host and port; the head rewritten for the origin
 * is one request (one empty line, at its end), with `Connection: close` and no byte the
 * input could not carry. The same bytes as an origin's response head
 * (src/net/proxyresp.c): a length of -1 or more, and a head for the template with no
 * empty line (the proxy adds its own end), no bare LF and no Connection header. */
#include <strings.h>
#include "net/proxyhead.h"
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 2 * BH_PROXY_HEAD_MAX)
        return 0;
    long hl = bh_proxy_head_len((const char *)data, size);
    if (hl > (long)size || hl > BH_PROXY_HEAD_MAX)
        __builtin_trap();
    size_t n = hl > 0 ? (size_t)hl : size;
    struct bh_proxy_req r;
    bh_buf out;
    bh_buf_init(&out, 0);
    if (bh_proxy_head_parse((const char *)data, n, &r, &out, NULL) == 0) {
        size_t hn = strlen(r.host);
        if (hn == 0 || hn > 253 || r.port == 0 || r.port > 65535)
            __builtin_trap();
        for (size_t i = 0; i < hn; i++)
            if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.", r.host[i]))
                __builtin_trap();
        if (!r.connect) {
            static const char end[] = "Connection: close\r\n\r\n";
            if (out.len < sizeof end - 1 || memcmp(out.data + out.len - (sizeof end - 1), end, sizeof end - 1))
                __builtin_trap();
            for (size_t i = 0; i + 3 < out.len; i++)
                if (!memcmp(out.data + i, "\r\n\r\n", 4) && i + 4 != out.len)
                    __builtin_trap(); /* a second request smuggled in */
            for (size_t i = 0; i < out.len; i++)
                if (out.data[i] == 0 || (out.data[i] == '\n' && (i == 0 || out.data[i - 1] != '\r')))
                    __builtin_trap();
        } else if (out.len) {
            __builtin_trap();
        }
    }
    bh_buf_free(&out);
    bh_buf_init(&out, 0);
    struct bh_proxy_resp a;
    if (bh_proxy_resp_parse((const char *)data, n, size & 1, &a, &out, NULL) == 0) {
        if (a.length < -1 || a.status < 100 || a.status > 599)
            __builtin_trap();
        for (size_t i = 0; i < out.len; i++) {
            if (out.data[i] == '\n' && (i == 0 || out.data[i - 1] != '\r'))
                __builtin_trap();
            if (i + 3 < out.len && !memcmp(out.data + i, "\r\n\r\n", 4))
                __builtin_trap(); /* the head must stay open for the proxy's own end */
            if (i >= 2 && out.data[i - 1] == '\n' && out.len - i >= 11 && !strncasecmp(out.data + i, "connection:", 11))
                __builtin_trap();
        }
    }
    bh_buf_free(&out);
    return 0;
}
