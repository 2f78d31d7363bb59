/* libFuzzer harness: the Admin API request header parser (bytes from any local client). */
#include "request.h"
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct bh_request r;
    if (bh_request_parse((const char *)data, size, &r, NULL) == 0) {
        /* Invariants: fields are bounded, NUL-terminated and the payload lies inside. */
        if (strlen(r.method) >= sizeof r.method || strlen(r.dest) >= sizeof r.dest)
            __builtin_trap();
        if (r.payload < (const char *)data || r.payload + r.payload_len != (const char *)data + size)
            __builtin_trap();
    }
    return 0;
}
