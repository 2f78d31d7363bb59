/* Firewall rules -> nftables: Qubes' semantics, fail-closed on anything odd. */
#include "net/fwrule.h"
#include "net/net.h"
#include "net/dns.h"
#include "tap.h"
#include <arpa/inet.h>
#include <string.h>

static int fake_resolve(void *ctx, const char *host, struct bh_fw_addrs *out)
{
    (void)ctx;
    out->n4 = out->n6 = -1;
    if (!strcmp(host, "two.example") || !strcmp(host, "dual.example")) {
        inet_pton(AF_INET, "192.0.2.1", &out->a4[0]);
        inet_pton(AF_INET, "192.0.2.2", &out->a4[1]);
        out->n4 = 2;
    }
    if (!strcmp(host, "six.example") || !strcmp(host, "dual.example")) {
        inet_pton(AF_INET6, "2001:db8::1", &out->a6[0]);
        out->n6 = 1;
    }
    return out->n4 < 0 && out->n6 < 0 ? -1 : 0;
}

static char *conv(const char *rules, time_t now, struct bh_fw_result *res)
{
    static bh_buf b;
    bh_buf_free(&b);
    bh_buf_init(&b, 0);
    CHECK(bh_fw_to_nft(rules, strlen(rules), now, fake_resolve, NULL, &b, res) == 0);
    bh_buf_addc(&b, '\0');
    return b.data;
}

