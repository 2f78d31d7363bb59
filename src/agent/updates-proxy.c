/* qubes.UpdatesProxy (in the updates qube, sys-net by default): the other end of a
 * template's package-manager connection, which arrives over qrexec because a template
 * has no network of its own (Qubes' design; Qubes runs tinyproxy behind this service).
 * CONNECT host:port (then bytes both ways), or plain http:// requests, each sent on to
 * its host over a new connection with `Connection: close` (src/net/proxyhead.h) and
 * kept alive towards the template when the answer's length is known (see main).
 * The head comes from a template, so it is bounded and parsed strictly; CONNECT only
 * to the ports Qubes' tinyproxy allows (443, 873); loopback, private and link-local
 * ranges, the qubes' own and other special addresses (IPv4 and IPv6) are refused even
 * if a name leads there: the proxy reaches repositories, not sys-net's LAN.
 * It runs with the updates qube's network: its firewall, its NAT, its DNS. */
#include "net/proxyhead.h"
#include "log.h"
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_TIMEOUT_MS 30000
#define CONNECT_TIMEOUT_MS 10000
#define IDLE_TIMEOUT_MS 300000
#define MAX_REQUESTS 1000 /* on one connection from the template */

static void answer(const char *status)
{
    char b[160];
    int n = snprintf(b, sizeof b, "HTTP/1.1 %s\r\nConnection: close\r\nContent-Length: 0\r\n\r\n", status);
    (void)!write(1, b, (size_t)n);
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int connect_to(const struct bh_proxy_req *r)
{
    struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
    char port[8];
    snprintf(port, sizeof port, "%u", r->port);
    if (getaddrinfo(r->host, port, &hints, &res) != 0)
        return -1;
    int fd = -1;
    for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
        /* checked after resolution, on the very address connected to */
        if (ai->ai_family == AF_INET) {
            const struct sockaddr_in *sin = (const struct sockaddr_in *)ai->ai_addr;
            if (bh_proxy_addr_refused(ntohl(sin->sin_addr.s_addr)))
                continue;
        } else if (ai->ai_family == AF_INET6) {
            if (bh_proxy_addr6_refused(&((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr))
                continue;
        } else {
            continue;
        }
        fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            break;
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
            close(fd);
            fd = -1;
            continue;
        }
        struct pollfd p = { .fd = fd, .events = POLLOUT };
        int e = 0;
        socklen_t el = sizeof e;
        if (poll(&p, 1, CONNECT_TIMEOUT_MS) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &el) < 0 || e) {
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd >= 0)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

/* bytes both ways until the server is done (or both sides are) */
static void relay(int s)
{
    bool in_open = true;
    char buf[65536];
    for (;;) {
        struct pollfd p[2] = { { .fd = in_open ? 0 : -1, .events = POLLIN }, { .fd = s, .events = POLLIN } };
        int n = poll(p, 2, IDLE_TIMEOUT_MS);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        if (p[1].revents) {
            ssize_t r = read(s, buf, sizeof buf);
            if (r <= 0 || write_all(1, buf, (size_t)r) < 0)
                return; /* the server closed: so does the connection */
        }
        if (in_open && p[0].revents) {
            ssize_t r = read(0, buf, sizeof buf);
            if (r <= 0) {
                in_open = false;
                shutdown(s, SHUT_WR);
            } else if (write_all(s, buf, (size_t)r) < 0) {
                return;
            }
        }
    }
}

/* Reads a head into buf (which holds *len bytes already) until its empty line; the
 * head's length, 0 on a quiet end (EOF or timeout before any byte), -1 on error. */
static long read_head(int fd, char *buf, size_t *len, int timeout_ms)
{
    long hl;
    while ((hl = bh_proxy_head_len(buf, *len)) == 0) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, timeout_ms) != 1)
            return *len ? -1 : 0;
        ssize_t r = read(fd, buf + *len, BH_PROXY_HEAD_MAX - *len);
        if (r <= 0)
            return *len ? -1 : 0;
        *len += (size_t)r;
    }
    return hl;
}

/* Copies exactly n bytes from s to the template; false if s ends first. */
static bool copy_n(int s, long long n)
{
    char buf[65536];
    while (n > 0) {
        struct pollfd p = { .fd = s, .events = POLLIN };
        if (poll(&p, 1, IDLE_TIMEOUT_MS) != 1)
            return false;
        ssize_t r = read(s, buf, n < (long long)sizeof buf ? (size_t)n : sizeof buf);
        if (r <= 0 || write_all(1, buf, (size_t)r) < 0)
            return false;
        n -= r;
    }
    return true;
}

