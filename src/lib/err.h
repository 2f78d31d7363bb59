/* Errors as values with context (crun style). A failing function fills a caller-owned
 * bh_error and returns -1; the caller adds context with bh_prefix() or passes it up. */
#pragma once
#include <stdarg.h>

typedef struct bh_error {
    int errnum;      /* errno at the failure, 0 if not a system error */
    char msg[512];   /* human-readable, already with context */
} bh_error;

/* Sets *e (if non-NULL) and returns -1. */
int bh_fail(bh_error *e, int errnum, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Like bh_fail with errnum = errno, and ": strerror" appended. */
int bh_fail_errno(bh_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prepends "context: " to an existing message; returns -1. */
int bh_prefix(bh_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
