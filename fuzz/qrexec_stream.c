/* libFuzzer: the data-stream parser (bh_qx_rx_parse, the code the stream pump runs on
 * every byte the other end sends): framing, chunk limits, EOFs, exit codes, filtering,
 * back-pressure. In memory: no sockets, no fds.
 *
 * Input: one byte of settings, then the bytes the other end sends. Settings: bit 0 we
 * run the service (else we are the requester), bit 1 filter stdout, bit 2 filter
 * stderr, bit 3 nobody takes our input any more (in_fd closed), bits 4-7 how the bytes
 * arrive (in pieces of 1 << (bits) bytes, like partial socket reads; at least 64 bytes
 * on inputs over 4 KiB).
 * Invariants: every byte is consumed in order or left for later, never more than the
 * back-pressure limit plus one chunk is queued, filtered output has no control
 * characters, nothing is parsed after the exit code, a closed input queues nothing.
 * On inputs of odd length a direct sink (direct_in) takes half of each payload it is
 * offered: it is offered only our input's payload, only while nothing is queued before
 * it, and filtered like the queue. */
#include "proto.h"
#include "stream.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define INQ_HIGH (8 * BH_QX_MAX_CHUNK)

static bool shown_safe(const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)p[i];
        if ((c < 0x20 || c > 0x7e) && c != '\t' && c != '\n' && c != '\r' && c != '\b' && c != '\a')
            return false;
    }
    return true;
}

static bool filter_err;
static size_t err_bytes;
static struct bh_qx_rx *cur;

static size_t direct_in(void *ctx, const char *p, size_t n)
{
    (void)ctx;
    if (n == 0 || n > BH_QX_MAX_CHUNK || cur->inq->len || !cur->in_open || cur->in_eof ||
        (!cur->is_service && cur->filter_out && !shown_safe(p, n)))
        abort();
    return n / 2;
}

static void on_stderr(void *ctx, const char *p, size_t n)
{
    (void)ctx;
    if (n == 0 || n > BH_QX_MAX_CHUNK || (filter_err && !shown_safe(p, n)))
        abort();
    err_bytes += n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t cfg = data[0];
    data++, size--;
    bh_buf rq, inq;
    bh_buf_init(&rq, 16 * (BH_QX_MAX_CHUNK + 8));
    bh_buf_init(&inq, 0);
    filter_err = cfg & 4;
    err_bytes = 0;
    struct bh_qx_rx rx = { .is_service = cfg & 1, .filter_out = cfg & 2, .filter_err = filter_err,
                           .in_open = !(cfg & 8), .inq = &inq, .on_stderr = on_stderr,
                           .direct_in = size & 1 ? direct_in : NULL };
    cur = &rx;
    /* pieces of 1 << bits bytes; at least 64 on big inputs (one byte at a time over
     * 64 KiB would cost 64 Ki rounds for nothing the small inputs do not reach) */
    size_t piece = (size_t)1 << ((cfg >> 4) + (size > 4096 ? 6 : 0)), fed = 0, consumed = 0, taken = 0;
    bh_error err = { 0 };
    int r = 0;
    while (r == 0) {
        /* more bytes arrive, as far as the receive buffer has room */
        size_t n = size - fed < piece ? size - fed : piece;
        if (n > rq.limit - rq.len)
            n = rq.limit - rq.len;
        if (n && bh_buf_add(&rq, data + fed, n) < 0)
            abort();
        fed += n;
        size_t before = rq.len;
        bool had_exit = rx.have_exit;
        r = bh_qx_rx_parse(&rx, &rq, INQ_HIGH, &err);
        if (rq.len > before || (had_exit && rq.len != before))
            abort(); /* bytes appeared, or were parsed after the exit code */
        /* what was consumed is exactly the bytes that came first, in order (the head of
         * what is left is checked when it moves: checking all of it each time would be
         * quadratic on inputs fed one byte at a time) */
        consumed += before - rq.len;
        if (consumed > fed || rq.len != fed - consumed)
            abort();
        if (before != rq.len && rq.len && memcmp(rq.data, data + consumed, rq.len < 64 ? rq.len : 64))
            abort();
        if (inq.len > INQ_HIGH + BH_QX_MAX_CHUNK || (!rx.in_open && inq.len))
            abort();
        if (!rx.is_service && rx.filter_out && inq.len && !shown_safe(inq.data, inq.len))
            abort();
        if (rx.is_service && (rx.have_exit || err_bytes))
            abort(); /* a service never takes an exit code or stderr from the requester */
        /* the local reader takes half of what waits (all of it if little) */
        size_t take = inq.len > 4096 ? inq.len / 2 : inq.len;
        bh_buf_consume(&inq, take);
        taken += take;
        if (rx.have_exit || (n == 0 && before == rq.len && take == 0))
            break;
    }
    if (r < 0 && !err.msg[0])
        abort(); /* a refusal says why */
    (void)taken;
    bh_buf_free(&rq);
    bh_buf_free(&inq);
    return 0;
}
