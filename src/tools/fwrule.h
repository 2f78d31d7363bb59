/* Firewall rules in Qubes' formats: the Admin API line ("action=accept dst4=1.2.3.4/32
 * proto=tcp dstports=443-443 comment=...") and qvm-firewall's command-line syntax
 * ("accept 1.2.3.4 tcp 443", "action=drop proto=icmp icmptype=8", or a mix).
 * Validation follows Qubes' client (qubesadmin.firewall). Parsing never trusts its
 * input: lines are length-limited and every element is checked. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#define FWRULE_MAX_LINE 4096

struct strv;

struct fwrule {
    const char *action;        /* accept | drop */
    const char *proto;         /* NULL | tcp | udp | icmp */
    const char *dsthost;       /* with /prefix for addresses */
    const char *dsttype;       /* dst4 | dst6 | dsthost */
    int prefixlen;
    bool has_ports;
    unsigned port_lo, port_hi;
    bool has_icmptype;
    unsigned icmptype;
    const char *specialtarget; /* NULL | dns */
    bool has_expire;
    long long expire;
    const char *comment;
};

/* Parses one Admin API line. On failure returns false with a message in *err. */
bool fwrule_parse_line(const char *line, struct fwrule *r, const char **err);
/* Parses qvm-firewall's rule arguments; now is used for "expire=+SECONDS". */
bool fwrule_parse_args(const struct strv *args, time_t now, struct fwrule *r, const char **err);
/* The Admin API representation (no newline). */
char *fwrule_format(const struct fwrule *r);
/* Table cells: ACTION HOST PROTOCOL PORT(S) SPECIAL-TARGET ICMP-TYPE EXPIRE COMMENT
 * ("-" where unset). */
void fwrule_cells(const struct fwrule *r, time_t now, const char *cells[8]);
