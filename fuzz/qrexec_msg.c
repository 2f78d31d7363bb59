/* libFuzzer: every qrexec message parser, fed arbitrary bytes as each peer would. */
#include "proto.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Every parser, on len bytes; the invariants its result must meet. */
static void parse(uint32_t type, const uint8_t *b, size_t len)
{
    bh_error e;
    struct bh_qx_exec x;
    struct bh_qx_trigger t;
    char ident[BH_QX_IDENT_LEN];
    uint32_t a, c;
    int32_t code;
    switch (type) {
    case BH_QX_MSG_EXEC_CMDLINE: case BH_QX_MSG_JUST_EXEC: case BH_QX_MSG_SERVICE_CONNECT:
        if (bh_qx_parse_exec(type, b, len, &x, &e) == 0 &&
            (strlen(x.cmdline) != x.cmdline_len || x.cmdline_len == 0 || x.cmdline + x.cmdline_len >= (const char *)b + len))
            abort();
        break;
    case BH_QX_MSG_TRIGGER_SERVICE3: case BH_QX_MSG_TRIGGER_SERVICE4:
        if (bh_qx_parse_trigger(type, b, len, &t, &e) == 0 &&
            (!bh_qx_target_valid(t.target) || !bh_qx_service_valid(t.service) || strchr(t.service, '/') ||
             !bh_qx_ident_valid(t.ident) || strlen(t.service) > BH_QX_MAX_SERVICE))
            abort();
        break;
    case BH_QX_MSG_SERVICE_REFUSED:
        if (bh_qx_parse_refused(b, len, ident, &e) == 0 && strlen(ident) >= BH_QX_IDENT_LEN)
            abort();
        break;
    case BH_QX_MSG_CONNECTION_TERMINATED: bh_qx_parse_terminated(b, len, &a, &c, &e); break;
    case BH_QX_MSG_HELLO: bh_qx_parse_hello(b, len, &a, &e); break;
    case BH_QX_MSG_DATA_EXIT_CODE: bh_qx_parse_exit_code(b, len, &code, &e); break;
    }
}

/* Input: an 8-byte header, one byte naming the sending peer, then the body. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    bh_error e;
    if (size < 9)
        return 0;
    struct bh_qx_hdr h;
    bh_qx_hdr_decode(data, &h);
    enum bh_qx_peer from = (enum bh_qx_peer)(data[8] & 3);
    data += 9, size -= 9;
    /* exact-size copies so that ASan sees any overread */
    if (bh_qx_check_header(&h, from, &e) == 0 && h.len <= size) {
        uint8_t *b = malloc(h.len ? h.len : 1);
        memcpy(b, data, h.len);
        parse(h.type, b, h.len);
        free(b);
    }
    /* and every parser on whatever length arrived (each checks lengths itself, as a
     * caller that skipped the header check would rely on): this reaches the parsers of
     * messages no peer may send today (TRIGGER_SERVICE4) */
    uint8_t *b = malloc(size ? size : 1);
    memcpy(b, data, size);
    parse(h.type, b, size);
    free(b);
    return 0;
}
