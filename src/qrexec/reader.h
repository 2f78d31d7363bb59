/* An incremental reader of qrexec messages from a peer that must not stall us or make
 * us lose the message boundaries: bytes are fed as they arrive (non-blocking fds), a
 * header is checked (bh_qx_check_header) as soon as it is complete, and a message that
 * fails the check (unknown type, length out of its type's limits) is skipped byte for
 * byte instead of buffered, so one bad message costs the sender that message only.
 * The first bytes of a skipped message are kept, so that the refusal can name the
 * request (a trigger's ident). Memory is bounded by the largest valid message. */
#pragma once
#include "proto.h"

#define BH_QX_READER_PREFIX 160 /* room for TRIGGER_SERVICE4's fixed part */

enum bh_qx_read_event {
    BH_QX_READ_MORE,    /* nothing complete yet: feed more */
    BH_QX_READ_MSG,     /* a message that passed the header check: hdr, body */
    BH_QX_READ_SKIPPED, /* a message that failed it, now fully skipped: hdr, prefix, why */
};

struct bh_qx_reader {
    enum bh_qx_peer from;
    uint8_t raw[8];
    size_t raw_have;
    struct bh_qx_hdr hdr;
    bool in_body, skipping;
    uint8_t *body;          /* a valid message's body, NUL-appended (owned: take or free) */
    size_t body_have;
    uint8_t prefix[BH_QX_READER_PREFIX];
    size_t prefix_have;
    uint64_t skip_left;
    bh_error why;           /* why the last message was skipped */
};

void bh_qx_reader_init(struct bh_qx_reader *r, enum bh_qx_peer from);
void bh_qx_reader_free(struct bh_qx_reader *r);
/* Consumes up to n bytes; stops right after a message completes (*ev says which).
 * Returns the bytes consumed, or -1 on allocation failure. After BH_QX_READ_MSG the
 * caller owns r->body (set it to NULL after taking it, or call bh_qx_reader_free). */
long bh_qx_reader_feed(struct bh_qx_reader *r, const uint8_t *buf, size_t n, enum bh_qx_read_event *ev);
/* True when a header or body is partly read (the peer is mid-message). */
bool bh_qx_reader_partial(const struct bh_qx_reader *r);
