#include "reader.h"
#include <stdlib.h>
#include <string.h>

void bh_qx_reader_init(struct bh_qx_reader *r, enum bh_qx_peer from)
{
    memset(r, 0, sizeof *r);
    r->from = from;
}

void bh_qx_reader_free(struct bh_qx_reader *r)
{
    free(r->body);
    r->body = NULL;
}

bool bh_qx_reader_partial(const struct bh_qx_reader *r) { return r->raw_have > 0 || r->in_body; }

static void next_message(struct bh_qx_reader *r)
{
    r->raw_have = 0;
    r->in_body = r->skipping = false;
    r->body_have = 0;
    r->skip_left = 0;
}

long bh_qx_reader_feed(struct bh_qx_reader *r, const uint8_t *buf, size_t n, enum bh_qx_read_event *ev)
{
    size_t used = 0;
    *ev = BH_QX_READ_MORE;
    if (!r->in_body) {
        if (r->body) { /* a message the caller did not take */
            free(r->body);
            r->body = NULL;
        }
        size_t k = 8 - r->raw_have < n ? 8 - r->raw_have : n;
        memcpy(r->raw + r->raw_have, buf, k);
        r->raw_have += k;
        used += k;
        if (r->raw_have < 8)
            return (long)used;
        bh_qx_hdr_decode(r->raw, &r->hdr);
        r->in_body = true;
        r->prefix_have = 0;
        memset(&r->why, 0, sizeof r->why);
        if (bh_qx_check_header(&r->hdr, r->from, &r->why) < 0) {
            r->skipping = true;
            r->skip_left = r->hdr.len;
        } else {
            r->body = malloc((size_t)r->hdr.len + 1);
            if (!r->body)
                return -1;
            r->body_have = 0;
        }
    }
    if (r->skipping) {
        size_t k = (uint64_t)(n - used) < r->skip_left ? n - used : (size_t)r->skip_left;
        if (r->prefix_have < sizeof r->prefix) {
            size_t p = sizeof r->prefix - r->prefix_have < k ? sizeof r->prefix - r->prefix_have : k;
            memcpy(r->prefix + r->prefix_have, buf + used, p);
            r->prefix_have += p;
        }
        used += k;
        r->skip_left -= k;
        if (r->skip_left == 0) {
            *ev = BH_QX_READ_SKIPPED;
            next_message(r);
        }
        return (long)used;
    }
    size_t want = r->hdr.len - r->body_have;
    size_t k = n - used < want ? n - used : want;
    memcpy(r->body + r->body_have, buf + used, k);
    r->body_have += k;
    used += k;
    if (r->body_have == r->hdr.len) {
        r->body[r->hdr.len] = 0;
        *ev = BH_QX_READ_MSG;
        next_message(r);
    }
    return (long)used;
}
