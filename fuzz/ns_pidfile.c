/* libFuzzer harness: init.pid and /proc/<pid>/stat parsing (a stat line carries comm,
 * which a qube's process sets at will). */
#include "driver/ns/ns.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    if (!s)
        return 0;
    memcpy(s, data, size);
    s[size] = '\0';
    struct bh_init_id id;
    if (bh_pidfile_parse(s, &id) == 0 && id.pid <= 1)
        __builtin_trap();
    uint64_t st;
    char state;
    (void)bh_proc_stat_parse(s, &st, &state);
    free(s);
    return 0;
}
