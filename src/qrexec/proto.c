#include "proto.h"
#include "io.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint32_t get32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

void bh_qx_hdr_encode(uint8_t out[8], uint32_t type, uint32_t len)
{
    put32(out, type);
    put32(out + 4, len);
}

void bh_qx_hdr_decode(const uint8_t in[8], struct bh_qx_hdr *h)
{
    h->type = get32(in);
    h->len = get32(in + 4);
}

const char *bh_qx_type_name(uint32_t t)
{
    switch (t) {
    case BH_QX_MSG_DATA_STDIN: return "DATA_STDIN";
    case BH_QX_MSG_DATA_STDOUT: return "DATA_STDOUT";
    case BH_QX_MSG_DATA_STDERR: return "DATA_STDERR";
    case BH_QX_MSG_DATA_EXIT_CODE: return "DATA_EXIT_CODE";
    case BH_QX_MSG_EXEC_CMDLINE: return "EXEC_CMDLINE";
    case BH_QX_MSG_JUST_EXEC: return "JUST_EXEC";
    case BH_QX_MSG_SERVICE_CONNECT: return "SERVICE_CONNECT";
    case BH_QX_MSG_SERVICE_REFUSED: return "SERVICE_REFUSED";
    case BH_QX_MSG_CONNECTION_TERMINATED: return "CONNECTION_TERMINATED";
    case BH_QX_MSG_TRIGGER_SERVICE3: return "TRIGGER_SERVICE3";
    case BH_QX_MSG_TRIGGER_SERVICE4: return "TRIGGER_SERVICE4";
    case BH_QX_MSG_HELLO: return "HELLO";
    default: return "unknown";
    }
}

#define EXEC_FIXED 8u
#define TRIGGER3_FIXED (BH_QX_TARGET_LEN + BH_QX_IDENT_LEN)
#define TRIGGER4_FIXED (2 * BH_QX_TARGET_LEN + BH_QX_IDENT_LEN)

static int range(const struct bh_qx_hdr *h, uint32_t min, uint32_t max, bh_error *err)
{
    if (h->len < min || h->len > max)
        return bh_fail(err, EBADMSG, "%s message of %u bytes (allowed %u..%u)",
                       bh_qx_type_name(h->type), h->len, min, max);
    return 0;
}

int bh_qx_check_header(const struct bh_qx_hdr *h, enum bh_qx_peer from, bh_error *err)
{
    if (h->type == BH_QX_MSG_HELLO)
        return range(h, 4, 4, err);
    switch (from) {
    case BH_QX_FROM_AGENT:
        switch (h->type) {
        case BH_QX_MSG_TRIGGER_SERVICE3:
            return range(h, TRIGGER3_FIXED + 1, TRIGGER3_FIXED + BH_QX_MAX_SERVICE, err);
        case BH_QX_MSG_TRIGGER_SERVICE4:
            return range(h, TRIGGER4_FIXED + 1, TRIGGER4_FIXED + BH_QX_MAX_SERVICE, err);
        case BH_QX_MSG_CONNECTION_TERMINATED:
            return range(h, 8, 8, err);
        }
        break;
    case BH_QX_FROM_DAEMON:
    case BH_QX_FROM_CLIENT:
        switch (h->type) {
        case BH_QX_MSG_EXEC_CMDLINE:
        case BH_QX_MSG_JUST_EXEC:
            return range(h, EXEC_FIXED + 1, EXEC_FIXED + BH_QX_MAX_CMDLINE, err);
        case BH_QX_MSG_SERVICE_CONNECT:
            return range(h, EXEC_FIXED + 1, EXEC_FIXED + BH_QX_IDENT_LEN, err);
        case BH_QX_MSG_SERVICE_REFUSED:
            if (from == BH_QX_FROM_DAEMON)
                return range(h, BH_QX_IDENT_LEN, BH_QX_IDENT_LEN, err);
            break;
        }
        break;
    case BH_QX_FROM_DATA:
        switch (h->type) {
        case BH_QX_MSG_DATA_STDIN:
        case BH_QX_MSG_DATA_STDOUT:
        case BH_QX_MSG_DATA_STDERR:
            return range(h, 0, BH_QX_MAX_CHUNK, err);
        case BH_QX_MSG_DATA_EXIT_CODE:
            return range(h, 4, 4, err);
        }
        break;
    }
    return bh_fail(err, EBADMSG, "unexpected message type 0x%x (%s)", h->type, bh_qx_type_name(h->type));
}

