/* The nftables table of one qube's namespace. Where each rule sits and why:
 *
 *   pre (prerouting, priority raw): anti-spoofing. A client's packets must carry its
 *       address and its MAC; IPv6 is dropped on every link but those with routed IPv6
 *       (Qubes' `ipv6` feature), where a client's IPv6 packets must carry its ip6 (so
 *       link-local and unspecified sources are dropped too, as in Qubes' antispoof).
 *   input: nothing reaches this qube's own services from its links except replies
 *       and ICMP (no client-to-netvm services, no netvm-to-client connections).
 *   forward: a client's packets may only go out by eth0 (no qube-to-qube), through
 *       the client's firewall chain, evaluated on every packet (not only on new
 *       connections) so that a changed rule cuts established connections at once.
 *       From eth0 only replies come back in.
 *   nat: DNS to 10.139.1.1/2 goes to the upstream resolvers where this qube is the
 *       edge; everything leaving by eth0 is masqueraded (NAT at each hop).
 * The connection limits are in a separate table that is never replaced (net.h); this
 * transaction only updates which clients are exempt from them. */
#include "net.h"
#include "dns.h"
#include "nft.h"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

static const char *ip4(struct in_addr a, char *b)
{
    inet_ntop(AF_INET, &a, b, INET_ADDRSTRLEN);
    return b;
}

static const char *ip6(const struct in6_addr *a, char *b)
{
    inet_ntop(AF_INET6, a, b, INET6_ADDRSTRLEN);
    return b;
}

/* `meta nfproto ipv6 <dir> != lo <dir>name != { links with IPv6 } drop` */
static void v6_gate(const struct bh_net_table *t, bh_buf *o, const char *dir)
{
    bh_buf_printf(o, "    meta nfproto ipv6 %s != lo ", dir);
    const char *sep = "name != { ";
    if (t->v6_up) {
        bh_buf_printf(o, "%s%s\"eth0\"", dir, sep);
        sep = ", ";
    }
    for (size_t i = 0; t->serves && i < t->nclients; i++) {
        if (!t->clients[i].v6)
            continue;
        char vif[16];
        bh_net_vif_name(t->clients[i].qid, vif);
        bh_buf_printf(o, "%s%s\"%s\"", *sep == 'n' ? dir : "", sep, vif);
        sep = ", ";
    }
    bh_buf_adds(o, *sep == 'n' ? "drop\n" : " } drop\n");
}