/* One plain http:// request whose answer has a known length: sent, answered, and the
 * connection to the template kept for the next one. Returns true if it may go on. */
static bool exchange(int s, const struct bh_proxy_req *req, const bh_buf *out)
{
    if (write_all(s, out->data, out->len) < 0)
        return false;
    static char rh[BH_PROXY_HEAD_MAX];
    size_t rl = 0;
    long hl = read_head(s, rh, &rl, IDLE_TIMEOUT_MS);
    struct bh_proxy_resp resp;
    bh_buf head;
    bh_buf_init(&head, 0);
    bh_error err = { 0 };
    if (hl <= 0 || bh_proxy_resp_parse(rh, (size_t)hl, req->head, &resp, &head, &err) < 0) {
        bh_warn("origin %s: %s", req->host, hl <= 0 ? "no answer" : err.msg);
        bh_buf_free(&head);
        answer("502 Bad Gateway");
        return false;
    }
    bool keep = !req->client_close && resp.length >= 0;
    bh_buf_adds(&head, keep ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n");
    int ok = write_all(1, head.data, head.len);
    bh_buf_free(&head);
    if (ok < 0)
        return false;
    /* body bytes that came with the head */
    long long extra = (long long)(rl - (size_t)hl);
    if (resp.length >= 0 && extra > resp.length)
        extra = resp.length; /* more than the body: the origin's own garbage, dropped */
    if (extra > 0 && write_all(1, rh + hl, (size_t)extra) < 0)
        return false;
    if (resp.length < 0) {
        relay(s); /* delimited by the origin's close: so is the template's connection */
        return false;
    }
    return copy_n(s, resp.length - extra) && keep;
}

int main(void)
{
    bh_log_init("qubes.UpdatesProxy");
    signal(SIGPIPE, SIG_IGN);
    static char head[BH_PROXY_HEAD_MAX];
    size_t len = 0;
    /* Requests on one connection (keep-alive): each plain http:// request goes to its
     * own new origin connection (with `Connection: close`), its answer framed by its
     * length, and the next request head is read only after it; at most MAX_REQUESTS,
     * each head within HEAD_TIMEOUT_MS. Anything else (CONNECT, a request body, an
     * answer without a length) ends the connection after it, as before. */
    for (int nreq = 0; nreq < MAX_REQUESTS; nreq++) {
        long hl = read_head(0, head, &len, HEAD_TIMEOUT_MS);
        if (hl == 0)
            return 0; /* the template is done */
        if (hl < 0) {
            if (len >= BH_PROXY_HEAD_MAX)
                answer("431 Request Header Fields Too Large");
            return 1;
        }
        struct bh_proxy_req req;
        bh_buf out;
        bh_buf_init(&out, 0);
        bh_error err = { 0 };
        if (bh_proxy_head_parse(head, (size_t)hl, &req, &out, &err) < 0) {
            bh_warn("refused: %s", err.msg);
            answer("400 Bad Request");
            return 1;
        }
        if (req.connect && !bh_proxy_connect_port_ok(req.port)) {
            bh_warn("refused: CONNECT to port %u", req.port);
            bh_buf_free(&out);
            answer("403 Forbidden");
            return 1;
        }
        int s = connect_to(&req);
        if (s < 0) {
            bh_buf_free(&out);
            answer("502 Bad Gateway");
            return 1;
        }
        if (!req.connect && !req.body) {
            bool more = exchange(s, &req, &out);
            bh_buf_free(&out);
            close(s);
            if (!more)
                return 0;
            /* the next request (pipelined bytes already read stay in front) */
            memmove(head, head + hl, len - (size_t)hl);
            len -= (size_t)hl;
            continue;
        }
        int ok = req.connect ? write_all(1, "HTTP/1.1 200 Connection established\r\n\r\n", 39)
                             : write_all(s, out.data, out.len);
        /* bytes the client sent after the head (a TLS hello, a request body) */
        if (ok == 0 && len > (size_t)hl)
            ok = write_all(s, head + hl, len - (size_t)hl);
        bh_buf_free(&out);
        if (ok == 0)
            relay(s);
        close(s);
        return 0;
    }
    return 0;
}
