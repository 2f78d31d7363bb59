/* Qubes firewall rules (the normalised qvm-firewall text that bulkheadd stores) turned
 * into nftables statements. Pure functions, no system calls: unit-tested and fuzzed.
 *
 * Semantics follow Qubes (qubes-core-agent-linux, qubesagent/firewall.py): rules are
 * tried in order and the first match decides; a packet no rule matches is refused
 * (REJECT with icmp admin-prohibited, as Qubes does); `specialtarget=dns` matches TCP
 * and UDP port 53 to the virtual DNS servers (10.139.1.1, 10.139.1.2); a `dsthost`
 * that cannot be resolved blocks all the qube's traffic (Qubes: "blocking traffic");
 * `dst4` rules match IPv4 packets only and `dst6` rules IPv6 packets only, rules with
 * no destination both (as Qubes, which writes one rule set per family), `proto=icmp`
 * meaning ICMPv6 for IPv6; a `dsthost` matches its A records in IPv4 and its AAAA
 * records in IPv6, and (as Qubes, which resolves it once per family and blocks that
 * family's traffic when it fails) a name without addresses of one family blocks all of
 * that family's traffic; expired rules are left out and the caller learns when the
 * next one expires. */
#pragma once
#include "buf.h"
#include "err.h"
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define BH_NET_FW_MAX_RULES 1024
#define BH_NET_FW_MAX_LINE 1024
#define BH_NET_FW_MAX_ADDRS 32 /* addresses one dsthost may resolve to */

enum bh_fw_dst { BH_FW_DST_ANY, BH_FW_DST_V4, BH_FW_DST_V6, BH_FW_DST_HOST };

struct bh_fw_rule {
    bool accept;
    enum bh_fw_dst dst_kind;
    struct in_addr dst4;  /* BH_FW_DST_V4 */
    unsigned prefix;      /* BH_FW_DST_V4, BH_FW_DST_V6 */
    struct in6_addr dst6; /* BH_FW_DST_V6 */
    char host[254];       /* BH_FW_DST_HOST */
    int proto;            /* 0 any, else IPPROTO_TCP / IPPROTO_UDP / IPPROTO_ICMP */
    unsigned port_lo, port_hi; /* 0 = any */
    int icmptype;         /* -1 = any */
    bool dns;             /* specialtarget=dns */
    uint64_t expire;      /* 0 = never (absolute seconds since the epoch) */
};

/* Parses one rule line (normalised form, or anything qvm-firewall accepts; strict and
 * bounded). */
int bh_fw_rule_parse(const char *line, size_t len, struct bh_fw_rule *r, bh_error *err);

/* What a dsthost resolves to: n4/n6 addresses of each family, -1 for none of it. */
struct bh_fw_addrs {
    int n4, n6;
    int which; /* internal to the translation: 0, or the family (4, 6) being written */
    struct in_addr a4[BH_NET_FW_MAX_ADDRS];
    struct in6_addr a6[BH_NET_FW_MAX_ADDRS];
};
/* Resolves host (A and AAAA); 0 with out filled, or -1 when the name cannot be
 * resolved now (no answer yet, or neither family resolves). */
typedef int (*bh_fw_resolver)(void *ctx, const char *host, struct bh_fw_addrs *out);

struct bh_fw_result {
    time_t next_expire;  /* earliest expiry still in the future, 0 if none */
    bool blocked;        /* the rules could not be applied as written: all traffic refused */
    char why[200];       /* why blocked */
    unsigned dsthosts;   /* rules with a dsthost (the caller re-resolves them now and then) */
    unsigned blocked_family; /* bit 0 IPv4, bit 1 IPv6: refused whole (a dsthost without
                              * addresses of that family), the other family as written */
};

/* Appends to out the body of an nftables chain (one statement a line, every line
 * indented by four spaces) that enforces rules (text, one rule a line) for one
 * qube's traffic. Never fails open: a malformed rule list, or a dsthost that does
 * not resolve, yields a chain that refuses everything (res->blocked). Returns -1 only
 * when out cannot grow. */
int bh_fw_to_nft(const char *rules, size_t len, time_t now, bh_fw_resolver resolve, void *ctx, bh_buf *out,
                 struct bh_fw_result *res);
