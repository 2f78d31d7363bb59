/* libFuzzer harness: the payload of a qrexec call process's internal.qrexec.* requests
 * to bulkheadd, "SERVICE[+ARG] REQUESTED-TARGET" (src/admin/call_auth.c). */
#include "call_auth.h"
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char svc[520], req[80];
    if (bh_call_payload_parse((const char *)data, size, svc, sizeof svc, req, sizeof req)) {
        /* Invariants: both parts fit, are non-empty, blank-free, and put back together
         * they are the input. */
        size_t a = strlen(svc), b = strlen(req);
        if (!a || !b || a >= sizeof svc || b >= sizeof req || a + 1 + b != size || strchr(svc, ' ') ||
            strchr(req, ' ') || memcmp(data, svc, a) || data[a] != ' ' || memcmp(data + a + 1, req, b))
            __builtin_trap();
    }
    return 0;
}
