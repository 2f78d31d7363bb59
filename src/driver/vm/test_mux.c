/* Unit tests of the vchan multiplexer's frame parser (mux.c): the bytes a hostile
 * guest writes to its virtio-serial port. */
#include "driver/vm/mux.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static size_t frame(uint8_t *buf, uint32_t type, uint32_t id, const void *p, uint32_t len)
{
    bh_mux_header(buf, type, id, len);
    if (len)
        memcpy(buf + BH_MUX_HDR, p, len);
    return BH_MUX_HDR + len;
}

int main(void)
{
    static uint8_t buf[BH_MUX_HDR + BH_MUX_DATA_MAX + 16], payload[BH_MUX_DATA_MAX];
    struct bh_mux_frame f;
    /* names */
    CHECK(bh_mux_name_ok((const uint8_t *)"vchan.5.0.512.sock", 18));
    CHECK(bh_mux_name_ok((const uint8_t *)"vchan.0.4294967295.1.sock", 25));
    CHECK(!bh_mux_name_ok((const uint8_t *)"vchan.0.4294967296.1.sock", 25)); /* > u32 */
    CHECK(!bh_mux_name_ok((const uint8_t *)"vchan.05.0.512.sock", 19));        /* leading zero */
    CHECK(!bh_mux_name_ok((const uint8_t *)"../etc/passwd", 13));
    CHECK(!bh_mux_name_ok((const uint8_t *)"vchan.5.0.512.sock/x", 20));
    CHECK(!bh_mux_name_ok((const uint8_t *)"vchan.5.0.sock", 14));
    CHECK(!bh_mux_name_ok((const uint8_t *)"vchan.5\0.0.512.sock", 19));
    /* a good LISTEN, then incomplete input */
    size_t n = frame(buf, BH_MUX_LISTEN, 0, "vchan.5.0.512.sock", 18);
    CHECK(bh_mux_parse(buf, n, &f) == (long)n && f.type == BH_MUX_LISTEN && f.len == 18);
    for (size_t i = 0; i < n; i++)
        CHECK(bh_mux_parse(buf, i, &f) == 0);
    /* LISTEN of a path */
    n = frame(buf, BH_MUX_OPEN, 3, "/run/x.sock", 11);
    CHECK(bh_mux_parse(buf, n, &f) == -1);
    /* oversized: refused from the header alone, before the payload arrives */
    bh_mux_header(buf, BH_MUX_DATA, 1, BH_MUX_DATA_MAX + 1);
    CHECK(bh_mux_parse(buf, BH_MUX_HDR, &f) == -1);
    n = frame(buf, BH_MUX_DATA, 1, payload, BH_MUX_DATA_MAX);
    CHECK(bh_mux_parse(buf, n, &f) == (long)n);
    /* empty DATA, EOF with payload, ACK not 4 bytes, unknown type */
    n = frame(buf, BH_MUX_DATA, 1, NULL, 0);
    CHECK(bh_mux_parse(buf, n, &f) == -1);
    n = frame(buf, BH_MUX_EOF, 1, "x", 1);
    CHECK(bh_mux_parse(buf, n, &f) == -1);
    n = frame(buf, BH_MUX_ACK, 1, "abc", 3);
    CHECK(bh_mux_parse(buf, n, &f) == -1);
    n = frame(buf, BH_MUX_ACK, 1, "abcd", 4);
    CHECK(bh_mux_parse(buf, n, &f) == (long)n);
    n = frame(buf, 0, 1, NULL, 0);
    CHECK(bh_mux_parse(buf, n, &f) == -1);
    n = frame(buf, 11, 1, NULL, 0);
    CHECK(bh_mux_parse(buf, n, &f) == -1);
    n = frame(buf, 0x80000004u, 1, "a", 1);
    CHECK(bh_mux_parse(buf, n, &f) == -1);
    if (fails)
        return 1;
    puts("mux: ok");
    return 0;
}
