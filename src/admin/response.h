/* Admin API responses (docs/admin.md): success `0\0body`, error
 * `2\0Exc\0\0message\0` (message %-escaped, since Qubes' client %-formats it), and
 * events `1\0subject\0event\0k\0v\0...\0`. */
#pragma once
#include "buf.h"
#include <stdarg.h>

/* An exception to send back: Qubes' class name and a message. Handlers return -1 after
 * filling one with bh_exc(). */
struct bh_exc {
    const char *type;
    char msg[512];
};
int bh_exc(struct bh_exc *e, const char *type, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

int bh_reply_ok(bh_buf *out, const char *body, size_t len);
int bh_reply_exc(bh_buf *out, const struct bh_exc *e);
/* kv: NULL-terminated array of key, value, key, value, ... */
int bh_reply_event(bh_buf *out, const char *subject, const char *event, const char *const *kv);
