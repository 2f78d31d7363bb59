/* libFuzzer: every qrexec message parser, fed arbitrary bytes as each peer would. */
#include "proto.h"
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bh_error e;
    if (size < 9)
        return 0;
    struct bh_qx_hdr h;
    bh_qx_hdr_decode(data, &h);
    enum bh_qx_peer from = (enum bh_qx_peer)(data[8] & 3);
    data += 9, size -= 9;
    if (bh_qx_check_header(&h, from, &e) == 0 && h.len <= size) {
        /* an exact-size copy so that ASan sees any overread */
        uint8_t *b = malloc(h.len ? h.len : 1);
        memcpy(b, data, h.len);
        struct bh_qx_exec x;
        struct bh_qx_trigger t;
        char ident[BH_QX_IDENT_LEN];
        uint32_t a, c;
        int32_t code;
        switch (h.type) {
        case BH_QX_MSG_EXEC_CMDLINE: case BH_QX_MSG_JUST_EXEC: case BH_QX_MSG_SERVICE_CONNECT:
            if (bh_qx_parse_exec(h.type, b, h.len, &x, &e) == 0 && strlen(x.cmdline) != x.cmdline_len)
                abort();
            break;
        case BH_QX_MSG_TRIGGER_SERVICE3: case BH_QX_MSG_TRIGGER_SERVICE4:
            if (bh_qx_parse_trigger(h.type, b, h.len, &t, &e) == 0 &&
                (!bh_qx_target_valid(t.target) || !bh_qx_service_valid(t.service) || strchr(t.service, '/')))
                abort();
            break;
        case BH_QX_MSG_SERVICE_REFUSED: bh_qx_parse_refused(b, h.len, ident, &e); break;
        case BH_QX_MSG_CONNECTION_TERMINATED: bh_qx_parse_terminated(b, h.len, &a, &c, &e); break;
        case BH_QX_MSG_HELLO: bh_qx_parse_hello(b, h.len, &a, &e); break;
        case BH_QX_MSG_DATA_EXIT_CODE: bh_qx_parse_exit_code(b, h.len, &code, &e); break;
        }
        free(b);
    }
    return 0;
}
