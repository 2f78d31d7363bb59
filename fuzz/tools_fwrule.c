/* libFuzzer harness: firewall rules from the daemon (fwrule_parse_line), and the
 * parsed rule's re-serialisation must parse again to the same text. */
#include "fwrule.h"
#include "util.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > FWRULE_MAX_LINE + 16)
        return 0;
    char *line = qt_strndup((const char *)data, size);
    if (strlen(line) != size) {
        qt_arena_release();
        return 0;
    }
    struct fwrule r;
    const char *err;
    if (fwrule_parse_line(line, &r, &err)) {
        char *text = fwrule_format(&r);
        struct fwrule r2;
        if (!fwrule_parse_line(text, &r2, &err) || strcmp(fwrule_format(&r2), text))
            abort();
    }
    qt_arena_release();
    return 0;
}
