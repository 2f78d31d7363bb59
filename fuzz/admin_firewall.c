/* libFuzzer harness: firewall rule sets (admin.vm.firewall.Set payloads). Also checks
 * that normalisation is idempotent: a normalised rule set parses to itself. */
#include "firewall.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *n = bh_fw_rules_normalize((const char *)data, size, 1000, NULL);
    if (n) {
        char *again = bh_fw_rules_normalize(n, strlen(n), 1000, NULL);
        if (!again || strcmp(n, again) != 0)
            __builtin_trap();
        free(again);
        free(n);
    }
    return 0;
}
