#include "err.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>

int bh_fail(bh_error *e, int errnum, const char *fmt, ...)
{
    if (!e)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    e->errnum = errnum;
    return -1;
}

int bh_fail_errno(bh_error *e, const char *fmt, ...)
{
    int saved = errno;
    if (!e)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    if (n >= 0 && (size_t)n < sizeof e->msg)
        snprintf(e->msg + n, sizeof e->msg - (size_t)n, ": %s", strerror(saved));
    e->errnum = saved;
    errno = saved;
    return -1;
}

int bh_prefix(bh_error *e, const char *fmt, ...)
{
    if (!e)
        return -1;
    char head[256], old[sizeof e->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    /* Build by pieces: truncation of a long message is acceptable, not an error. */
    size_t hl = strnlen(head, sizeof head);
    if (hl > sizeof e->msg - 3)
        hl = sizeof e->msg - 3;
    memcpy(e->msg, head, hl);
    memcpy(e->msg + hl, ": ", 2);
    size_t room = sizeof e->msg - hl - 3;
    size_t ol = strnlen(old, room);
    memcpy(e->msg + hl + 2, old, ol);
    e->msg[hl + 2 + ol] = '\0';
    return -1;
}
