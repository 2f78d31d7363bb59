/* libFuzzer: the check qrexec-daemon's root monitor applies to each request from its
 * unprivileged side (which a qube may have taken over). Whatever passes must hold only
 * valid names within their bounds. */
#include "monitor_proto.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *b = malloc(size ? size : 1); /* exact size: ASan sees any overread */
    memcpy(b, data, size);
    struct bh_qx_mon_call c;
    bh_error err = { 0 };
    if (bh_qx_mon_parse_call(b, size, 64, 514, 770, &c, &err) == 1) {
        if (c.slot >= 64 || (c.dom0_port != -1 && (c.dom0_port < 514 || c.dom0_port >= 770)) ||
            !bh_qx_ident_valid(c.ident) || !bh_qx_target_valid(c.target) || !bh_qx_service_valid(c.service) ||
            strlen(c.service) > BH_QX_MAX_SERVICE)
            abort();
        free(c.service);
    }
    free(b);
    return 0;
}
