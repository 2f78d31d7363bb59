/* Parsers of admin.vm.volume.Import's dom0 helper (import_size.h). */
#include "import_size.h"
#include <string.h>

int bh_import_size_line_feed(char out[BH_IMPORT_SIZE_LINE_MAX + 1], size_t *len, char ch)
{
    if (*len >= BH_IMPORT_SIZE_LINE_MAX)
        return -1;
    if (ch == '\n') {
        out[*len] = '\0';
        return 1;
    }
    if (ch == '\0' || *len + 1 >= BH_IMPORT_SIZE_LINE_MAX) /* the newline must fit too */
        return -1;
    out[(*len)++] = ch;
    return 0;
}

int bh_import_begin_reply_parse(const char *body, size_t n, uint64_t *size, char *path, size_t pathlen)
{
    size_t i = 0;
    uint64_t v = 0;
    for (; i < n && i < 20 && body[i] >= '0' && body[i] <= '9'; i++) {
        if (v > (UINT64_MAX - 9) / 10)
            return -1;
        v = v * 10 + (uint64_t)(body[i] - '0');
    }
    if (i == 0 || i >= n || body[i] != ' ')
        return -1;
    size_t plen = n - i - 1;
    const char *p = body + i + 1;
    if (plen == 0 || plen >= pathlen || p[0] != '/')
        return -1;
    for (size_t k = 0; k < plen; k++)
        if ((unsigned char)p[k] <= ' ' || p[k] == 0x7f)
            return -1;
    memcpy(path, p, plen);
    path[plen] = '\0';
    *size = v;
    return 0;
}
