/* libFuzzer harness: the firewall rule parser and the rules -> nftables translation
 * (src/net/fwrule.c). Checks that the output never carries a byte that could end a
 * statement or open a string in nft syntax other than the ones we write, and that an
 * input that is refused yields the fail-closed chain. */
#include "net/fwrule.h"
#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int resolver(void *ctx, const char *host, struct bh_fw_addrs *out)
{
    (void)ctx;
    size_t n = strlen(host);
    if (n % 3 == 0)
        return -1;
    /* every mix: A only, AAAA only, both, and up to the limit (more than it: cut) */
    out->n4 = (int)(n % 5) - 1;
    out->n6 = (int)(n % 7) - 2;
    if (n % 11 == 1)
        out->n4 = out->n6 = BH_NET_FW_MAX_ADDRS + 3;
    for (int i = 0; i < BH_NET_FW_MAX_ADDRS; i++) {
        out->a4[i].s_addr = htonl(0xc0000200u + (uint32_t)i);
        memset(&out->a6[i], 0, sizeof out->a6[i]);
        out->a6[i].s6_addr[0] = 0x20;
        out->a6[i].s6_addr[15] = (uint8_t)i;
    }
    return out->n4 < 0 && out->n6 < 0 ? -1 : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 200000)
        return 0;
    struct bh_fw_rule r;
    (void)bh_fw_rule_parse((const char *)data, size, &r, NULL);
    bh_buf b;
    bh_buf_init(&b, 0);
    struct bh_fw_result res;
    if (bh_fw_to_nft((const char *)data, size, 1000, resolver, NULL, &b, &res) < 0)
        __builtin_trap();
    for (size_t i = 0; i < b.len; i++) {
        char c = b.data[i];
        if (c == ';' || c == '"' || c == '#' || c == '$' || c == '@' || c == '\\' || (unsigned char)c > 0x7e ||
            ((unsigned char)c < 0x20 && c != '\n'))
            __builtin_trap();
    }
    static const char closed[] = "    reject with icmpx type admin-prohibited\n";
    if (b.len < sizeof closed - 1 || memcmp(b.data + b.len - (sizeof closed - 1), closed, sizeof closed - 1))
        __builtin_trap(); /* every chain ends refusing */
    if (res.blocked && b.len != sizeof closed - 1)
        __builtin_trap();
    bh_buf_free(&b);
    return 0;
}
