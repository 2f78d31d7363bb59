/* libFuzzer harness: what qubesd-import (dom0's admin.vm.volume.Import helper) reads
 * before it writes a byte: the size line of ImportWithSize, from the calling qube's
 * stream, byte by byte (bounded: 21 bytes with the newline, no NUL, nothing read past
 * the newline), and bulkheadd's "SIZE PATH" reply to ImportBegin (an absolute path
 * without whitespace or control bytes, a size that fits). */
#include "import_size.h"
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char line[BH_IMPORT_SIZE_LINE_MAX + 1];
    size_t len = 0, used = 0;
    int st = 0;
    while (st == 0 && used < size)
        st = bh_import_size_line_feed(line, &len, (char)data[used++]);
    if (st == 1) {
        /* the line is exactly the bytes before the first newline, which came last */
        if (len + 1 != used || used > BH_IMPORT_SIZE_LINE_MAX || data[len] != '\n' || strlen(line) != len ||
            memchr(data, '\n', len) || memcmp(line, data, len))
            __builtin_trap();
    } else if (st == 0 && used > BH_IMPORT_SIZE_LINE_MAX) {
        __builtin_trap(); /* more than the bound taken without an end */
    }
    uint64_t sz;
    char path[256];
    if (bh_import_begin_reply_parse((const char *)data, size, &sz, path, sizeof path) == 0) {
        size_t pl = strlen(path);
        if (path[0] != '/' || pl >= sizeof path)
            __builtin_trap();
        for (size_t i = 0; i < pl; i++)
            if ((unsigned char)path[i] <= ' ' || path[i] == 0x7f)
                __builtin_trap();
    }
    return 0;
}
