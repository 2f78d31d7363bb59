#include "table.h"
#include "util.h"
#include <string.h>

void table_init(struct table *t, size_t ncols)
{
    memset(t, 0, sizeof *t);
    t->ncols = ncols;
}

void table_add(struct table *t, const char *const *cells, size_t n)
{
    if (t->nrows == t->cap) {
        size_t cap = t->cap ? t->cap * 2 : 16;
        t->rows = qt_realloc_array(t->rows, t->cap, cap, sizeof *t->rows);
        t->cap = cap;
    }
    if (n > t->ncols)
        n = t->ncols;
    char **row = qt_alloc((t->ncols + 1) * sizeof *row);
    for (size_t i = 0; i < n; i++)
        row[i] = qt_strdup(cells[i] ? cells[i] : "");
    t->rows[t->nrows++] = row;
}

size_t text_width(const char *s)
{
    size_t w = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++)
        if ((*p & 0xc0) != 0x80)
            w++;
    return w;
}

static size_t row_len(const struct table *t, char **row)
{
    size_t n = 0;
    while (n < t->ncols && row[n])
        n++;
    return n;
}

void table_print(const struct table *t, FILE *f)
{
    size_t *width = qt_alloc((t->ncols + 1) * sizeof *width);
    for (size_t r = 0; r < t->nrows; r++) {
        size_t n = row_len(t, t->rows[r]);
        for (size_t c = 0; c < n; c++) {
            size_t w = text_width(t->rows[r][c]);
            if (w > width[c])
                width[c] = w;
        }
    }
    for (size_t r = 0; r < t->nrows; r++) {
        char **row = t->rows[r];
        size_t n = row_len(t, row);
        for (size_t c = 0; c < n; c++) {
            fputs(row[c], f);
            if (c + 1 < n) {
                for (size_t pad = text_width(row[c]); pad < width[c] + 2; pad++)
                    fputc(' ', f);
            }
        }
        fputc('\n', f);
    }
}
