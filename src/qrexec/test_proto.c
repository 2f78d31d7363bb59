/* Unit tests for the qrexec message layer: limits, hostile input, negotiation. */
#include "../../tests/unit/tap.h"
#include "proto.h"
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
    h = (struct bh_qx_hdr){ BH_QX_MSG_TRIGGER_SERVICE4, 200 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0); /* v4 source claims are not taken */
    h = (struct bh_qx_hdr){ BH_QX_MSG_HELLO, 8 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_AGENT, &e) < 0);
    h = (struct bh_qx_hdr){ BH_QX_MSG_DATA_EXIT_CODE, 3 };
    CHECK(bh_qx_check_header(&h, BH_QX_FROM_DATA, &e) < 0);

    /* negotiation: lower wins, below minimum refused */
    uint32_t v;
    CHECK(bh_qx_negotiate(3, 4, &v, &e) == 0 && v == 3);
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
