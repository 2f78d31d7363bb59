#include "tap.h"
#include "firewall.h"
#include <stdlib.h>
#include <string.h>

static int ok(const char *in, const char *want)
{
    char out[2048];
    bh_error e;
    if (bh_fw_rule_normalize(in, strlen(in), 1000, out, sizeof out, &e) < 0) {
        fprintf(stderr, "unexpected error for '%s': %s\n", in, e.msg);
        return 0;
    }
    if (strcmp(out, want)) {
        fprintf(stderr, "'%s' -> '%s', want '%s'\n", in, out, want);
        return 0;
    }
    return 1;
}

static int bad(const char *in)
{
    char out[2048];
    return bh_fw_rule_normalize(in, strlen(in), 1000, out, sizeof out, NULL) < 0;
}

int main(void)
{
    CHECK(ok("action=accept", "action=accept"));
    CHECK(ok("action=accept dst4=1.2.3.4 proto=tcp dstports=443", "action=accept dst4=1.2.3.4/32 proto=tcp dstports=443-443"));
    CHECK(ok("proto=udp action=drop dst4=10.0.0.0/8 dstports=1-1024", "action=drop dst4=10.0.0.0/8 proto=udp dstports=1-1024"));
    CHECK(ok("action=drop dst6=2001:DB8::/32", "action=drop dst6=2001:db8::/32"));
    CHECK(ok("action=accept dsthost=example.com comment=my rule % here", "action=accept dsthost=example.com comment=my rule % here"));
    CHECK(ok("action=accept specialtarget=dns", "action=accept specialtarget=dns"));
    CHECK(ok("action=accept proto=icmp icmptype=8", "action=accept proto=icmp icmptype=8"));
    CHECK(ok("action=accept expire=+60", "action=accept expire=1060"));
    CHECK(bad(""));
    CHECK(bad("dst4=1.2.3.4"));                       /* no action */
    CHECK(bad("action=allow"));
    CHECK(bad("action=accept action=drop"));
    CHECK(bad("action=accept dst4=1.2.3.4/24"));       /* host bits */
    CHECK(bad("action=accept dst4=1.2.3.400"));
    CHECK(bad("action=accept dst4=1.2.3.4/33"));
    CHECK(bad("action=accept dstports=80"));           /* no proto */
    CHECK(bad("action=accept proto=tcp dstports=0"));
    CHECK(bad("action=accept proto=tcp dstports=90-80"));
    CHECK(bad("action=accept proto=tcp dstports=70000"));
    CHECK(bad("action=accept proto=tcp icmptype=3"));
    CHECK(bad("action=accept dsthost=exa$mple.com"));
    CHECK(bad("action=accept dst4=1.2.3.4 dsthost=x.org"));
    CHECK(bad("action=accept nosuch=1"));
    CHECK(bad("action=accept\x01"));
    CHECK(bad("action"));
    char *n = bh_fw_rules_normalize("action=accept proto=tcp dstports=22\naction=drop\n", 48, 0, NULL);
    CHECK(n && !strcmp(n, "action=accept proto=tcp dstports=22-22\naction=drop\n"));
    free(n);
    CHECK(bh_fw_rules_normalize("action=accept\n\naction=drop", 26, 0, NULL) == NULL); /* empty line */
    n = bh_fw_rules_normalize("", 0, 0, NULL);
    CHECK(n && !strcmp(n, ""));
    free(n);
    return tap_done();
}
