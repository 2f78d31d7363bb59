/* libFuzzer: every qrexec message parser (protocol 3 and 4), fed arbitrary bytes as each
 * peer would, and the incremental reader the daemon uses on its agent's bytes.
 *
 * Input: byte 0 picks the peer (low 2 bits) and how the rest is cut into reads (the
 * other bits); the rest is a stream of messages. Each message the reader passes goes to
 * its parser; each it skips must have failed the header check. Invariants checked:
 * parsed names are valid, a parsed trigger's service has no '/', the reader never
 * passes a body that is not exactly its header's length, and it consumes every byte. */
#include "proto.h"
#include "reader.h"
#include <stdlib.h>
#include <string.h>

static void parse_one(const struct bh_qx_hdr *h, const uint8_t *body)
{
    bh_error e;
    /* an exact-size copy so that ASan sees any overread */
    uint8_t *b = malloc(h->len ? h->len : 1);
    if (!b)
        return;
    memcpy(b, body, h->len);
    struct bh_qx_exec x;
    struct bh_qx_trigger t;
    char ident[BH_QX_IDENT_LEN];
    uint32_t a, c;
    int32_t code;
    switch (h->type) {
    case BH_QX_MSG_EXEC_CMDLINE: case BH_QX_MSG_JUST_EXEC: case BH_QX_MSG_SERVICE_CONNECT:
        if (bh_qx_parse_exec(h->type, b, h->len, &x, &e) == 0 && strlen(x.cmdline) != x.cmdline_len)
            abort();
        break;
    case BH_QX_MSG_TRIGGER_SERVICE3: case BH_QX_MSG_TRIGGER_SERVICE4:
        if (bh_qx_parse_trigger(h->type, b, h->len, &t, &e) == 0 &&
            (!bh_qx_target_valid(t.target) || !bh_qx_service_valid(t.service) || strchr(t.service, '/') ||
             !bh_qx_ident_valid(t.ident) || (t.source[0] && !bh_qx_target_valid(t.source)) ||
             (h->type == BH_QX_MSG_TRIGGER_SERVICE3 && t.source[0])))
            abort();
        break;
    case BH_QX_MSG_SERVICE_REFUSED: bh_qx_parse_refused(b, h->len, ident, &e); break;
    case BH_QX_MSG_CONNECTION_TERMINATED: bh_qx_parse_terminated(b, h->len, &a, &c, &e); break;
    case BH_QX_MSG_HELLO: bh_qx_parse_hello(b, h->len, &a, &e); break;
    case BH_QX_MSG_DATA_EXIT_CODE: bh_qx_parse_exit_code(b, h->len, &code, &e); break;
    }
    free(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    enum bh_qx_peer from = (enum bh_qx_peer)(data[0] & 3);
    size_t step = (size_t)(data[0] >> 2) + 1; /* 1..64 bytes per read */
    data++, size--;
    struct bh_qx_reader r;
    bh_qx_reader_init(&r, from);
    size_t off = 0;
    while (off < size) {
        size_t n = size - off < step ? size - off : step;
        while (n) {
            enum bh_qx_read_event ev;
            long k = bh_qx_reader_feed(&r, data + off, n, &ev);
            if (k < 0)
                abort(); /* allocation is bounded by the header check: never fails here */
            if (k == 0 && ev == BH_QX_READ_MORE)
                abort(); /* no progress */
            off += (size_t)k, n -= (size_t)k;
            bh_error e;
            if (ev == BH_QX_READ_MSG) {
                if (bh_qx_check_header(&r.hdr, from, &e) < 0 || r.body[r.hdr.len] != 0)
                    abort();
                parse_one(&r.hdr, r.body);
                bh_qx_reader_free(&r);
            } else if (ev == BH_QX_READ_SKIPPED) {
                if (bh_qx_check_header(&r.hdr, from, &e) == 0 || r.prefix_have > BH_QX_READER_PREFIX)
                    abort();
            }
        }
    }
    bh_qx_reader_free(&r);
    return 0;
}
