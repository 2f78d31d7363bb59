/* Memory and string helpers for the qvm-* tools.
 *
 * The tools are short-lived processes that exit on the first fatal error, often from
 * deep inside a helper. Every allocation therefore belongs to one process-lifetime
 * arena (reachable from a global), released in one place at exit: error paths cannot
 * leak and no helper has to decide who frees a string. */
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>

void *qt_alloc(size_t n);                       /* zeroed; aborts on ENOMEM */
char *qt_strdup(const char *s);
char *qt_strndup(const char *s, size_t n);
char *qt_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void *qt_realloc_array(void *old, size_t old_n, size_t new_n, size_t elem);

/* A growable array of strings (arena-owned). */
struct strv {
    char **v;
    size_t n, cap;
};
void strv_push(struct strv *s, const char *str);  /* copies str */
bool strv_contains(const struct strv *s, const char *str);
void strv_sort(struct strv *s);
/* Splits text into lines (no trailing empty line); copies. */
void strv_split_lines(struct strv *out, const char *text);
char *strv_join(const struct strv *s, const char *sep);

bool str_startswith(const char *s, const char *prefix);
bool str_endswith(const char *s, const char *suffix);
/* Parses a non-negative decimal integer; false on junk or overflow. */
bool str_to_u64(const char *s, unsigned long long *out);
bool str_to_long(const char *s, long *out);
char *str_lower(const char *s);
char *str_upper(const char *s);
/* Frees every arena allocation (for long-running users such as fuzz harnesses). */
void qt_arena_release(void);
