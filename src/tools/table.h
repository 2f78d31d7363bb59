/* Table output as Qubes' tools print it (they pipe rows through `column -t`): every
 * column but the last is padded to its widest cell and followed by two spaces. */
#pragma once
#include <stdio.h>
#include <stddef.h>

struct table {
    size_t ncols;
    size_t nrows, cap;
    char ***rows;
};

void table_init(struct table *t, size_t ncols);
/* Copies the cells; missing trailing cells (n < ncols) are left out of the row. */
void table_add(struct table *t, const char *const *cells, size_t n);
void table_print(const struct table *t, FILE *f);
/* Display width of a UTF-8 string (one column per code point). */
size_t text_width(const char *s);
