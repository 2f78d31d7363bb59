#include "util.h"
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Blocks are chained from a global head so that leak checkers see them as reachable
 * until exit, when the kernel takes them back with the rest of the process. */
struct arena_block {
    struct arena_block *next;
    size_t used, cap;
    _Alignas(16) unsigned char data[];
};
static struct arena_block *arena_head;

static void *arena_raw(size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (!arena_head || arena_head->cap - arena_head->used < n) {
        size_t cap = n > 65536 ? n : 65536;
        struct arena_block *b = malloc(sizeof *b + cap);
        if (!b) {
            fputs("out of memory\n", stderr);
            abort();
        }
        b->next = arena_head;
        b->used = 0;
        b->cap = cap;
        arena_head = b;
    }
    void *p = arena_head->data + arena_head->used;
    arena_head->used += n;
    return p;
}

void *qt_alloc(size_t n)
{
    void *p = arena_raw(n ? n : 1);
    memset(p, 0, n ? n : 1);
    return p;
}

char *qt_strndup(const char *s, size_t n)
{
    char *p = arena_raw(n + 1);
    memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *qt_strdup(const char *s)
{
    return qt_strndup(s, strlen(s));
}

char *qt_printf(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        n = 0;
    char *p = arena_raw((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(p, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return p;
}

void *qt_realloc_array(void *old, size_t old_n, size_t new_n, size_t elem)
{
    void *p = qt_alloc(new_n * elem);
    if (old && old_n)
        memcpy(p, old, old_n * elem);
    return p;
}

void strv_push(struct strv *s, const char *str)
{
    if (s->n + 1 >= s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 8;
        s->v = qt_realloc_array(s->v, s->cap, cap, sizeof *s->v);
        s->cap = cap;
    }
    s->v[s->n++] = qt_strdup(str);
    s->v[s->n] = NULL;
}

bool strv_contains(const struct strv *s, const char *str)
{
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->v[i], str))
            return true;
    return false;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

void strv_sort(struct strv *s)
{
    if (s->n)
        qsort(s->v, s->n, sizeof *s->v, cmp_str);
}

void strv_split_lines(struct strv *out, const char *text)
{
    const char *p = text;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        char *line = qt_strndup(p, len);
        strv_push(out, line);
        p += len + (nl ? 1 : 0);
    }
}

char *strv_join(const struct strv *s, const char *sep)
{
    size_t len = 1;
    for (size_t i = 0; i < s->n; i++)
        len += strlen(s->v[i]) + strlen(sep);
    char *out = qt_alloc(len);
    for (size_t i = 0; i < s->n; i++) {
        if (i)
            strcat(out, sep);
        strcat(out, s->v[i]);
    }
    return out;
}

bool str_startswith(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

bool str_endswith(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

bool str_to_u64(const char *s, unsigned long long *out)
{
    if (!*s || !isdigit((unsigned char)*s))
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

bool str_to_long(const char *s, long *out)
{
    if (!*s)
        return false;
    errno = 0;
    char *end;
    long v = strtol(s, &end, 10);
    if (errno || *end)
        return false;
    *out = v;
    return true;
}

char *str_lower(const char *s)
{
    char *o = qt_strdup(s);
    for (char *p = o; *p; p++)
        *p = (char)tolower((unsigned char)*p);
    return o;
}

char *str_upper(const char *s)
{
    char *o = qt_strdup(s);
    for (char *p = o; *p; p++)
        *p = (char)toupper((unsigned char)*p);
    return o;
}

void qt_arena_release(void)
{
    while (arena_head) {
        struct arena_block *next = arena_head->next;
        free(arena_head);
        arena_head = next;
    }
}
