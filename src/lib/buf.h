/* A growable byte buffer with a hard size limit, for anything built from or read from
 * untrusted input: going over the limit fails instead of growing without bound. */
#pragma once
#include <stddef.h>
#include <stdarg.h>

typedef struct bh_buf {
    char *data;
    size_t len, cap, limit; /* limit 0 = no limit */
} bh_buf;

void bh_buf_init(bh_buf *b, size_t limit);
void bh_buf_free(bh_buf *b);
void bh_buf_reset(bh_buf *b);
int bh_buf_reserve(bh_buf *b, size_t extra);          /* -1 if over limit / ENOMEM */
int bh_buf_add(bh_buf *b, const void *p, size_t n);
int bh_buf_addc(bh_buf *b, char c);
int bh_buf_adds(bh_buf *b, const char *s);
int bh_buf_printf(bh_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int bh_buf_vprintf(bh_buf *b, const char *fmt, va_list ap);
/* Drops the first n bytes. */
void bh_buf_consume(bh_buf *b, size_t n);
/* Returns a NUL-terminated copy owned by the caller (buffer may hold NULs). */
char *bh_buf_steal(bh_buf *b);
#define _cleanup_buf_ __attribute__((cleanup(bh_buf_free)))
