/* libFuzzer harness: the vchan multiplexer's frame parser (src/driver/vm/mux.c), fed
 * what a hostile guest writes to its virtio-serial port: a byte stream of frames. */
#include "driver/vm/mux.h"
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;
    while (off < size) {
        struct bh_mux_frame f;
        long r = bh_mux_parse(data + off, size - off, &f);
        if (r <= 0)
            break;
        if (f.len > BH_MUX_DATA_MAX || (size_t)r != BH_MUX_HDR + f.len)
            __builtin_trap();
        off += (size_t)r;
    }
    return 0;
}
