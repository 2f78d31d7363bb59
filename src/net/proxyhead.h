/* The request head of the updates proxy (qubes.UpdatesProxy, in the updates qube):
 * bytes a template sends, so parsed strictly and bounded. Only what a package manager
 * sends through a proxy is taken:
 *   CONNECT host:port HTTP/1.x            (TLS to the repository)
 *   METHOD http://host[:port]/path HTTP/1.x (plain HTTP, absolute form)
 * host: a DNS name or an IPv4 literal; port 1-65535 (80 for http://). For plain HTTP
 * the head is rewritten for the origin: the request line in origin form, Host from the
 * target, hop-by-hop headers (Connection, Keep-Alive, Proxy-*, TE, Upgrade) dropped and
 * `Connection: close` added, so that each proxied connection
 * carries exactly one request and no later request can go to another host unparsed. */
#pragma once
#include "buf.h"
#include "err.h"
#include <stdbool.h>
#include <stddef.h>

#define BH_PROXY_HEAD_MAX 16384  /* request line and headers */
#define BH_PROXY_HEADERS_MAX 100

struct bh_proxy_req {
    bool connect;
    char host[254];
    unsigned port;
    bool head;         /* a HEAD request: its answer has no body */
    bool body;         /* the request has a body (Content-Length or Transfer-Encoding) */
    bool client_close; /* Connection/Proxy-Connection: close, or HTTP/1.0 without keep-alive */
};

/* Length of the head in buf (through the empty line), 0 if it is not complete yet, -1
 * if it cannot be one (longer than BH_PROXY_HEAD_MAX). */
long bh_proxy_head_len(const char *buf, size_t len);
/* Parses the head (head_len bytes from bh_proxy_head_len); for plain HTTP appends the
 * rewritten head to out. Returns 0, or -1 with err (answer 400). */
int bh_proxy_head_parse(const char *head, size_t head_len, struct bh_proxy_req *r, bh_buf *out, bh_error *err);
/* The origin's response head (bytes from the network), for plain http://: strict,
 * bounded as a request head (BH_PROXY_HEAD_MAX, BH_PROXY_HEADERS_MAX). length: the
 * body's length when it is known (Content-Length, or 0 for HEAD, 204, 304), -1 when
 * the body ends only with the origin's close (no length, a transfer coding, or an
 * interim 1xx answer). The status line is re-written as HTTP/1.1. Two different Content-Lengths, folded or nameless headers, bare
 * CR/LF or control bytes are refused (502). out (may be NULL) receives the head for
 * the template without hop-by-hop headers and without its final empty line: the proxy
 * adds its own Connection header and the end. */
struct bh_proxy_resp {
    int status;
    long long length;
};
int bh_proxy_resp_parse(const char *head, size_t head_len, bool head_request, struct bh_proxy_resp *r, bh_buf *out,
                        bh_error *err);

/* Destinations the proxy refuses even when the name resolves there: loopback, "this
 * network", private ranges (10/8 with the qubes' own 10.137-139.x, 172.16/12,
 * 192.168/16, 100.64/10 with the uplink's own link), link-local, benchmarking,
 * multicast, reserved and broadcast. A template reaches the repositories, not the
 * LAN of the updates qube or anything behind it. */
bool bh_proxy_addr_refused(unsigned long host_order_ipv4);
struct in6_addr;
/* The same for IPv6: unspecified, loopback, IPv4-compatible, unique-local (with the
 * qubes' fd09:24ef:4179::/48), link- and site-local, multicast, discard; addresses that
 * embed an IPv4 one (mapped, NAT64 64:ff9b::/96, 6to4) by that IPv4 address. */
bool bh_proxy_addr6_refused(const struct in6_addr *a);
/* CONNECT is allowed to the ports Qubes' updates proxy allows (tinyproxy's ConnectPort
 * 443, and 873 for rsync mirrors) only; plain http:// requests may name any port. */
bool bh_proxy_connect_port_ok(unsigned port);
