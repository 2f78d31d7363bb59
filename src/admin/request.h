/* The Admin API request header (docs/admin.md):
 *   <method>+<argument> <source> name|keyword <destination>\0<payload>
 * Parsed from bytes any local client may send, so every field has a hard limit and
 * anything malformed is refused as a whole. */
#pragma once
#include "err.h"
#include <stddef.h>

#define BH_REQ_MAX (64u * 1024u)  /* header + payload, as Qubes' qubesd */
#define BH_REQ_METHOD_MAX 128
#define BH_REQ_ARG_MAX 256
#define BH_REQ_NAME_MAX 64

struct bh_request {
    char method[BH_REQ_METHOD_MAX];
    char arg[BH_REQ_ARG_MAX];
    char src[BH_REQ_NAME_MAX];
    char dest[BH_REQ_NAME_MAX]; /* "dom0" for keyword adminvm; "uuid:..." kept as is */
    const char *payload;        /* points into the caller's buffer */
    size_t payload_len;
};

/* Parses a complete request (the client has half-closed). Returns 0 or -1 with err. */
int bh_request_parse(const char *buf, size_t len, struct bh_request *out, bh_error *err);
