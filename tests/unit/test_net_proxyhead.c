/* The updates proxy's request head: what a template may send, and what it may not. */
#include "net/proxyhead.h"
#include "tap.h"
#include <arpa/inet.h>
#include <string.h>

static int parse(const char *h, struct bh_proxy_req *r, bh_buf *out)
{
    bh_buf_free(out);
    bh_buf_init(out, 0);
    long n = bh_proxy_head_len(h, strlen(h));
    if (n <= 0)
        return -2;
    int rc = bh_proxy_head_parse(h, (size_t)n, r, out, NULL);
    bh_buf_addc(out, '\0');
    return rc;
}

/* The origin's answer: 0 with r and the head for the template in out, or -1. */
static int resp(const char *h, bool head_req, struct bh_proxy_resp *r, bh_buf *out)
{
    bh_buf_free(out);
    bh_buf_init(out, 0);
    long n = bh_proxy_head_len(h, strlen(h));
    if (n <= 0)
        return -2;
    int rc = bh_proxy_resp_parse(h, (size_t)n, head_req, r, out, NULL);
    bh_buf_addc(out, '\0');
    return rc;
}

int main(void)
{
    struct bh_proxy_req r;
    bh_buf o;
    bh_buf_init(&o, 0);
    CHECK(parse("GET http://deb.debian.org/debian/x HTTP/1.1\r\nHost: evil\r\nConnection: keep-alive\r\n"
                "Proxy-Connection: keep-alive\r\nUser-Agent: apt\r\n\r\n", &r, &o) == 0);
    CHECK(!r.connect && !strcmp(r.host, "deb.debian.org") && r.port == 80);
    CHECK(!strcmp(o.data, "GET /debian/x HTTP/1.1\r\nHost: deb.debian.org\r\nUser-Agent: apt\r\nConnection: close\r\n\r\n"));
    CHECK(parse("GET http://a.test:8080 HTTP/1.0\r\n\r\n", &r, &o) == 0 && r.port == 8080);
    CHECK(!strcmp(o.data, "GET / HTTP/1.0\r\nHost: a.test:8080\r\nConnection: close\r\n\r\n"));
    CHECK(parse("CONNECT deb.debian.org:443 HTTP/1.1\r\nHost: x\r\n\r\n", &r, &o) == 0 && r.connect && r.port == 443);
    /* refused */
    CHECK(parse("CONNECT deb.debian.org HTTP/1.1\r\n\r\n", &r, &o) == -1);           /* no port */
    CHECK(parse("CONNECT a:0 HTTP/1.1\r\n\r\n", &r, &o) == -1);
    CHECK(parse("CONNECT a:65536 HTTP/1.1\r\n\r\n", &r, &o) == -1);
    CHECK(parse("CONNECT [::1]:22 HTTP/1.1\r\n\r\n", &r, &o) == -1);                  /* IPv6 literal */
    CHECK(parse("GET /origin HTTP/1.1\r\nHost: a\r\n\r\n", &r, &o) == -1);            /* not a proxy request */
    CHECK(parse("GET https://a/ HTTP/1.1\r\n\r\n", &r, &o) == -1);
    CHECK(parse("GET http://u:p@a/ HTTP/1.1\r\n\r\n", &r, &o) == -1);                  /* credentials */
    CHECK(parse("GET http://a_b/ HTTP/1.1\r\n\r\n", &r, &o) == -1);
    CHECK(parse("GET http://a/ HTTP/2.0\r\n\r\n", &r, &o) == -1);
    CHECK(parse("get http://a/ HTTP/1.1\r\n\r\n", &r, &o) == -1);
    CHECK(parse("GET http://a/ HTTP/1.1\nX: y\r\n\r\n", &r, &o) == -1);                /* bare LF */
    CHECK(parse("GET http://a/ HTTP/1.1\r\nX: a\rb\r\n\r\n", &r, &o) == -1);          /* bare CR */
    CHECK(parse("GET http://a/\x01 HTTP/1.1\r\n\r\n", &r, &o) == -1);
    CHECK(parse("GET  http://a/ HTTP/1.1\r\n\r\n", &r, &o) == -1);
    char big[BH_PROXY_HEAD_MAX + 64];
    memset(big, 'a', sizeof big);
    memcpy(big, "GET http://a/ HTTP/1.1\r\nX: ", 27);
    CHECK(bh_proxy_head_len(big, sizeof big) == -1);                                   /* over the bound */
    CHECK(bh_proxy_head_len("GET http://a/ HTTP/1.1\r\n", 24) == 0);                   /* not complete */
    bh_buf many;
    bh_buf_init(&many, 0);
    bh_buf_adds(&many, "GET http://a/ HTTP/1.1\r\n");
    for (int i = 0; i < BH_PROXY_HEADERS_MAX + 1; i++)
        bh_buf_adds(&many, "X: y\r\n");
    bh_buf_adds(&many, "\r\n");
    bh_buf_addc(&many, '\0');
    CHECK(parse(many.data, &r, &o) == -1);
    /* a body or a second request after the head is not part of it */
    CHECK(bh_proxy_head_len("GET http://a/ HTTP/1.1\r\n\r\nGET http://b/ HTTP/1.1\r\n\r\n", 52) == 26);
    /* destinations refused whatever a name resolves to */
    CHECK(bh_proxy_addr_refused(ntohl(inet_addr("127.0.0.53"))));
    CHECK(bh_proxy_addr_refused(ntohl(inet_addr("10.137.0.5"))));
    CHECK(bh_proxy_addr_refused(ntohl(inet_addr("10.139.1.1"))));
    CHECK(bh_proxy_addr_refused(ntohl(inet_addr("169.254.1.1"))));
    CHECK(bh_proxy_addr_refused(ntohl(inet_addr("0.0.0.0"))));
    CHECK(bh_proxy_addr_refused(ntohl(inet_addr("224.0.0.1"))));
    CHECK(!bh_proxy_addr_refused(ntohl(inet_addr("198.51.100.80"))));
    /* private, shared and special ranges: the updates qube's LAN is no repository */
    const char *no4[] = { "10.136.0.1", "172.16.0.1", "172.31.255.255", "192.168.1.1", "100.64.0.1", "100.127.255.254",
                          "192.0.0.8", "198.18.0.1", "198.19.255.255", "240.0.0.1", "255.255.255.255" };
    for (size_t i = 0; i < sizeof no4 / sizeof *no4; i++)
        CHECK(bh_proxy_addr_refused(ntohl(inet_addr(no4[i]))));
    const char *ok4[] = { "172.15.255.255", "172.32.0.1", "100.63.255.255", "100.128.0.1", "192.169.0.1", "198.17.0.1",
                          "198.20.0.1", "11.0.0.1", "203.0.113.9" };
    for (size_t i = 0; i < sizeof ok4 / sizeof *ok4; i++)
        CHECK(!bh_proxy_addr_refused(ntohl(inet_addr(ok4[i]))));
    const char *no6[] = { "::", "::1", "::10.0.0.1", "::ffff:127.0.0.1", "::ffff:192.168.0.1", "64:ff9b::a00:1",
                          "2002:c0a8:101::1", "fd09:24ef:4179::a89:5", "fc00::1", "fe80::1", "febf::1", "fec0::1",
                          "ff02::1", "100::1" };
    for (size_t i = 0; i < sizeof no6 / sizeof *no6; i++) {
        struct in6_addr x;
        CHECK(inet_pton(AF_INET6, no6[i], &x) == 1 && bh_proxy_addr6_refused(&x));
    }
    const char *ok6[] = { "2001:db8:80::80", "2a00:1450::1", "::ffff:198.51.100.80", "64:ff9b::c633:6450", "2002:c633:6450::1",
                          "100:0:0:1::1" };
    for (size_t i = 0; i < sizeof ok6 / sizeof *ok6; i++) {
        struct in6_addr x;
        CHECK(inet_pton(AF_INET6, ok6[i], &x) == 1 && !bh_proxy_addr6_refused(&x));
    }
    /* CONNECT: Qubes' ConnectPort list only */
    CHECK(bh_proxy_connect_port_ok(443) && bh_proxy_connect_port_ok(873));
    CHECK(!bh_proxy_connect_port_ok(80) && !bh_proxy_connect_port_ok(22) && !bh_proxy_connect_port_ok(8082) &&
          !bh_proxy_connect_port_ok(0) && !bh_proxy_connect_port_ok(65536 + 443));
    /* what a request says about the connection after it */
    CHECK(parse("GET http://a.test/ HTTP/1.1\r\nConnection: keep-alive\r\n\r\n", &r, &o) == 0 && !r.client_close &&
          !r.body && !r.head);
    CHECK(parse("HEAD http://a.test/ HTTP/1.1\r\nProxy-Connection: Close\r\n\r\n", &r, &o) == 0 && r.client_close && r.head);
    CHECK(parse("GET http://a.test/ HTTP/1.0\r\n\r\n", &r, &o) == 0 && r.client_close);
    CHECK(parse("GET http://a.test/ HTTP/1.0\r\nProxy-Connection: Keep-Alive\r\n\r\n", &r, &o) == 0 && !r.client_close);
    CHECK(parse("GET http://a.test/ HTTP/1.1\r\nConnection: keep-alive, close\r\n\r\n", &r, &o) == 0 && r.client_close);
    CHECK(parse("POST http://a.test/ HTTP/1.1\r\nContent-Length: 3\r\n\r\n", &r, &o) == 0 && r.body);
    CHECK(parse("POST http://a.test/ HTTP/1.1\r\ntransfer-encoding: chunked\r\n\r\n", &r, &o) == 0 && r.body);

    /* the origin's answer */
    struct bh_proxy_resp a;
    CHECK(resp("HTTP/1.1 200 OK\r\nContent-Length: 12\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\n"
               "Server: x\r\n\r\n", false, &a, &o) == 0 && a.status == 200 && a.length == 12);
    CHECK(!strcmp(o.data, "HTTP/1.1 200 OK\r\nContent-Length: 12\r\nServer: x\r\n")); /* hop-by-hop gone, no end */
    CHECK(resp("HTTP/1.0 200 OK\r\nContent-Length:  7 \r\n\r\n", false, &a, &o) == 0 && a.length == 7);
    CHECK(!strcmp(o.data, "HTTP/1.1 200 OK\r\nContent-Length:  7 \r\n")); /* the proxy's own version */
    CHECK(resp("HTTP/1.1 200 OK\r\nServer: x\r\n\r\n", false, &a, &o) == 0 && a.length == -1); /* until close */
    CHECK(resp("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n", true, &a, &o) == 0 && a.length == 0); /* HEAD */
    CHECK(resp("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n", false, &a, &o) == 0 && a.length == 0);
    CHECK(resp("HTTP/1.1 204 No Content\r\n\r\n", false, &a, &o) == 0 && a.length == 0);
    CHECK(resp("HTTP/1.1 100 Continue\r\n\r\n", false, &a, &o) == 0 && a.length == -1);
    /* a coding: relayed as it comes until the close; a Content-Length beside it dropped */
    CHECK(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", false, &a, &o) == 0 &&
          a.length == -1 && !strstr(o.data, "Content-Length") && strstr(o.data, "Transfer-Encoding: chunked"));
    CHECK(resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", false, &a, &o) == 0 && a.length == 5);
    /* hostile answers */
    const char *bad[] = {
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", /* two lengths: smuggling */
        "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 1e3\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5, 5\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 9999999999999999999\r\n\r\n", /* past 18 digits */
        "HTTP/1.1 200 OK\r\nContent-Length:\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length : 5\r\n\r\n",   /* blank in the name */
        "HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",       /* obsolete folding */
        "HTTP/1.1 200 OK\r\nno colon\r\n\r\n",
        "HTTP/1.1 200 OK\r\nX: a\nY: b\r\n\r\n",             /* bare LF */
        "HTTP/1.1 200 OK\r\nX: a\rY: b\r\n\r\n",             /* bare CR */
        "HTTP/1.1 200 OK\r\nX: \x01\r\n\r\n",
        "HTTP/2 200 OK\r\n\r\n",
        "HTTP/1.1 20 OK\r\n\r\n",
        "HTTP/1.1 2000 OK\r\n\r\n",
        "HTTP/1.1 600 What\r\n\r\n",
        "ICY 200 OK\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int rc = resp(bad[i], false, &a, &o);
        if (rc != -1)
            fprintf(stderr, "bad answer %zu taken: %d\n", i, rc);
        CHECK(rc == -1);
    }
    /* too many headers, and a head past the bound */
    bh_buf lots;
    bh_buf_init(&lots, 0);
    bh_buf_adds(&lots, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i <= BH_PROXY_HEADERS_MAX; i++)
        bh_buf_adds(&lots, "X: y\r\n");
    bh_buf_adds(&lots, "\r\n");
    bh_buf_addc(&lots, '\0');
    CHECK(resp(lots.data, false, &a, &o) == -1);
    bh_buf_free(&lots);
    CHECK(bh_proxy_resp_parse("HTTP/1.1 200 OK\r\n\r\n", BH_PROXY_HEAD_MAX + 1, false, &a, NULL, NULL) == -1);

    bh_buf_free(&many);
    bh_buf_free(&o);
    return tap_done();
}