int main(void)
{
    struct bh_fw_result r;
    char *s = conv("action=accept\n", 100, &r);
    CHECK(!strcmp(s, "    accept\n    reject with icmpx type admin-prohibited\n"));
    s = conv("action=accept dst4=10.1.0.0/16 proto=tcp dstports=80-81\naction=drop proto=icmp icmptype=8\n", 100, &r);
    CHECK(strstr(s, "ip daddr 10.1.0.0/16 tcp dport 80-81 accept\n") != NULL);
    CHECK(strstr(s, "icmp type 8 reject") != NULL);
    CHECK(!r.blocked);
    /* dsthost: every address; unresolvable: everything refused (fail closed) */
    s = conv("action=accept dsthost=two.example\n", 100, &r);
    CHECK(strstr(s, "ip daddr { 192.0.2.1, 192.0.2.2 } accept") != NULL);
    CHECK(r.dsthosts == 1);
    s = conv("action=accept dst4=1.2.3.4\naction=accept dsthost=nowhere.example\n", 100, &r);
    CHECK(r.blocked && !strcmp(s, "    reject with icmpx type admin-prohibited\n"));
    /* AAAA: the v6 addresses become an ip6 rule in the same place */
    s = conv("action=drop dsthost=dual.example proto=tcp dstports=443\naction=accept\n", 100, &r);
    CHECK(!r.blocked && r.blocked_family == 0);
    CHECK(strstr(s, "    ip daddr { 192.0.2.1, 192.0.2.2 } tcp dport 443 reject with icmpx type admin-prohibited\n"
                    "    ip6 daddr { 2001:db8::1 } tcp dport 443 reject with icmpx type admin-prohibited\n"
                    "    accept\n") != NULL);
    /* a name without AAAA: IPv6 refused first (Qubes blocks the family it cannot
     * resolve), IPv4 as written */
    s = conv("action=accept dst4=1.2.3.4\naction=accept dsthost=two.example\n", 100, &r);
    CHECK(!r.blocked && r.blocked_family == 2);
    CHECK(!strcmp(s, "    meta nfproto ipv6 reject with icmpx type admin-prohibited\n    ip daddr 1.2.3.4/32 accept\n"
                     "    ip daddr { 192.0.2.1, 192.0.2.2 } accept\n    reject with icmpx type admin-prohibited\n"));
    CHECK(strstr(s, "ip6 daddr") == NULL);
    /* a name with AAAA only: IPv4 refused, the IPv6 rule kept */
    s = conv("action=accept dsthost=six.example\n", 100, &r);
    CHECK(!r.blocked && r.blocked_family == 1);
    CHECK(!strcmp(s, "    meta nfproto ipv4 reject with icmpx type admin-prohibited\n"
                     "    ip6 daddr { 2001:db8::1 } accept\n    reject with icmpx type admin-prohibited\n"));
    /* one name without A, another without AAAA: both families refused, all blocked */
    s = conv("action=accept dsthost=six.example\naction=accept dsthost=two.example\n", 100, &r);
    CHECK(r.blocked && !strcmp(s, "    reject with icmpx type admin-prohibited\n"));
    /* malformed or unknown: fail closed, nothing of the list survives */
    s = conv("action=accept\nfoo=bar\n", 100, &r);
    CHECK(r.blocked && !strstr(s, "accept\n"));
    s = conv("action=accept dstports=80\n", 100, &r);
    CHECK(r.blocked);
    s = conv("action=accept dst4=10.0.0.1/8\n", 100, &r);
    CHECK(r.blocked);
    /* specialtarget=dns: ports 53 tcp+udp to the virtual servers, matched pre-DNAT */
    s = conv("action=accept specialtarget=dns\naction=drop\n", 100, &r);
    CHECK(strstr(s, "ct original ip daddr { 10.139.1.1, 10.139.1.2 } meta l4proto { tcp, udp } th dport 53 accept") != NULL);
    s = conv("action=accept specialtarget=dns proto=udp dst4=10.139.1.2/32\n", 100, &r);
    CHECK(strstr(s, "ct original ip daddr { 10.139.1.2 } udp dport 53 accept") != NULL);
    s = conv("action=accept specialtarget=dns proto=tcp dstports=80\n", 100, &r);
    CHECK(!strstr(s, "accept\n"));
    /* expire: expired rules vanish, the next expiry is reported */
    s = conv("action=drop dst4=1.2.3.4 expire=50\naction=drop dst4=1.2.3.5 expire=200\naction=accept expire=150\n", 100, &r);
    CHECK(!strstr(s, "1.2.3.4") && strstr(s, "1.2.3.5") && r.next_expire == 150);
    /* dst6: IPv6 packets only; dst4: IPv4 only; no destination: both families */
    s = conv("action=drop dst6=2001:db8::/32 proto=tcp dstports=443\naction=accept dst6=2001:db8::1\n"
             "action=drop dst4=0.0.0.0/0 proto=udp\naction=accept\n", 100, &r);
    CHECK(!r.blocked);
    CHECK(strstr(s, "    ip6 daddr 2001:db8::/32 tcp dport 443 reject with icmpx type admin-prohibited\n") != NULL);
    CHECK(strstr(s, "    ip6 daddr 2001:db8::1/128 accept\n") != NULL);
    CHECK(strstr(s, "    meta nfproto ipv4 meta l4proto udp reject") != NULL);
    CHECK(strstr(s, "\n    accept\n") != NULL);
    s = conv("action=accept dst6=2001:db8::1/64\n", 100, &r); /* host bits: refused, closed */
    CHECK(r.blocked);
    /* proto=icmp without a destination: ICMP for IPv4 and ICMPv6 for IPv6 */
    s = conv("action=accept proto=icmp icmptype=128\naction=accept dst6=::/0 proto=icmp\n", 100, &r);
    CHECK(strstr(s, "    meta nfproto ipv4 icmp type 128 accept\n") && strstr(s, "    meta nfproto ipv6 icmpv6 type 128 accept\n"));
    CHECK(strstr(s, "    meta nfproto ipv6 meta l4proto ipv6-icmp accept\n") != NULL);
    /* comments never reach nft */
    s = conv("action=accept comment=x\"; flush ruleset\n", 100, &r);
    CHECK(!strstr(s, "flush") && !strstr(s, "\""));
    /* too many rules: refused as a whole */
    bh_buf many;
    bh_buf_init(&many, 0);
    for (int i = 0; i < BH_NET_FW_MAX_RULES + 1; i++)
        bh_buf_adds(&many, "action=accept\n");
    bh_buf_addc(&many, '\0');
    s = conv(many.data, 100, &r);
    CHECK(r.blocked);
    bh_buf_free(&many);

    /* the table: anti-spoofing per client, forwarding only out by eth0 */
    struct bh_net_client c = { .qid = 7, .mac = { 0, 0x16, 0x3e, 0x5e, 0x6c, 0 }, .rules = "action=drop\n" };
    inet_pton(AF_INET, "10.137.0.7", &c.ip);
    struct bh_net_table t = {
        .serves = true, .upstream = true, .ndns = 1, .clients = &c, .nclients = 1, .now = 100, .cap_table = true
    };
    inet_pton(AF_INET, "192.0.2.53", &t.dns[0]);
    bh_buf b;
    bh_buf_init(&b, 0);
    struct bh_net_table_result tr;
    CHECK(bh_net_table_script(&t, &b, &tr) == 0);
    bh_buf_addc(&b, '\0');
    CHECK(strstr(b.data, "iifname \"vif7.0\" ether saddr != 00:16:3e:5e:6c:00 drop") != NULL);
    CHECK(strstr(b.data, "iifname \"vif7.0\" ip saddr != 10.137.0.7 drop") != NULL);
    CHECK(strstr(b.data, "iifname \"vif7.0\" oifname \"eth0\" jump fw_7") != NULL);
    CHECK(strstr(b.data, "ip daddr 10.139.1.2 meta l4proto { tcp, udp } th dport 53 dnat ip to 192.0.2.53") != NULL);
    CHECK(strncmp(b.data, "table inet bulkhead\ndelete table inet bulkhead\n", 47) == 0);
    /* the connection limits' table is never replaced: only its exempt set changes */
    CHECK(strstr(b.data, "delete table inet bulkhead_cap") == NULL);
    CHECK(strstr(b.data, "per_source") == NULL);
    CHECK(strstr(b.data, "flush set inet bulkhead_cap exempt\n") != NULL);
    CHECK(strstr(b.data, "add element inet bulkhead_cap exempt") == NULL); /* c is no netvm */
    bh_buf_free(&b);
    c.serves = true; /* a netvm as client: exempt (it limits its own clients) */
    bh_buf_init(&b, 0);
    CHECK(bh_net_table_script(&t, &b, &tr) == 0);
    bh_buf_addc(&b, '\0');
    CHECK(strstr(b.data, "add element inet bulkhead_cap exempt { 10.137.0.7 }") != NULL);
    CHECK(strstr(b.data, "exempt6 {") && !strstr(b.data, "add element inet bulkhead_cap exempt6"));
    /* no routed IPv6 anywhere: IPv6 dropped on every link but loopback */
    CHECK(strstr(b.data, "meta nfproto ipv6 iif != lo drop\n") != NULL);
    CHECK(strstr(b.data, "meta nfproto ipv6 oif != lo drop\n") != NULL);
    bh_buf_free(&b);
    /* routed IPv6 on eth0 and on the client's link: allowed there only, from its ip6 only */
    c.v6 = true;
    t.v6_up = true;
    inet_pton(AF_INET6, "fd09:24ef:4179::a89:7", &c.ip6);
    bh_buf_init(&b, 0);
    CHECK(bh_net_table_script(&t, &b, &tr) == 0);
    bh_buf_addc(&b, '\0');
    CHECK(strstr(b.data, "meta nfproto ipv6 iif != lo iifname != { \"eth0\", \"vif7.0\" } drop\n") != NULL);
    CHECK(strstr(b.data, "meta nfproto ipv6 oif != lo oifname != { \"eth0\", \"vif7.0\" } drop\n") != NULL);
    CHECK(strstr(b.data, "iifname \"vif7.0\" ip6 saddr != fd09:24ef:4179::a89:7 drop") != NULL);
    CHECK(strstr(b.data, "add element inet bulkhead_cap exempt6 { fd09:24ef:4179::a89:7 }") != NULL);
    bh_buf_free(&b);
    /* a client's link only */
    t.v6_up = false;
    bh_buf_init(&b, 0);
    CHECK(bh_net_table_script(&t, &b, &tr) == 0);
    bh_buf_addc(&b, '\0');
    CHECK(strstr(b.data, "meta nfproto ipv6 iif != lo iifname != { \"vif7.0\" } drop\n") != NULL);
    bh_buf_free(&b);
    /* without connection counting, the limits' table is not touched at all */
    t.cap_table = false;
    bh_buf_init(&b, 0);
    CHECK(bh_net_table_script(&t, &b, &tr) == 0);
    bh_buf_addc(&b, '\0');
    CHECK(strstr(b.data, "bulkhead_cap") == NULL);
    bh_buf_free(&b);

    /* DNS answers: only IN records of the asked type and size count; junk does not parse */
    static const unsigned char msg[] = {
        0x12, 0x34, 0x81, 0x80, 0, 1, 0, 3, 0, 0, 0, 0,       /* header: 1 question, 3 answers */
        3, 'w', 'e', 'b', 4, 't', 'e', 's', 't', 0, 0, 28, 0, 1, /* web.test AAAA IN */
        0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 5, 0, 16,             /* AAAA 2001:db8::80 */
        0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x80,
        0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 5, 0, 4, 192, 0, 2, 1, /* an A record: not asked */
        0xc0, 12, 0, 28, 0, 1, 0, 0, 0, 5, 0, 4, 1, 2, 3, 4,  /* AAAA of the wrong size */
    };
    struct in6_addr six[4];
    struct in_addr four[4];
    CHECK(bh_dns_answer_addrs(msg, sizeof msg, AF_INET6, six, 4) == 1);
    CHECK(six[0].s6_addr[0] == 0x20 && six[0].s6_addr[15] == 0x80);
    CHECK(bh_dns_answer_addrs(msg, sizeof msg, AF_INET, four, 4) == 1 && four[0].s_addr == inet_addr("192.0.2.1"));
    CHECK(bh_dns_answer_addrs(msg, sizeof msg - 20, AF_INET6, six, 4) == -1); /* cut: does not parse */
    CHECK(bh_dns_answer_addrs(msg, 5, AF_INET6, six, 4) == -1);
    CHECK(bh_dns_answer_addrs(msg, BH_DNS_MSG_MAX + 1, AF_INET6, six, 4) == -1);

    struct in_addr ns[2];
    const char *rc = "# x\nnameserver 192.0.2.1\nnameserver  ::1\nnameserver\t192.0.2.2 # c\nnameserver 192.0.2.3\n";
    CHECK(bh_dns_parse_resolv(rc, strlen(rc), ns, 2) == 2);
    CHECK(ns[1].s_addr == inet_addr("192.0.2.2"));
    return tap_done();
}