int bh_qx_parse_hello(const uint8_t *p, size_t len, uint32_t *version, bh_error *err)
{
    if (len != 4)
        return bh_fail(err, EBADMSG, "HELLO of %zu bytes", len);
    *version = get32(p);
    return 0;
}

int bh_qx_negotiate(uint32_t mine, uint32_t theirs, uint32_t *out, bh_error *err)
{
    uint32_t v = theirs < mine ? theirs : mine;
    if (v < BH_QX_MIN_VERSION)
        return bh_fail(err, EPROTO, "peer speaks qrexec protocol %u, minimum is %u", theirs,
                       BH_QX_MIN_VERSION);
    *out = v;
    return 0;
}

int bh_qx_parse_exec(uint32_t type, const uint8_t *p, size_t len, struct bh_qx_exec *out,
                     bh_error *err)
{
    if (len <= EXEC_FIXED || len > EXEC_FIXED + BH_QX_MAX_CMDLINE)
        return bh_fail(err, EBADMSG, "exec message of %zu bytes", len);
    out->connect_domain = get32(p);
    out->connect_port = get32(p + 4);
    const char *s = (const char *)p + EXEC_FIXED;
    size_t n = len - EXEC_FIXED;
    const char *nul = memchr(s, '\0', n);
    if (!nul)
        return bh_fail(err, EBADMSG, "command line not NUL-terminated");
    if (type == BH_QX_MSG_SERVICE_CONNECT) {
        /* Qubes sends the ident as a zero-padded char[32]: the padding must be zeros. */
        if (n > BH_QX_IDENT_LEN)
            return bh_fail(err, EBADMSG, "SERVICE_CONNECT ident too long");
        for (const char *q = nul; q < s + n; q++)
            if (*q)
                return bh_fail(err, EBADMSG, "SERVICE_CONNECT ident has junk after NUL");
    } else if (nul != s + n - 1) {
        return bh_fail(err, EBADMSG, "NUL inside command line");
    }
    out->cmdline = s;
    out->cmdline_len = (size_t)(nul - s);
    if (out->cmdline_len == 0)
        return bh_fail(err, EBADMSG, "empty command line");
    return 0;
}

/* Copies a fixed-size char field that must be NUL-terminated inside its size. */
static int fixed_str(char *dst, const uint8_t *src, size_t size, const char *what, bh_error *err)
{
    const uint8_t *nul = memchr(src, '\0', size);
    if (!nul)
        return bh_fail(err, EBADMSG, "%s not NUL-terminated", what);
    memcpy(dst, src, (size_t)(nul - src) + 1);
    return 0;
}

int bh_qx_parse_trigger(uint32_t type, const uint8_t *p, size_t len, struct bh_qx_trigger *out,
                        bh_error *err)
{
    size_t fixed = type == BH_QX_MSG_TRIGGER_SERVICE4 ? TRIGGER4_FIXED : TRIGGER3_FIXED;
    if (type != BH_QX_MSG_TRIGGER_SERVICE3 && type != BH_QX_MSG_TRIGGER_SERVICE4)
        return bh_fail(err, EBADMSG, "not a trigger message");
    if (len <= fixed || len > fixed + BH_QX_MAX_SERVICE)
        return bh_fail(err, EBADMSG, "trigger message of %zu bytes", len);
    memset(out, 0, sizeof *out);
    if (type == BH_QX_MSG_TRIGGER_SERVICE4) {
        if (fixed_str(out->source, p, BH_QX_TARGET_LEN, "source", err) < 0)
            return -1;
        p += BH_QX_TARGET_LEN;
    }
    /* The fields are char[N] and "null terminated": past the NUL, Qubes' senders leave
     * zeros (memset + strncpy), and so do we; the reader only looks up to the NUL. */
    if (fixed_str(out->target, p, BH_QX_TARGET_LEN, "target", err) < 0 ||
        fixed_str(out->ident, p + BH_QX_TARGET_LEN, BH_QX_IDENT_LEN, "ident", err) < 0)
        return -1;
    const char *svc = (const char *)p + BH_QX_TARGET_LEN + BH_QX_IDENT_LEN;
    size_t n = len - fixed;
    if (memchr(svc, '\0', n) != svc + n - 1)
        return bh_fail(err, EBADMSG, "service name not a single NUL-terminated string");
    out->service = svc;
    if (!bh_qx_target_valid(out->target))
        return bh_fail(err, EINVAL, "invalid target name");
    if (out->source[0] && !bh_qx_target_valid(out->source))
        return bh_fail(err, EINVAL, "invalid source name");
    if (!bh_qx_service_valid(out->service))
        return bh_fail(err, EINVAL, "invalid service name");
    /* The ident is the agent's business; Qubes allows spaces in it. */
    if (!bh_qx_ident_valid(out->ident))
        return bh_fail(err, EINVAL, "invalid request ident");
    return 0;
}

