#include "response.h"
#include <stdio.h>
#include <string.h>

int bh_exc(struct bh_exc *e, const char *type, const char *fmt, ...)
{
    e->type = type;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return -1;
}

int bh_reply_ok(bh_buf *out, const char *body, size_t len)
{
    if (bh_buf_add(out, "0\0", 2) < 0)
        return -1;
    return bh_buf_add(out, body, len);
}

int bh_reply_exc(bh_buf *out, const struct bh_exc *e)
{
    if (bh_buf_add(out, "2\0", 2) < 0 || bh_buf_adds(out, e->type) < 0 || bh_buf_add(out, "\0\0", 2) < 0)
        return -1;
    for (const char *p = e->msg; *p; p++) {
        if (*p == '%' && bh_buf_addc(out, '%') < 0)
            return -1;
        if (bh_buf_addc(out, *p) < 0)
            return -1;
    }
    return bh_buf_addc(out, '\0');
}

int bh_reply_event(bh_buf *out, const char *subject, const char *event, const char *const *kv)
{
    if (bh_buf_add(out, "1\0", 2) < 0 || bh_buf_add(out, subject ? subject : "", strlen(subject ? subject : "") + 1) < 0 ||
        bh_buf_add(out, event, strlen(event) + 1) < 0)
        return -1;
    for (size_t i = 0; kv && kv[i]; i += 2) {
        const char *v = kv[i + 1] ? kv[i + 1] : "";
        if (bh_buf_add(out, kv[i], strlen(kv[i]) + 1) < 0 || bh_buf_add(out, v, strlen(v) + 1) < 0)
            return -1;
    }
    return bh_buf_addc(out, '\0');
}
