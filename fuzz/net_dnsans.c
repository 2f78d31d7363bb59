/* libFuzzer harness: the addresses taken from a DNS answer (src/net/dnsans.c), what
 * the dsthost resolver helper reads from the network. Both families are asked of each
 * input; the count never exceeds the room given, and every address written lies in
 * the room (ASan checks the rest). */
#include "net/dns.h"
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct in_addr four[3];
    struct in6_addr six[3];
    int n = bh_dns_answer_addrs(data, (int)(size > 1 << 20 ? 1 << 20 : size), AF_INET, four, 3);
    if (n < -1 || n == 0 || n > 3)
        __builtin_trap();
    n = bh_dns_answer_addrs(data, (int)(size > 1 << 20 ? 1 << 20 : size), AF_INET6, six, 3);
    if (n < -1 || n == 0 || n > 3)
        __builtin_trap();
    if (size > BH_DNS_MSG_MAX && n != -1)
        __builtin_trap(); /* longer than any answer read: refused */
    return 0;
}