int bh_qx_parse_refused(const uint8_t *p, size_t len, char ident[BH_QX_IDENT_LEN], bh_error *err)
{
    if (len != BH_QX_IDENT_LEN)
        return bh_fail(err, EBADMSG, "SERVICE_REFUSED of %zu bytes", len);
    return fixed_str(ident, p, BH_QX_IDENT_LEN, "ident", err);
}

int bh_qx_parse_terminated(const uint8_t *p, size_t len, uint32_t *domain, uint32_t *port,
                           bh_error *err)
{
    if (len != 8)
        return bh_fail(err, EBADMSG, "CONNECTION_TERMINATED of %zu bytes", len);
    *domain = get32(p);
    *port = get32(p + 4);
    return 0;
}

int bh_qx_parse_exit_code(const uint8_t *p, size_t len, int32_t *code, bh_error *err)
{
    if (len != 4)
        return bh_fail(err, EBADMSG, "EXIT_CODE of %zu bytes", len);
    *code = (int32_t)get32(p);
    return 0;
}

static bool chars_ok(const char *s, const char *extra, size_t max)
{
    size_t n = strlen(s);
    if (n == 0 || n > max)
        return false;
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
            c == '_' || c == '-' || c == '.')
            continue;
        if (extra && strchr(extra, c))
            continue;
        return false;
    }
    return true;
}

bool bh_qx_target_valid(const char *s) { return chars_ok(s, "@:", BH_QX_TARGET_LEN - 1); }
bool bh_qx_ident_valid(const char *s) { return chars_ok(s, " ", BH_QX_IDENT_LEN - 1); }

bool bh_qx_service_valid(const char *s)
{
    if (!chars_ok(s, "+", BH_QX_MAX_SERVICE - 1))
        return false;
    const char *plus = strchr(s, '+');
    size_t name_len = plus ? (size_t)(plus - s) : strlen(s);
    /* A service name is a file name in a service directory: never ".", "..", empty. */
    if (name_len == 0 || name_len > BH_QX_SERVICE_NAME_MAX || s[0] == '.')
        return false;
    if (plus && (!strcmp(plus + 1, ".") || !strcmp(plus + 1, "..")))
        return false;
    return true;
}

int bh_qx_send2(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen)
{
    uint8_t h[8];
    if (alen + blen > UINT32_MAX) {
        errno = EMSGSIZE;
        return -1;
    }
    bh_qx_hdr_encode(h, type, (uint32_t)(alen + blen));
    struct iovec iov[3] = { { h, 8 }, { (void *)a, alen }, { (void *)b, blen } };
    int cnt = 3, i = 0;
    while (i < cnt) {
        ssize_t w = writev(fd, iov + i, cnt - i);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        size_t left = (size_t)w;
        while (i < cnt && left >= iov[i].iov_len)
            left -= iov[i++].iov_len;
        if (i < cnt) {
            iov[i].iov_base = (char *)iov[i].iov_base + left;
            iov[i].iov_len -= left;
        }
    }
    return 0;
}

int bh_qx_send(int fd, uint32_t type, const void *body, size_t len)
{
    return bh_qx_send2(fd, type, body, len, NULL, 0);
}

int bh_qx_send_hello_v(int fd, uint32_t version)
{
    uint8_t v[4];
    put32(v, version);
    return bh_qx_send(fd, BH_QX_MSG_HELLO, v, 4);
}

int bh_qx_send_hello(int fd) { return bh_qx_send_hello_v(fd, BH_QX_VERSION); }

