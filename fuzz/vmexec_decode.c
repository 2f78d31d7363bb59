/* libFuzzer: qubes.VMExec's argument decoder (the argument is the caller's). A decoded
 * argv re-encodes to something that decodes to the same argv. */
#include "vmexec.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    memcpy(s, data, size);
    s[size] = '\0';
    char **v = NULL, **w = NULL;
    size_t n = 0, m = 0;
    bh_error e;
    if (bh_vmexec_decode(s, &v, &n, &e) == 0) {
        if (!v || !v[0] || !v[0][0] || v[n] != NULL || n > BH_VMEXEC_MAX_ARGS)
            abort();
        size_t cap = 3 * size + 16;
        char *enc = malloc(cap);
        if (bh_vmexec_encode(v, n, enc, cap) < 0 || bh_vmexec_decode(enc, &w, &m, &e) < 0 || m != n)
            abort();
        for (size_t i = 0; i < n; i++)
            if (strcmp(v[i], w[i]))
                abort();
        free(enc);
        free(w);
        free(v);
    } else if (v) {
        abort();
    }
    free(s);
    return 0;
}
