/* qrexec messages (docs/qrexec.md), byte-compatible with Qubes OS.
 *
 * Every message is a little-endian {u32 type; u32 len;} header followed by len bytes.
 * This file is the only place that knows the layouts; every byte that comes from a
 * qube goes through bh_qx_check_header() and one of the bh_qx_parse_*() functions,
 * which enforce the length limits before anything else looks at it. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
    BH_QX_MSG_DATA_STDIN = 0x190,
    BH_QX_MSG_DATA_STDOUT = 0x191,
    BH_QX_MSG_DATA_STDERR = 0x192,
    BH_QX_MSG_DATA_EXIT_CODE = 0x193,
    BH_QX_MSG_EXEC_CMDLINE = 0x200,
    BH_QX_MSG_JUST_EXEC = 0x201,
    BH_QX_MSG_SERVICE_CONNECT = 0x202,
    BH_QX_MSG_SERVICE_REFUSED = 0x203,
    BH_QX_MSG_CONNECTION_TERMINATED = 0x211,
    BH_QX_MSG_TRIGGER_SERVICE3 = 0x212,
    BH_QX_MSG_TRIGGER_SERVICE4 = 0x213,
    BH_QX_MSG_HELLO = 0x300,
};

/* Versions, as qubes-core-qrexec 4.3+ (libqrexec/qrexec.h):
 *  - agent <-> daemon (control channel) and every data stream: we speak 4 (4 added
 *    TRIGGER_SERVICE4; 3 is Qubes R4.1-R4.2), both ends use the lower of the two HELLOs;
 *  - dom0 client <-> daemon socket: always 3 (Qubes' QREXEC_CLIENT_PROTOCOL_VERSION). */
#define BH_QX_VERSION 4           /* what we speak on control channels and data streams */
#define BH_QX_CLIENT_VERSION 3    /* what a daemon and its local clients say */
#define BH_QX_MIN_VERSION 3       /* below: refused (64 KiB chunks and TRIGGER_SERVICE3 needed) */
#define BH_QX_MAX_CHUNK 65536u    /* data chunk limit for protocol 3+ */
#define BH_QX_MAX_CMDLINE 65535u  /* Qubes' MAX_QREXEC_CMD_LEN, NUL included */
#define BH_QX_MAX_SERVICE 65000u  /* Qubes' MAX_SERVICE_NAME_LEN */
#define BH_QX_TARGET_LEN 64
#define BH_QX_IDENT_LEN 32
#define BH_QX_VCHAN_BASE_PORT 512

/* The SERVICE_NAME part of "service+arg" in Qubes is limited to 31 characters,
 * the whole "service+arg" to what fits a message. */
#define BH_QX_SERVICE_NAME_MAX 31

struct bh_qx_hdr {
    uint32_t type;
    uint32_t len;
};

/* MSG_EXEC_CMDLINE / JUST_EXEC / SERVICE_CONNECT, as parsed */
struct bh_qx_exec {
    uint32_t connect_domain;
    uint32_t connect_port;
    const char *cmdline; /* points into the message buffer; NUL-terminated */
    size_t cmdline_len;  /* without the NUL */
};

/* MSG_TRIGGER_SERVICE3 / 4, as parsed */
struct bh_qx_trigger {
    char source[BH_QX_TARGET_LEN];   /* SERVICE4 only; never trusted, see daemon */
    char target[BH_QX_TARGET_LEN];
    char ident[BH_QX_IDENT_LEN];
    const char *service;             /* "service+arg", points into the buffer */
};

/* Who sends a message decides what it may send; the header check uses this. */
enum bh_qx_peer {
    BH_QX_FROM_AGENT,   /* agent -> daemon on the control channel (qube-controlled) */
    BH_QX_FROM_DAEMON,  /* daemon -> agent on the control channel */
    BH_QX_FROM_CLIENT,  /* local client -> daemon (host socket) */
    BH_QX_FROM_DATA,    /* either end of a data stream */
};

