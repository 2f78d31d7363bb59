/* The addresses in a DNS answer (see dns.h): the only part of name resolution that
 * reads bytes from the network, kept apart so that it can be fuzzed on its own
 * (fuzz/net_dnsans.c). The message is walked by libresolv's bounded ns_* parser. */
#include "dns.h"
#include <arpa/nameser.h>
#include <resolv.h>
#include <string.h>
#include <sys/socket.h>

int bh_dns_answer_addrs(const unsigned char *msg, int len, int family, void *out, int max)
{
    ns_msg h;
    if (len <= 0 || len > BH_DNS_MSG_MAX || max <= 0 || ns_initparse(msg, len, &h) < 0)
        return -1;
    ns_type type = family == AF_INET6 ? ns_t_aaaa : ns_t_a;
    size_t alen = family == AF_INET6 ? 16 : 4;
    int count = 0, an = ns_msg_count(h, ns_s_an);
    for (int i = 0; i < an && count < max; i++) {
        ns_rr rr;
        if (ns_parserr(&h, ns_s_an, i, &rr) < 0)
            break;
        if (ns_rr_type(rr) == type && ns_rr_class(rr) == ns_c_in && ns_rr_rdlen(rr) == alen)
            memcpy((unsigned char *)out + (size_t)count++ * alen, ns_rr_rdata(rr), alen);
    }
    return count ? count : -1; /* as getaddrinfo: no address is no resolution */
}