int bh_qx_send_exec(int fd, uint32_t type, uint32_t domain, uint32_t port, const char *cmdline,
                    size_t n)
{
    uint8_t p[8];
    put32(p, domain);
    put32(p + 4, port);
    return bh_qx_send2(fd, type, p, 8, cmdline, n);
}

int bh_qx_send_exit_code(int fd, int32_t code)
{
    uint8_t v[4];
    put32(v, (uint32_t)code);
    return bh_qx_send(fd, BH_QX_MSG_DATA_EXIT_CODE, v, 4);
}

int bh_qx_send_trigger3(int fd, const char *target, const char *ident, const char *service)
{
    uint8_t fixed[TRIGGER3_FIXED];
    memset(fixed, 0, sizeof fixed);
    strncpy((char *)fixed, target, BH_QX_TARGET_LEN - 1);
    strncpy((char *)fixed + BH_QX_TARGET_LEN, ident, BH_QX_IDENT_LEN - 1);
    return bh_qx_send2(fd, BH_QX_MSG_TRIGGER_SERVICE3, fixed, sizeof fixed, service, strlen(service) + 1);
}

int bh_qx_send_trigger4(int fd, const char *source, const char *target, const char *ident,
                        const char *service)
{
    uint8_t fixed[TRIGGER4_FIXED];
    memset(fixed, 0, sizeof fixed);
    strncpy((char *)fixed, source, BH_QX_TARGET_LEN - 1);
    strncpy((char *)fixed + BH_QX_TARGET_LEN, target, BH_QX_TARGET_LEN - 1);
    strncpy((char *)fixed + 2 * BH_QX_TARGET_LEN, ident, BH_QX_IDENT_LEN - 1);
    return bh_qx_send2(fd, BH_QX_MSG_TRIGGER_SERVICE4, fixed, sizeof fixed, service, strlen(service) + 1);
}

int bh_qx_recv(int fd, enum bh_qx_peer from, struct bh_qx_hdr *h, uint8_t **body, bh_error *err)
{
    uint8_t raw[8];
    *body = NULL;
    ssize_t r = bh_read_all(fd, raw, 8);
    if (r < 0)
        return bh_fail_errno(err, "reading message header");
    if (r == 0)
        return 1;
    if (r < 8)
        return bh_fail(err, EBADMSG, "truncated message header");
    bh_qx_hdr_decode(raw, h);
    if (bh_qx_check_header(h, from, err) < 0)
        return -1;
    uint8_t *b = malloc((size_t)h->len + 1);
    if (!b)
        return bh_fail_errno(err, "malloc");
    r = bh_read_all(fd, b, h->len);
    if (r < 0 || (size_t)r != h->len) {
        free(b);
        return r < 0 ? bh_fail_errno(err, "reading message body")
                     : bh_fail(err, EBADMSG, "truncated %s message", bh_qx_type_name(h->type));
    }
    b[h->len] = 0;
    *body = b;
    return 0;
}

int bh_qx_handshake(int fd, enum bh_qx_peer from, uint32_t *version, bh_error *err)
{
    return bh_qx_handshake_v(fd, from, BH_QX_VERSION, version, err);
}

int bh_qx_handshake_v(int fd, enum bh_qx_peer from, uint32_t mine, uint32_t *version, bh_error *err)
{
    if (bh_qx_send_hello_v(fd, mine) < 0)
        return bh_fail_errno(err, "sending HELLO");
    uint32_t theirs = 0;
    if (bh_qx_recv_hello(fd, from, &theirs, err) < 0)
        return -1;
    return bh_qx_negotiate(mine, theirs, version, err);
}

int bh_qx_recv_hello(int fd, enum bh_qx_peer from, uint32_t *theirs, bh_error *err)
{
    struct bh_qx_hdr h;
    uint8_t *b;
    int r = bh_qx_recv(fd, from, &h, &b, err);
    if (r == 1)
        return bh_fail(err, ECONNRESET, "peer closed before HELLO");
    if (r < 0)
        return bh_prefix(err, "HELLO");
    int ok = h.type == BH_QX_MSG_HELLO ? bh_qx_parse_hello(b, h.len, theirs, err)
                                       : bh_fail(err, EPROTO, "expected HELLO, got %s", bh_qx_type_name(h.type));
    free(b);
    return ok;
}