/* Header (de)serialisation; the wire is little-endian regardless of the host. */
void bh_qx_hdr_encode(uint8_t out[8], uint32_t type, uint32_t len);
void bh_qx_hdr_decode(const uint8_t in[8], struct bh_qx_hdr *h);

/* Checks that a header is acceptable from that peer before its body is read:
 * known type, and a length within the type's limits. */
int bh_qx_check_header(const struct bh_qx_hdr *h, enum bh_qx_peer from, bh_error *err);

int bh_qx_parse_hello(const uint8_t *p, size_t len, uint32_t *version, bh_error *err);
/* The version both ends use: the lower one; below the minimum is an error. */
int bh_qx_negotiate(uint32_t mine, uint32_t theirs, uint32_t *out, bh_error *err);
int bh_qx_parse_exec(uint32_t type, const uint8_t *p, size_t len, struct bh_qx_exec *out,
                     bh_error *err);
int bh_qx_parse_trigger(uint32_t type, const uint8_t *p, size_t len, struct bh_qx_trigger *out,
                        bh_error *err);
int bh_qx_parse_refused(const uint8_t *p, size_t len, char ident[BH_QX_IDENT_LEN], bh_error *err);
int bh_qx_parse_terminated(const uint8_t *p, size_t len, uint32_t *domain, uint32_t *port,
                           bh_error *err);
int bh_qx_parse_exit_code(const uint8_t *p, size_t len, int32_t *code, bh_error *err);

/* Qubes' identifiers: target names may carry '@' and ':', service names '+'. A name with
 * anything else is refused (Qubes replaces such bytes with '_'; refusing is stricter). */
bool bh_qx_target_valid(const char *s);
bool bh_qx_service_valid(const char *s);
bool bh_qx_ident_valid(const char *s);

/* Writers. All return 0 or -1 with errno. */
int bh_qx_send(int fd, uint32_t type, const void *body, size_t len);
int bh_qx_send2(int fd, uint32_t type, const void *a, size_t alen, const void *b, size_t blen);
/* HELLO {version}; bh_qx_send_hello() sends BH_QX_VERSION. */
int bh_qx_send_hello(int fd);
int bh_qx_send_hello_v(int fd, uint32_t version);
int bh_qx_send_exec(int fd, uint32_t type, uint32_t domain, uint32_t port, const char *cmdline,
                    size_t cmdline_len_with_nul);
int bh_qx_send_exit_code(int fd, int32_t code);
int bh_qx_send_trigger3(int fd, const char *target, const char *ident, const char *service);
/* source "" = none (the caller is the source; a name is only for a RemoteVM's relay). */
int bh_qx_send_trigger4(int fd, const char *source, const char *target, const char *ident,
                        const char *service);

/* Reads one whole message with a blocking fd: header checked for `from`, body into a
 * malloc'd buffer (*body, NUL-appended for convenience). 0 ok, -1 error, 1 clean EOF
 * before any byte. */
int bh_qx_recv(int fd, enum bh_qx_peer from, struct bh_qx_hdr *h, uint8_t **body, bh_error *err);

/* Both ends send HELLO {BH_QX_VERSION}, then read the other's; returns the negotiated
 * version (control channel from the agent's side, data streams). */
int bh_qx_handshake(int fd, enum bh_qx_peer from, uint32_t *version, bh_error *err);
/* The same with an explicit version to send (a daemon's local clients say 3). */
int bh_qx_handshake_v(int fd, enum bh_qx_peer from, uint32_t mine, uint32_t *version, bh_error *err);
/* Reads one HELLO and checks it is one (the side that waits for the peer's HELLO first). */
int bh_qx_recv_hello(int fd, enum bh_qx_peer from, uint32_t *theirs, bh_error *err);

const char *bh_qx_type_name(uint32_t type);
