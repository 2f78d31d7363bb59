/* The monitor's check of requests from qrexec-daemon's unprivileged side: a valid call
 * passes; every field out of its bounds, a forged op, a short, oversized or
 * unterminated message is refused; an fd passed along is never received. */
#include "monitor_proto.h"
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

struct hdr { uint32_t op, slot; int32_t port; char ident[32]; char target[64]; };

static size_t build(char *buf, uint32_t op, uint32_t slot, int32_t port, const char *ident, const char *target,
                    const char *svc)
{
    struct hdr h = { op, slot, port, { 0 }, { 0 } };
    memcpy(h.ident, ident, strnlen(ident, 32));
    memcpy(h.target, target, strnlen(target, 64));
    memcpy(buf, &h, sizeof h);
    strcpy(buf + sizeof h, svc);
    return sizeof h + strlen(svc) + 1;
}

static int parse(const char *buf, size_t n)
{
    struct bh_qx_mon_call c;
    bh_error err = { 0 };
    int r = bh_qx_mon_parse_call(buf, n, 64, 514, 770, &c, &err);
    if (r == 1)
        free(c.service);
    return r;
}

int main(void)
{
    static char b[70000];
    size_t n = build(b, BH_QX_MON_CALL, 3, 514, "SOCKET7", "work", "qubes.Filecopy+x");
    assert(parse(b, n) == 1);                                   /* positive control */
    n = build(b, BH_QX_MON_CALL, 3, -1, "SOCKET7", "@dispvm:dvm", "qubes.OpenInVM");
    assert(parse(b, n) == 1);
    assert(parse(b, n - 1) == -1);                              /* service not terminated */
    n = build(b, 9, 3, 514, "SOCKET7", "work", "s");            assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 64, 514, "SOCKET7", "work", "s"); assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 3, 770, "SOCKET7", "work", "s"); assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 3, -2, "SOCKET7", "work", "s"); assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 3, 514, "SOC;KET", "work", "s"); assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 3, 514, "SOCKET7", "../x", "s"); assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 3, 514, "SOCKET7", "work", "a;rm -rf /"); assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 3, 514, "SOCKET7", "work", "s");
    memset(b + 12, 'A', 32);                                    /* ident without NUL */
    assert(parse(b, n) == -1);
    n = build(b, BH_QX_MON_CALL, 3, 514, "SOCKET7", "work", "s");
    memcpy(b + sizeof(struct hdr), "a\0b", 4);                  /* NUL inside the service */
    assert(parse(b, n + 2) == -1);
    assert(parse(b, 10) == -1);
    memset(b + sizeof(struct hdr), 'a', 65001);
    b[sizeof(struct hdr) + 65001] = 0;
    assert(parse(b, sizeof(struct hdr) + 65002) == -1);         /* over Qubes' service limit */

    /* over a real socket pair: a passed fd never arrives at the monitor */
    int sp[2];
    assert(socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sp) == 0);
    assert(bh_qx_mon_send(sp[1], BH_QX_MON_STARTED, 1, 0) == 0); /* "started" carries an fd */
    struct bh_qx_mon_call c;
    bh_error err = { 0 };
    assert(bh_qx_mon_recv_call(sp[0], 64, 514, 770, &c, &err) == -1);
    assert(bh_qx_mon_send_call(sp[1], 2, 514, "SOCKET1", "work", "qubes.GetDate") == 0);
    assert(bh_qx_mon_recv_call(sp[0], 64, 514, 770, &c, &err) == 1 && c.slot == 2 && !strcmp(c.target, "work"));
    free(c.service);
    close(sp[1]);
    assert(bh_qx_mon_recv_call(sp[0], 64, 514, 770, &c, &err) == 0);
    puts("ok");
    return 0;
}
