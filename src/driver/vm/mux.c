/* Frame parsing of the vchan multiplexer (mux.h): the only code that interprets the
 * bytes a guest writes to its virtio-serial port. */
#include "mux.h"
#include <string.h>

static uint32_t le32(const uint8_t *p) { return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24; }

void bh_mux_header(uint8_t hdr[BH_MUX_HDR], uint32_t type, uint32_t id, uint32_t len)
{
    uint32_t v[3] = { type, id, len };
    for (int i = 0; i < 3; i++)
        for (int b = 0; b < 4; b++)
            hdr[i * 4 + b] = (uint8_t)(v[i] >> (8 * b));
}

/* one decimal u32 without leading zeros (or "0"), followed by '.' */
static size_t number(const uint8_t *s, size_t len)
{
    size_t i = 0;
    uint64_t v = 0;
    while (i < len && s[i] >= '0' && s[i] <= '9') {
        v = v * 10 + (uint64_t)(s[i] - '0');
        if (v > UINT32_MAX || i > 9)
            return 0;
        i++;
    }
    if (i == 0 || (i > 1 && s[0] == '0'))
        return 0;
    return i;
}

int bh_mux_name_ok(const uint8_t *name, size_t len)
{
    if (len < 6 || len >= BH_MUX_NAME_MAX || memcmp(name, "vchan.", 6))
        return 0;
    size_t i = 6;
    for (int k = 0; k < 3; k++) {
        size_t n = number(name + i, len - i);
        if (!n)
            return 0;
        i += n;
        if (i >= len || name[i] != '.')
            return 0;
        i++;
    }
    return len - i == 4 && !memcmp(name + i, "sock", 4);
}

long bh_mux_parse(const uint8_t *buf, size_t len, struct bh_mux_frame *out)
{
    if (len < BH_MUX_HDR)
        return 0;
    struct bh_mux_frame f = { le32(buf), le32(buf + 4), le32(buf + 8), buf + BH_MUX_HDR };
    if (f.len > BH_MUX_DATA_MAX)
        return -1;
    switch (f.type) {
    case BH_MUX_LISTEN:
    case BH_MUX_UNLISTEN:
    case BH_MUX_OPEN:
        break;
    case BH_MUX_DATA:
        if (f.len == 0)
            return -1;
        break;
    case BH_MUX_EOF:
    case BH_MUX_CLOSE:
    case BH_MUX_SHUTDOWN:
    case BH_MUX_SYNC:
    case BH_MUX_HELLO:
        if (f.len != 0)
            return -1;
        break;
    case BH_MUX_ACK:
        if (f.len != 4)
            return -1;
        break;
    default:
        return -1;
    }
    if (len - BH_MUX_HDR < f.len)
        return 0;
    if ((f.type == BH_MUX_LISTEN || f.type == BH_MUX_UNLISTEN || f.type == BH_MUX_OPEN) &&
        !bh_mux_name_ok(f.payload, f.len))
        return -1;
    *out = f;
    return (long)(BH_MUX_HDR + f.len);
}
