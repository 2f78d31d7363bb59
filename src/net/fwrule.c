#include "fwrule.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REJECT "reject with icmpx type admin-prohibited"

static int parse_uint(const char *s, size_t n, unsigned long max, unsigned long *out)
{
    if (n == 0 || n > 10)
        return -1;
    unsigned long v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        v = v * 10 + (unsigned long)(s[i] - '0');
    }
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

static bool is_key(const char *k, size_t kn, const char *want) { return kn == strlen(want) && !memcmp(k, want, kn); }
static bool is_val(const char *v, size_t vn, const char *want) { return vn == strlen(want) && !memcmp(v, want, vn); }

static bool host_ok(const char *v, size_t n)
{
    if (n == 0 || n > 253 || v[0] == '-' || v[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int bh_fw_rule_parse(const char *line, size_t len, struct bh_fw_rule *r, bh_error *err)
{
    memset(r, 0, sizeof *r);
    r->icmptype = -1;
    if (len == 0)
        return bh_fail(err, EINVAL, "empty rule");
    if (len > BH_NET_FW_MAX_LINE)
        return bh_fail(err, E2BIG, "rule too long");
    bool have_action = false, have_dst = false, have_proto = false, have_ports = false, have_icmp = false,
         have_special = false, have_expire = false;
    size_t i = 0;
    while (i < len) {
        if (line[i] == ' ') {
            i++;
            continue;
        }
        const char *k = line + i;
        const char *eq = memchr(k, '=', len - i);
        if (!eq)
            return bh_fail(err, EINVAL, "expected key=value");
        size_t kn = (size_t)(eq - k);
        if (is_key(k, kn, "comment"))
            break; /* the comment takes the rest of the line */
        const char *v = eq + 1;
        const char *end = memchr(v, ' ', len - (size_t)(v - line));
        size_t vn = end ? (size_t)(end - v) : len - (size_t)(v - line);
        i = (size_t)(v - line) + vn;
        for (size_t j = 0; j < vn; j++)
            if ((unsigned char)v[j] < 0x21 || (unsigned char)v[j] > 0x7e)
                return bh_fail(err, EINVAL, "invalid character in rule");
        unsigned long n, m;
        if (is_key(k, kn, "action")) {
            if (have_action)
                return bh_fail(err, EINVAL, "duplicate action");
            if (is_val(v, vn, "accept"))
                r->accept = true;
            else if (!is_val(v, vn, "drop"))
                return bh_fail(err, EINVAL, "invalid action");
            have_action = true;
        } else if (is_key(k, kn, "dst4") || is_key(k, kn, "dst6") || is_key(k, kn, "dsthost")) {
            if (have_dst)
                return bh_fail(err, EINVAL, "more than one destination");
            have_dst = true;
            if (k[3] == '4') {
                char a[32];
                const char *slash = memchr(v, '/', vn);
                size_t an = slash ? (size_t)(slash - v) : vn;
                if (an == 0 || an >= sizeof a)
                    return bh_fail(err, EINVAL, "invalid dst4");
                memcpy(a, v, an);
                a[an] = '\0';
                if (inet_pton(AF_INET, a, &r->dst4) != 1)
                    return bh_fail(err, EINVAL, "invalid dst4");
                n = 32;
                if (slash && parse_uint(slash + 1, vn - an - 1, 32, &n) < 0)
                    return bh_fail(err, EINVAL, "invalid dst4 prefix");
                uint32_t mask = n ? htonl(~0u << (32 - n)) : 0;
                if (r->dst4.s_addr & ~mask)
                    return bh_fail(err, EINVAL, "dst4 has host bits set");
                r->prefix = (unsigned)n;
                r->dst_kind = BH_FW_DST_V4;
            } else if (k[3] == '6') {
                char a[64];
                const char *slash = memchr(v, '/', vn);
                size_t an = slash ? (size_t)(slash - v) : vn;
                struct in6_addr a6;
                if (an == 0 || an >= sizeof a)
                    return bh_fail(err, EINVAL, "invalid dst6");
                memcpy(a, v, an);
                a[an] = '\0';
                n = 128;
                if (inet_pton(AF_INET6, a, &a6) != 1 || (slash && parse_uint(slash + 1, vn - an - 1, 128, &n) < 0))
                    return bh_fail(err, EINVAL, "invalid dst6");
                for (unsigned bit = (unsigned)n; bit < 128; bit++)
                    if (a6.s6_addr[bit / 8] & (0x80u >> (bit % 8)))
                        return bh_fail(err, EINVAL, "dst6 has host bits set");
                r->dst6 = a6;
                r->prefix = (unsigned)n;
                r->dst_kind = BH_FW_DST_V6;
            } else {
                if (!host_ok(v, vn))
                    return bh_fail(err, EINVAL, "invalid dsthost");
                memcpy(r->host, v, vn);
                r->host[vn] = '\0';
                r->dst_kind = BH_FW_DST_HOST;
            }
        } else if (is_key(k, kn, "proto")) {
            if (have_proto)
                return bh_fail(err, EINVAL, "duplicate proto");
            have_proto = true;
            if (is_val(v, vn, "tcp"))
                r->proto = IPPROTO_TCP;
            else if (is_val(v, vn, "udp"))
                r->proto = IPPROTO_UDP;
            else if (is_val(v, vn, "icmp"))
                r->proto = IPPROTO_ICMP;
            else
                return bh_fail(err, EINVAL, "invalid proto");
        } else if (is_key(k, kn, "dstports")) {
            if (have_ports)
                return bh_fail(err, EINVAL, "duplicate dstports");
            have_ports = true;
            const char *dash = memchr(v, '-', vn);
            size_t an = dash ? (size_t)(dash - v) : vn;
            if (parse_uint(v, an, 65535, &n) < 0 || n == 0)
                return bh_fail(err, EINVAL, "invalid dstports");
            m = n;
            if (dash && (parse_uint(dash + 1, vn - an - 1, 65535, &m) < 0 || m < n))
                return bh_fail(err, EINVAL, "invalid dstports");
            r->port_lo = (unsigned)n;
            r->port_hi = (unsigned)m;
        } else if (is_key(k, kn, "icmptype")) {
            if (have_icmp || parse_uint(v, vn, 255, &n) < 0)
                return bh_fail(err, EINVAL, "invalid icmptype");
            have_icmp = true;
            r->icmptype = (int)n;
        } else if (is_key(k, kn, "specialtarget")) {
            if (have_special || !is_val(v, vn, "dns"))
                return bh_fail(err, EINVAL, "invalid specialtarget");
            have_special = true;
            r->dns = true;
        } else if (is_key(k, kn, "expire")) {
            if (have_expire || parse_uint(v, vn, 4000000000UL, &n) < 0)
                return bh_fail(err, EINVAL, "invalid expire");
            have_expire = true;
            r->expire = n;
        } else {
            return bh_fail(err, EINVAL, "unknown rule option");
        }
    }
    if (!have_action)
        return bh_fail(err, EINVAL, "rule has no action");
    if (r->port_lo && r->proto != IPPROTO_TCP && r->proto != IPPROTO_UDP)
        return bh_fail(err, EINVAL, "dstports needs proto=tcp or proto=udp");
    if (r->icmptype >= 0 && r->proto != IPPROTO_ICMP)
        return bh_fail(err, EINVAL, "icmptype needs proto=icmp");
    return 0;
}

static int emit_rule(const struct bh_fw_rule *r, const struct bh_fw_addrs *addrs, bh_buf *out)
{
    /* specialtarget=dns as Qubes: only port 53 (a rule for other ports never matches),
     * only TCP/UDP, only to the DNS servers. Matched on the destination before the
     * netvm's DNAT to its upstream resolvers, so it holds in every netvm. */
    const char *action = r->accept ? "accept" : REJECT;
    if (r->dns) {
        if (r->port_lo && !(r->port_lo == 53 && r->port_hi == 53))
            return 0;
        if (r->proto == IPPROTO_ICMP)
            return 0;
        if (r->dst_kind == BH_FW_DST_V4) {
            /* intersection with the DNS servers */
            uint32_t mask = r->prefix ? htonl(~0u << (32 - r->prefix)) : 0;
            bool any = false;
            const char *dns[] = { "10.139.1.1", "10.139.1.2" };
            bh_buf_adds(out, "    ct original ip daddr { ");
            for (int i = 0; i < 2; i++) {
                struct in_addr d;
                inet_pton(AF_INET, dns[i], &d);
                if ((d.s_addr & mask) == r->dst4.s_addr) {
                    bh_buf_printf(out, "%s%s", any ? ", " : "", dns[i]);
                    any = true;
                }
            }
            if (!any) {
                /* nothing in common: drop what we started */
                out->len -= strlen("    ct original ip daddr { ");
                return 0;
            }
            bh_buf_adds(out, " } ");
        } else if (r->dst_kind == BH_FW_DST_ANY) {
            bh_buf_adds(out, "    ct original ip daddr { 10.139.1.1, 10.139.1.2 } ");
        } else {
            return 0; /* dsthost/dst6 with dns: no DNS server is a resolved host of ours */
        }
        if (r->proto == IPPROTO_TCP)
            bh_buf_adds(out, "tcp dport 53 ");
        else if (r->proto == IPPROTO_UDP)
            bh_buf_adds(out, "udp dport 53 ");
        else
            bh_buf_adds(out, "meta l4proto { tcp, udp } th dport 53 ");
        return bh_buf_printf(out, "%s\n", action);
    }
    if (r->proto == IPPROTO_ICMP && r->dst_kind == BH_FW_DST_ANY) {
        /* one rule per family, as Qubes writes: ICMP for IPv4, ICMPv6 for IPv6 */
        struct bh_fw_rule v4 = *r, v6 = *r;
        v4.dst_kind = BH_FW_DST_V4;
        v4.prefix = 0;
        v4.dst4.s_addr = 0;
        v6.dst_kind = BH_FW_DST_V6;
        v6.prefix = 0;
        memset(&v6.dst6, 0, sizeof v6.dst6);
        if (emit_rule(&v4, addrs, out) < 0)
            return -1;
        return emit_rule(&v6, addrs, out);
    }
    if (r->dst_kind == BH_FW_DST_HOST && !addrs->which) {
        /* one statement per family with addresses: A records in IPv4, AAAA in IPv6 */
        struct bh_fw_addrs one = *addrs;
        one.which = 4;
        if (addrs->n4 > 0 && emit_rule(r, &one, out) < 0)
            return -1;
        one.which = 6;
        if (addrs->n6 > 0 && emit_rule(r, &one, out) < 0)
            return -1;
        return 0;
    }
    bh_buf_adds(out, "    ");
    bool v6 = r->dst_kind == BH_FW_DST_V6 || (r->dst_kind == BH_FW_DST_HOST && addrs->which == 6);
    if (r->dst_kind == BH_FW_DST_V4) {
        char a[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &r->dst4, a, sizeof a);
        if (r->prefix)
            bh_buf_printf(out, "ip daddr %s/%u ", a, r->prefix);
        else
            bh_buf_adds(out, "meta nfproto ipv4 ");
    } else if (r->dst_kind == BH_FW_DST_V6) {
        char a[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &r->dst6, a, sizeof a);
        if (r->prefix)
            bh_buf_printf(out, "ip6 daddr %s/%u ", a, r->prefix);
        else
            bh_buf_adds(out, "meta nfproto ipv6 ");
    } else if (r->dst_kind == BH_FW_DST_HOST) {
        bh_buf_adds(out, v6 ? "ip6 daddr { " : "ip daddr { ");
        int n = v6 ? addrs->n6 : addrs->n4;
        for (int i = 0; i < n && i < BH_NET_FW_MAX_ADDRS; i++) {
            char a[INET6_ADDRSTRLEN];
            if (v6)
                inet_ntop(AF_INET6, &addrs->a6[i], a, sizeof a);
            else
                inet_ntop(AF_INET, &addrs->a4[i], a, sizeof a);
            bh_buf_printf(out, "%s%s", i ? ", " : "", a);
        }
        bh_buf_adds(out, " } ");
    }
    if (r->proto == IPPROTO_TCP || r->proto == IPPROTO_UDP) {
        const char *p = r->proto == IPPROTO_TCP ? "tcp" : "udp";
        if (r->port_lo && r->port_lo != r->port_hi)
            bh_buf_printf(out, "%s dport %u-%u ", p, r->port_lo, r->port_hi);
        else if (r->port_lo)
            bh_buf_printf(out, "%s dport %u ", p, r->port_lo);
        else
            bh_buf_printf(out, "meta l4proto %s ", p);
    } else if (r->proto == IPPROTO_ICMP) {
        if (r->icmptype >= 0)
            bh_buf_printf(out, "%s type %d ", v6 ? "icmpv6" : "icmp", r->icmptype);
        else
            bh_buf_printf(out, "meta l4proto %s ", v6 ? "ipv6-icmp" : "icmp");
    }
    return bh_buf_printf(out, "%s\n", action);
}

static int blocked(bh_buf *out, size_t start, struct bh_fw_result *res, const char *why)
{
    out->len = start;
    res->blocked = true;
    res->next_expire = 0;
    snprintf(res->why, sizeof res->why, "%.190s", why);
    return bh_buf_adds(out, "    " REJECT "\n");
}

int bh_fw_to_nft(const char *rules, size_t len, time_t now, bh_fw_resolver resolve, void *ctx, bh_buf *out,
                 struct bh_fw_result *res)
{
    memset(res, 0, sizeof *res);
    size_t start = out->len;
    size_t pos = 0, count = 0;
    bool fam_blocked[2] = { false, false }; /* IPv4, IPv6: a dsthost without such addresses */
    char fam_why[2][200];
    while (pos < len) {
        const char *nl = memchr(rules + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (rules + pos)) : len - pos;
        const char *line = rules + pos;
        pos += l + 1;
        if (l == 0)
            continue;
        if (++count > BH_NET_FW_MAX_RULES)
            return blocked(out, start, res, "too many rules");
        struct bh_fw_rule r;
        bh_error e = { 0 };
        if (bh_fw_rule_parse(line, l, &r, &e) < 0)
            return blocked(out, start, res, e.msg);
        if (r.expire && (time_t)r.expire <= now)
            continue;
        if (r.expire && (!res->next_expire || (time_t)r.expire < res->next_expire))
            res->next_expire = (time_t)r.expire;
        struct bh_fw_addrs addrs = { .n4 = -1, .n6 = -1 };
        if (r.dst_kind == BH_FW_DST_HOST) {
            res->dsthosts++;
            if (!resolve || resolve(ctx, r.host, &addrs) < 0 || (addrs.n4 < 0 && addrs.n6 < 0)) {
                char why[200];
                snprintf(why, sizeof why, "cannot resolve %.100s", r.host);
                return blocked(out, start, res, why);
            }
            addrs.which = 0;
            for (int f = 0; f < 2; f++) {
                int *n = f ? &addrs.n6 : &addrs.n4;
                if (*n > BH_NET_FW_MAX_ADDRS)
                    *n = BH_NET_FW_MAX_ADDRS;
                if (*n <= 0 && !fam_blocked[f]) {
                    fam_blocked[f] = true;
                    snprintf(fam_why[f], sizeof fam_why[f], "%.100s has no %s address", r.host, f ? "IPv6" : "IPv4");
                }
            }
        }
        if (emit_rule(&r, &addrs, out) < 0)
            return -1;
    }
    if (fam_blocked[0] && fam_blocked[1])
        return blocked(out, start, res, fam_why[0]);
    for (int f = 0; f < 2; f++) {
        if (!fam_blocked[f])
            continue;
        /* that family refused before any rule (first match decides), as Qubes blocks the
         * family whose rules it could not resolve */
        char line[96];
        int l = snprintf(line, sizeof line, "    meta nfproto %s " REJECT "\n", f ? "ipv6" : "ipv4");
        if (bh_buf_adds(out, line) < 0)
            return -1;
        memmove(out->data + start + l, out->data + start, out->len - start - (size_t)l);
        memcpy(out->data + start, line, (size_t)l);
        snprintf(res->why, sizeof res->why, "%.190s", fam_why[f]);
        res->blocked_family |= 1u << f;
    }
    return bh_buf_adds(out, "    " REJECT "\n");
}
