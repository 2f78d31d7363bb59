/* The vchan multiplexer carried over one virtio-serial port between a VM qube and the
 * host (docs/vm-engine.md, "qrexec over virtio-serial").
 *
 * Each side runs bulkhead-vchan-bridge on its own libvchan-socket directory (the host's
 * <runtime>/qubes/<name>/vchan, the guest's /run/qubes/vchan). A listening socket that
 * appears on one side is mirrored by a proxy listener of the same name on the other;
 * a connection to a proxy is carried as a numbered stream to the real socket. So
 * qrexec-daemon and the agent see exactly the directory layout they see for an `ns`
 * qube, and nothing in qrexec knows about VMs.
 *
 * Frame: struct { u32 type; u32 id; u32 len; } little-endian, then len bytes.
 * Every byte comes from the other side, which for the host is a hostile guest: the
 * parser has hard limits and refuses anything malformed. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define BH_MUX_HDR 12u
#define BH_MUX_DATA_MAX 65536u   /* payload limit of any frame */
#define BH_MUX_NAME_MAX 64u      /* vchan.<u32>.<u32>.<u32>.sock fits */
#define BH_MUX_WINDOW (256u * 1024u) /* unacknowledged bytes per stream and direction */

enum bh_mux_type {
    BH_MUX_LISTEN = 1,   /* payload: name; a listening socket exists on the sender's side */
    BH_MUX_UNLISTEN = 2, /* payload: name; it is gone */
    BH_MUX_OPEN = 3,     /* id, payload: name; connect stream id to that socket */
    BH_MUX_DATA = 4,     /* id, payload: bytes (1..DATA_MAX) */
    BH_MUX_EOF = 5,      /* id; the sender's end will send no more data */
    BH_MUX_CLOSE = 6,    /* id; stream gone (or OPEN failed) */
    BH_MUX_ACK = 7,      /* id, payload: u32 bytes the receiver has delivered */
    BH_MUX_SHUTDOWN = 8, /* host -> guest: stop cleanly (the guest's init gets SIGTERM) */
    BH_MUX_SYNC = 9,     /* host -> guest, first frame: announce your listeners */
    BH_MUX_HELLO = 10,   /* guest -> host, repeated until SYNC comes: a SYNC sent before
                          * the guest opened its port is dropped by the guest kernel */
};

struct bh_mux_frame {
    uint32_t type, id, len;
    const uint8_t *payload; /* points into the parsed buffer */
};

/* Parses one frame at the start of buf. Returns the bytes it takes (> 0), 0 if more
 * bytes are needed, -1 if the frame is invalid (unknown type, oversized, a name that
 * is not a vchan socket name, a DATA of length 0, an ACK that is not 4 bytes, ...). */
long bh_mux_parse(const uint8_t *buf, size_t len, struct bh_mux_frame *out);
/* Writes a frame header into hdr. */
void bh_mux_header(uint8_t hdr[BH_MUX_HDR], uint32_t type, uint32_t id, uint32_t len);
/* Is this (not NUL-terminated) name exactly vchan.<u32>.<u32>.<u32>.sock? */
int bh_mux_name_ok(const uint8_t *name, size_t len);
