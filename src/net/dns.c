#include "dns.h"
#include "cleanup.h"
#include "io.h"
#include "netns.h"
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netdb.h>
#include <resolv.h>
#include <string.h>

int bh_dns_parse_resolv(const char *text, size_t len, struct in_addr *out, int max)
{
    int n = 0;
    size_t pos = 0;
    while (pos < len && n < max) {
        const char *line = text + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - line) : len - pos;
        pos += l + 1;
        static const char kw[] = "nameserver";
        if (l <= sizeof kw || memcmp(line, kw, sizeof kw - 1) || (line[sizeof kw - 1] != ' ' && line[sizeof kw - 1] != '\t'))
            continue;
        size_t i = sizeof kw;
        while (i < l && (line[i] == ' ' || line[i] == '\t'))
            i++;
        size_t j = i;
        while (j < l && line[j] != ' ' && line[j] != '\t' && line[j] != '\r' && line[j] != '#')
            j++;
        char a[INET_ADDRSTRLEN];
        if (j - i == 0 || j - i >= sizeof a)
            continue;
        memcpy(a, line + i, j - i);
        a[j - i] = '\0';
        if (inet_pton(AF_INET, a, &out[n]) == 1)
            n++;
    }
    return n;
}

int bh_dns_read_resolv(const char *path, struct in_addr *out, int max)
{
    size_t len = 0;
    _cleanup_free_ char *t = bh_read_file(path, 65536, &len);
    return t ? bh_dns_parse_resolv(t, len, out, max) : 0;
}

int bh_dns_resolve(int nsfd, const struct in_addr *servers, int n, const char *host, int family, void *out, int max)
{
    if (n <= 0)
        return -1;
    int saved = -1;
    if (nsfd >= 0 && bh_netns_enter(nsfd, &saved, NULL) < 0)
        return -1;
    struct __res_state st;
    memset(&st, 0, sizeof st);
    int count = -1;
    if (res_ninit(&st) == 0) {
        st.nscount = n > MAXNS ? MAXNS : n;
        for (int i = 0; i < st.nscount; i++) {
            memset(&st.nsaddr_list[i], 0, sizeof st.nsaddr_list[i]);
            st.nsaddr_list[i].sin_family = AF_INET;
            st.nsaddr_list[i].sin_port = htons(53);
            st.nsaddr_list[i].sin_addr = servers[i];
        }
        st.retrans = 1;
        st.retry = 2;
        st.options &= ~(unsigned long)(RES_DNSRCH | RES_DEFNAMES);
        unsigned char ans[BH_DNS_MSG_MAX];
        int len = res_nquery(&st, host, ns_c_in, family == AF_INET6 ? ns_t_aaaa : ns_t_a, ans, sizeof ans);
        if (len > (int)sizeof ans)
            len = (int)sizeof ans; /* res_nquery returns the full length of a cut answer */
        count = bh_dns_answer_addrs(ans, len, family, out, max);
        res_nclose(&st);
    }
    bh_netns_leave(saved);
    return count;
}
