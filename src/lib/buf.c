#include "buf.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>

void bh_buf_init(bh_buf *b, size_t limit)
{
    b->data = NULL;
    b->len = b->cap = 0;
    b->limit = limit;
}

void bh_buf_free(bh_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

void bh_buf_reset(bh_buf *b) { b->len = 0; }

int bh_buf_reserve(bh_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len) {
        errno = E2BIG;
        return -1;
    }
    size_t need = b->len + extra + 1; /* room for a terminating NUL */
    if (b->limit && need > b->limit + 1) {
        errno = E2BIG;
        return -1;
    }
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need)
        cap *= 2;
    char *d = realloc(b->data, cap);
    if (!d)
        return -1;
    b->data = d;
    b->cap = cap;
    return 0;
}

int bh_buf_add(bh_buf *b, const void *p, size_t n)
{
    if (bh_buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
    return 0;
}

int bh_buf_addc(bh_buf *b, char c) { return bh_buf_add(b, &c, 1); }
int bh_buf_adds(bh_buf *b, const char *s) { return bh_buf_add(b, s, strlen(s)); }

int bh_buf_vprintf(bh_buf *b, const char *fmt, va_list ap)
{
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0 || bh_buf_reserve(b, (size_t)n) < 0)
        return -1;
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    b->len += (size_t)n;
    return 0;
}

int bh_buf_printf(bh_buf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int r = bh_buf_vprintf(b, fmt, ap);
    va_end(ap);
    return r;
}

void bh_buf_consume(bh_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

char *bh_buf_steal(bh_buf *b)
{
    if (bh_buf_reserve(b, 0) < 0)
        return NULL;
    b->data[b->len] = '\0';
    char *d = b->data;
    b->data = NULL;
    b->len = b->cap = 0;
    return d;
}