int bh_net_table_script(const struct bh_net_table *t, bh_buf *o, struct bh_net_table_result *res)
{
    memset(res, 0, sizeof *res);
    char a[INET6_ADDRSTRLEN], m[20];
    bh_buf_adds(o, "table inet bulkhead\ndelete table inet bulkhead\ntable inet bulkhead {\n");
    bh_buf_adds(o, "  chain pre {\n    type filter hook prerouting priority raw; policy accept;\n");
    v6_gate(t, o, "iif");
    for (size_t i = 0; t->serves && i < t->nclients; i++) {
        const struct bh_net_client *c = &t->clients[i];
        char vif[16];
        bh_net_vif_name(c->qid, vif);
        snprintf(m, sizeof m, "%02x:%02x:%02x:%02x:%02x:%02x", c->mac[0], c->mac[1], c->mac[2], c->mac[3], c->mac[4],
                 c->mac[5]);
        bh_buf_printf(o, "    iifname \"%s\" ether saddr != %s drop\n", vif, m);
        bh_buf_printf(o, "    iifname \"%s\" ip saddr != %s drop\n", vif, ip4(c->ip, a));
        if (c->v6)
            bh_buf_printf(o, "    iifname \"%s\" ip6 saddr != %s drop\n", vif, ip6(&c->ip6, a));
    }
    bh_buf_adds(o, "  }\n");
    bh_buf_adds(o, "  chain input {\n    type filter hook input priority filter; policy drop;\n"
                   "    iif lo accept\n    ct state established,related accept\n    ct state invalid drop\n"
                   "    meta l4proto { icmp, ipv6-icmp } accept\n  }\n");
    bh_buf_adds(o, "  chain output {\n    type filter hook output priority filter; policy accept;\n");
    v6_gate(t, o, "oif");
    bh_buf_adds(o, "  }\n");
    bh_buf_adds(o, "  chain forward {\n    type filter hook forward priority filter; policy drop;\n"
                   "    ct state invalid drop\n");
    if (t->serves && t->upstream) {
        bh_buf_adds(o, "    iifname \"eth0\" oifname \"vif*\" ct state established,related accept\n");
        for (size_t i = 0; i < t->nclients; i++) {
            char vif[16];
            bh_net_vif_name(t->clients[i].qid, vif);
            bh_buf_printf(o, "    iifname \"%s\" oifname \"eth0\" jump fw_%u\n", vif, t->clients[i].qid);
        }
    }
    bh_buf_adds(o, "  }\n");
    for (size_t i = 0; t->serves && t->upstream && i < t->nclients; i++) {
        const struct bh_net_client *c = &t->clients[i];
        bh_buf_printf(o, "  chain fw_%u {\n", c->qid);
        struct bh_fw_result fr;
        const char *rules = c->rules ? c->rules : "action=accept\n";
        if (bh_fw_to_nft(rules, strlen(rules), t->now, t->resolve, t->resolve_ctx, o, &fr) < 0)
            return -1;
        if (fr.next_expire && (!res->next_expire || fr.next_expire < res->next_expire))
            res->next_expire = fr.next_expire;
        res->dsthosts += fr.dsthosts;
        res->blocked += fr.blocked;
        bh_buf_adds(o, "  }\n");
    }
    if (t->serves) {
        bh_buf_adds(o, "  chain nat_pre {\n    type nat hook prerouting priority dstnat; policy accept;\n");
        for (int i = 0; i < 2 && t->ndns > 0; i++)
            bh_buf_printf(o, "    iifname \"vif*\" ip daddr %s meta l4proto { tcp, udp } th dport 53 dnat ip to %s\n",
                          i ? BH_DNS_VIRT2 : BH_DNS_VIRT1, ip4(t->dns[i < t->ndns ? i : 0], a));
        bh_buf_adds(o, "  }\n");
    }
    bh_buf_adds(o, "  chain nat_out {\n    type nat hook output priority -100; policy accept;\n");
    for (int i = 0; i < 2 && t->ndns > 0; i++)
        bh_buf_printf(o, "    ip daddr %s meta l4proto { tcp, udp } th dport 53 dnat ip to %s\n",
                      i ? BH_DNS_VIRT2 : BH_DNS_VIRT1, ip4(t->dns[i < t->ndns ? i : 0], a));
    bh_buf_adds(o, "  }\n");
    if (t->upstream)
        bh_buf_adds(o, "  chain nat_post {\n    type nat hook postrouting priority srcnat; policy accept;\n"
                       "    oifname \"eth0\" masquerade\n  }\n");
    bh_buf_adds(o, "}\n");
    /* Clients that are netvms limit their own clients (and themselves): not counted
     * here as one source. Only this set changes; the limit's counts stay (net.h). */
    if (!t->cap_table)
        return 0;
    bh_buf_adds(o, "add table inet " BH_NET_CAP_TABLE "\nadd set inet " BH_NET_CAP_TABLE " exempt { type ipv4_addr; }\n"
                   "flush set inet " BH_NET_CAP_TABLE " exempt\n"
                   "add set inet " BH_NET_CAP_TABLE " exempt6 { type ipv6_addr; }\n"
                   "flush set inet " BH_NET_CAP_TABLE " exempt6\n");
    for (int fam = 4; fam <= 6; fam += 2) {
        bool any = false;
        for (size_t i = 0; t->serves && i < t->nclients; i++) {
            const struct bh_net_client *c = &t->clients[i];
            if (!c->serves || (fam == 6 && !c->v6))
                continue;
            bh_buf_printf(o, "%s%s", any ? ", " : fam == 4 ? "add element inet " BH_NET_CAP_TABLE " exempt { "
                                                           : "add element inet " BH_NET_CAP_TABLE " exempt6 { ",
                          fam == 4 ? ip4(c->ip, a) : ip6(&c->ip6, a));
            any = true;
        }
        bh_buf_adds(o, any ? " }\n" : "");
    }
    return 0;
}

int bh_net_table_submit(const char *netns, const struct bh_net_table *t, struct bh_net_table_result *res,
                        bh_error *err)
{
    bh_buf b;
    bh_buf_init(&b, 0);
    if (t->prelude)
        bh_buf_adds(&b, t->prelude);
    int r = bh_net_table_script(t, &b, res);
    if (r == 0 && bh_buf_addc(&b, '\0') == 0)
        r = bh_net_script_submit(netns, b.data, err);
    else
        r = bh_fail(err, ENOMEM, "building the nftables table");
    bh_buf_free(&b);
    return r;
}

int bh_net_script_submit(const char *netns, const char *script, bh_error *err)
{
    int fd = open(netns, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_fail_errno(err, "open %s", netns);
    int id = bh_nft_submit(fd, script, err); /* the namespace's fd went with the request */
    close(fd);
    return id;
}
