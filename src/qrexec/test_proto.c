/* Unit tests for the qrexec message layer: limits, hostile input, negotiation. */
#include "../../tests/unit/tap.h"
#include "proto.h"
#include "reader.h"
#include <stdlib.h>
#include "stream.h"
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void le(uint8_t *p, uint32_t v) { p[0] = v, p[1] = v >> 8, p[2] = v >> 16, p[3] = v >> 24; }

int main(void)
{
    bh_error e;
    struct bh_qx_hdr h;
    uint8_t raw[8];
    bh_qx_hdr_encode(raw, 0x212, 100);
    CHECK(raw[0] == 0x12 && raw[1] == 0x02 && raw[4] == 100);
    bh_qx_hdr_decode(raw, &h);
    CHECK(h.type == 0x212 && h.len == 100);

    /* header limits per peer */
    h = (struct bh_qx_hdr){ BH_QX_MSG_DATA_STDOUT, 65536 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_DATA, &e) == 0);
    h.len = 65537;
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_DATA, &e) < 0);
    h = (struct bh_qx_hdr){ BH_QX_MSG_EXEC_CMDLINE, 20 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0); /* an agent may not send commands */
    h = (struct bh_qx_hdr){ BH_QX_MSG_TRIGGER_SERVICE3, 96 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0); /* no service name */
    h.len = 96 + 65001;
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0);
    h.len = 0xffffffffu;
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0);
    /* TRIGGER_SERVICE4: 160 fixed bytes, then 1..65000 of service */
    h = (struct bh_qx_hdr){ BH_QX_MSG_TRIGGER_SERVICE4, 161 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) == 0);
    h.len = 160;
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0);
    h.len = 160 + 65000;
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) == 0);
    h.len = 160 + 65001;
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0);
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_DAEMON, &e) < 0); /* a daemon never triggers */
    h = (struct bh_qx_hdr){ BH_QX_MSG_HELLO, 8 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0);
    h = (struct bh_qx_hdr){ BH_QX_MSG_DATA_EXIT_CODE, 3 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_DATA, &e) < 0);

    /* negotiation: lower wins, below minimum refused */
    uint32_t v;
    CHECK(bh_qx_negotiate(3, 4, &v, &e) == 0 && v == 3);
    CHECK(bh_qx_negotiate(BH_QX_VERSION, 4, &v, &e) == 0 && v == 4);
    CHECK(bh_qx_negotiate(BH_QX_VERSION, 5, &v, &e) == 0 && v == 4);
    CHECK(BH_QX_CLIENT_VERSION == 3);
    CHECK(bh_qx_negotiate(4, 3, &v, &e) == 0 && v == 3);
    CHECK(bh_qx_negotiate(3, 2, &v, &e) < 0);
    CHECK(bh_qx_negotiate(3, 0, &v, &e) < 0);

    /* exec params */
    uint8_t ex[64];
    le(ex, 5), le(ex + 4, 513);
    memcpy(ex + 8, "user:ls\0", 8);
    struct bh_qx_exec x;
    CHECK(bh_qx_parse_exec(BH_QX_MSG_EXEC_CMDLINE, ex, 16, &x, &e) == 0 && x.connect_domain == 5 &&
          x.connect_port == 513 && !strcmp(x.cmdline, "user:ls"));
    CHECK(bh_qx_parse_exec(BH_QX_MSG_EXEC_CMDLINE, ex, 15, &x, &e) < 0); /* no NUL */
    memcpy(ex + 8, "us\0r:ls\0", 8);
    CHECK(bh_qx_parse_exec(BH_QX_MSG_EXEC_CMDLINE, ex, 16, &x, &e) < 0); /* NUL inside */
    memset(ex + 8, 0, 32);
    memcpy(ex + 8, "SOCKET7", 7);
    CHECK(bh_qx_parse_exec(BH_QX_MSG_SERVICE_CONNECT, ex, 40, &x, &e) == 0 && !strcmp(x.cmdline, "SOCKET7"));
    ex[30] = 'x';
    CHECK(bh_qx_parse_exec(BH_QX_MSG_SERVICE_CONNECT, ex, 40, &x, &e) < 0); /* junk in padding */

    /* trigger */
    uint8_t t[200];
    memset(t, 0, sizeof t);
    strcpy((char *)t, "@default");
    strcpy((char *)t + 64, "SOCKET1");
    strcpy((char *)t + 96, "qubes.Filecopy");
    struct bh_qx_trigger tr;
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE3, t, 96 + 15, &tr, &e) == 0 &&
          !strcmp(tr.target, "@default") && !strcmp(tr.service, "qubes.Filecopy"));
    memset(t, 'a', 64);
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE3, t, 96 + 15, &tr, &e) < 0); /* unterminated */
    strcpy((char *)t, "../etc");
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE3, t, 96 + 15, &tr, &e) < 0);
    strcpy((char *)t, "work");
    strcpy((char *)t + 96, "../../bin/sh");
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE3, t, 96 + 13, &tr, &e) < 0);

    /* trigger 4: source, target, ident, service */
    memset(t, 0, sizeof t);
    strcpy((char *)t + 64, "personal");
    strcpy((char *)t + 128, "SOCKET9");
    strcpy((char *)t + 160, "qubes.Filecopy");
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE4, t, 160 + 15, &tr, &e) == 0 && !tr.source[0] &&
          !strcmp(tr.target, "personal") && !strcmp(tr.ident, "SOCKET9") && !strcmp(tr.service, "qubes.Filecopy"));
    strcpy((char *)t, "remote-1");
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE4, t, 160 + 15, &tr, &e) == 0 && !strcmp(tr.source, "remote-1"));
    strcpy((char *)t, "a b");
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE4, t, 160 + 15, &tr, &e) < 0);
    memset(t, 'x', 64);
    CHECK(bh_qx_parse_trigger(BH_QX_MSG_TRIGGER_SERVICE4, t, 160 + 15, &tr, &e) < 0); /* unterminated */

    /* the bytes we send are Qubes' */
    {
        int sp[2];
        socketpair(AF_UNIX, SOCK_STREAM, 0, sp);
        CHECK(bh_qx_send_trigger4(sp[0], "", "work", "SOCKET", "a+b") == 0);
        uint8_t got[8 + 164], want[8 + 164];
        memset(want, 0, sizeof want);
        le(want, 0x213), le(want + 4, 164);
        memcpy(want + 8 + 64, "work", 4);
        memcpy(want + 8 + 128, "SOCKET", 6);
        memcpy(want + 8 + 160, "a+b", 4);
        CHECK(read(sp[1], got, sizeof got) == (ssize_t)sizeof got && !memcmp(got, want, sizeof got));
        CHECK(bh_qx_send_hello(sp[0]) == 0 && read(sp[1], got, 12) == 12 &&
              !memcmp(got, "\x00\x03\x00\x00\x04\x00\x00\x00\x04\x00\x00\x00", 12));
        close(sp[0]);
        close(sp[1]);
    }

    /* the incremental reader: one byte at a time, a bad message skipped, then a good one */
    {
        uint8_t wire[8 + 100 + 8 + 175];
        le(wire, 0x999), le(wire + 4, 100);
        memset(wire + 8, 'z', 100);
        le(wire + 108, BH_QX_MSG_TRIGGER_SERVICE4), le(wire + 112, 175);
        memset(t, 0, sizeof t);
        strcpy((char *)t + 64, "personal");
        strcpy((char *)t + 128, "SOCKET9");
        strcpy((char *)t + 160, "qubes.Filecopy");
        memcpy(wire + 116, t, 175);
        struct bh_qx_reader r;
        bh_qx_reader_init(&r, BH_QX_FROM_AGENT);
        int skipped = 0, good = 0;
        for (size_t i = 0; i < sizeof wire; i++) {
            enum bh_qx_read_event ev;
            CHECK(bh_qx_reader_feed(&r, wire + i, 1, &ev) == 1);
            if (ev == BH_QX_READ_SKIPPED)
                skipped += r.hdr.type == 0x999 && r.prefix_have == 100 && i == 107;
            if (ev == BH_QX_READ_MSG) {
                good += i == sizeof wire - 1 && r.hdr.len == 175 &&
                        bh_qx_parse_trigger(r.hdr.type, r.body, r.hdr.len, &tr, &e) == 0;
                bh_qx_reader_free(&r);
            }
        }
        CHECK(skipped == 1 && good == 1 && !bh_qx_reader_partial(&r));
        /* a 4 GiB announcement is skipped, never allocated */
        le(wire, BH_QX_MSG_TRIGGER_SERVICE3), le(wire + 4, 0xffffffffu);
        enum bh_qx_read_event ev;
        CHECK(bh_qx_reader_feed(&r, wire, 8, &ev) == 8 && ev == BH_QX_READ_MORE && r.skipping && !r.body);
        CHECK(r.skip_left == 0xffffffffu && bh_qx_reader_partial(&r));
        bh_qx_reader_free(&r);
    }

    CHECK(bh_qx_service_valid("qubes.VMShell+"));
    CHECK(bh_qx_service_valid("qubes.USB+2-1"));
    CHECK(!bh_qx_service_valid("a/b"));
    CHECK(!bh_qx_service_valid(".hidden"));
    CHECK(!bh_qx_service_valid("+arg"));
    CHECK(!bh_qx_service_valid("x y"));
    CHECK(bh_qx_target_valid("@dispvm:work"));
    CHECK(!bh_qx_target_valid("a b"));

    /* filter */
    char f[] = "ok\x1b[2J\x07\x9b\t\n";
    bh_qx_filter(f, sizeof f - 1);
    CHECK(!strcmp(f, "ok_[2J\x07_\t\n"));

    /* recv over a socket: truncated body */
    int sv[2];
    socketpair(AF_UNIX, SOCK_STREAM, 0, sv);
    uint8_t msg[8 + 4];
    bh_qx_hdr_encode(msg, BH_QX_MSG_HELLO, 4);
    write(sv[0], msg, 10);
    close(sv[0]);
    uint8_t *body;
    CHECK(bh_qx_recv(sv[1], BH_QX_FROM_AGENT, &h, &body, &e) < 0);
    close(sv[1]);
    return tap_done();
}
