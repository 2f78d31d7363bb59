#include "fwrule.h"
#include "util.h"
#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

/* The rule elements in the order Qubes applies them (proto before dstports/icmptype,
 * because setting proto clears what the protocol cannot have). */
enum elem { E_ACTION, E_PROTO, E_DSTHOST, E_SPECIAL, E_PORTS, E_ICMP, E_EXPIRE, E_COMMENT, E_N };
static const char *const elem_names[E_N] = {
    "action", "proto", "dsthost", "specialtarget", "dstports", "icmptype", "expire", "comment",
};

static bool fail(const char **err, const char *msg)
{
    *err = msg;
    return false;
}

static bool parse_int(const char *s, long long lo, long long hi, long long *out)
{
    /* Python int(): optional sign, digits, surrounding whitespace. */
    while (*s == ' ' || *s == '\t')
        s++;
    const char *p = s;
    if (*p == '+' || *p == '-')
        p++;
    if (!*p)
        return false;
    long long v = 0;
    for (; *p >= '0' && *p <= '9'; p++) {
        if (v > 1000000000000000LL)
            return false;
        v = v * 10 + (*p - '0');
    }
    while (*p == ' ' || *p == '\t')
        p++;
    if (*p)
        return false;
    if (*s == '-')
        v = -v;
    if (v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool is_ip(int af, const char *s)
{
    unsigned char buf[16];
    return inet_pton(af, s, buf) == 1;
}

static bool set_dsthost(struct fwrule *r, const char *value, const char **err)
{
    const char *slash = strchr(value, '/');
    if (slash && strchr(slash + 1, '/'))
        return fail(err, "Too many /");
    if (!slash) {
        if (is_ip(AF_INET6, value)) {
            r->dsttype = "dst6";
            r->prefixlen = 128;
            r->dsthost = qt_printf("%s/128", value);
        } else if (is_ip(AF_INET, value)) {
            r->dsttype = "dst4";
            r->prefixlen = 32;
            r->dsthost = qt_printf("%s/32", value);
        } else {
            if (!*value)
                return fail(err, "Invalid hostname");
            for (const char *c = value; *c; c++)
                if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '-' ||
                      *c == '.' || *c == '_'))
                    return fail(err, "Invalid hostname");
            r->dsttype = "dsthost";
            r->prefixlen = 0;
            r->dsthost = qt_strdup(value);
        }
        return true;
    }
    char *host = qt_strndup(value, (size_t)(slash - value));
    long long plen;
    if (!parse_int(slash + 1, -1000000, 1000000, &plen))
        return fail(err, "Invalid netmask");
    if (plen < 0)
        return fail(err, "netmask must be non-negative");
    if (is_ip(AF_INET6, host)) {
        if (plen > 128)
            return fail(err, "netmask for IPv6 must be <= 128");
        r->dsttype = "dst6";
    } else if (is_ip(AF_INET, host)) {
        if (plen > 32)
            return fail(err, "netmask for IPv4 must be <= 32");
        r->dsttype = "dst4";
    } else {
        return fail(err, qt_printf("Invalid IP address: %s", host));
    }
    r->prefixlen = (int)plen;
    r->dsthost = qt_strdup(value);
    return true;
}

static bool set_elem(struct fwrule *r, enum elem e, const char *v, const char **err)
{
    long long n;
    switch (e) {
    case E_ACTION:
        if (strcmp(v, "accept") && strcmp(v, "drop"))
            return fail(err, qt_printf("invalid action: %s", v));
        r->action = qt_strdup(v);
        return true;
    case E_PROTO:
        if (strcmp(v, "tcp") && strcmp(v, "udp") && strcmp(v, "icmp"))
            return fail(err, qt_printf("invalid proto: %s", v));
        if (strcmp(v, "tcp") && strcmp(v, "udp"))
            r->has_ports = false;
        if (strcmp(v, "icmp"))
            r->has_icmptype = false;
        r->proto = qt_strdup(v);
        return true;
    case E_DSTHOST:
        return set_dsthost(r, v, err);
    case E_SPECIAL:
        if (strcmp(v, "dns"))
            return fail(err, qt_printf("invalid specialtarget: %s", v));
        r->specialtarget = "dns";
        return true;
    case E_PORTS: {
        if (!r->proto || (strcmp(r->proto, "tcp") && strcmp(r->proto, "udp")))
            return fail(err, "dstports valid only for 'tcp' and 'udp' protocols");
        const char *dash = strchr(v, '-');
        long long lo, hi;
        if (dash) {
            if (strchr(dash + 1, '-'))
                return fail(err, qt_printf("invalid dstports: %s", v));
            if (!parse_int(qt_strndup(v, (size_t)(dash - v)), -1, 1000000, &lo) ||
                !parse_int(dash + 1, -1, 1000000, &hi))
                return fail(err, qt_printf("invalid dstports: %s", v));
        } else {
            if (!parse_int(v, -1, 1000000, &lo))
                return fail(err, qt_printf("invalid dstports: %s", v));
            hi = lo;
        }
        if (lo < 0 || hi < 0 || lo > 65536 || hi > 65536)
            return fail(err, "Ports out of range");
        if (lo > hi)
            return fail(err, "Invalid port range");
        r->has_ports = true;
        r->port_lo = (unsigned)lo;
        r->port_hi = (unsigned)hi;
        return true;
    }
    case E_ICMP:
        if (!r->proto || strcmp(r->proto, "icmp"))
            return fail(err, "icmptype valid only for 'icmp' protocol");
        if (!parse_int(v, -1000000, 1000000, &n))
            return fail(err, qt_printf("invalid icmptype: %s", v));
        if (n < 0 || n > 255)
            return fail(err, "ICMP type out of range");
        r->has_icmptype = true;
        r->icmptype = (unsigned)n;
        return true;
    case E_EXPIRE:
        if (!parse_int(v, -(1LL << 40), 1LL << 40, &n))
            return fail(err, qt_printf("invalid expire: %s", v));
        r->has_expire = true;
        r->expire = n;
        return true;
    case E_COMMENT:
        /* One rule is one line of the Admin API payload: a newline in a comment would
         * smuggle in another rule. */
        for (const unsigned char *c = (const unsigned char *)v; *c; c++)
            if (*c < 0x20 || *c == 0x7f)
                return fail(err, "Invalid comment: control characters are not allowed");
        r->comment = qt_strdup(v);
        return true;
    default:
        return fail(err, "unknown rule element");
    }
}

static int elem_of(const char *key)
{
    if (!strcmp(key, "dst4") || !strcmp(key, "dst6"))
        return E_DSTHOST;
    for (int e = 0; e < E_N; e++)
        if (!strcmp(key, elem_names[e]))
            return e;
    return -1;
}

/* Applies collected values in Qubes' fixed order. */
static bool build(const char *vals[E_N], struct fwrule *r, const char **err)
{
    memset(r, 0, sizeof *r);
    for (int e = 0; e < E_N; e++)
        if (vals[e] && !set_elem(r, (enum elem)e, vals[e], err))
            return false;
    if (!r->action)
        return fail(err, "missing action=");
    return true;
}

bool fwrule_parse_line(const char *line, struct fwrule *r, const char **err)
{
    if (strlen(line) > FWRULE_MAX_LINE)
        return fail(err, "rule too long");
    const char *vals[E_N] = { 0 };
    /* Everything after "comment=" is the comment, spaces included. */
    const char *c = strstr(line, "comment=");
    char *opts = c ? qt_strndup(line, (size_t)(c - line)) : qt_strdup(line);
    if (c && c[8])
        vals[E_COMMENT] = c + 8;
    char *save = NULL;
    for (char *tok = strtok_r(opts, " ", &save); tok; tok = strtok_r(NULL, " ", &save)) {
        char *eq = strchr(tok, '=');
        if (!eq)
            return fail(err, qt_printf("invalid rule element: %s", tok));
        *eq = '\0';
        int e = elem_of(tok);
        if (e < 0)
            return fail(err, qt_printf("Unknown rule elements: %s", tok));
        vals[e] = eq + 1;
    }
    return build(vals, r, err);
}

bool fwrule_parse_args(const struct strv *args, time_t now, struct fwrule *r, const char **err)
{
    static const int order_init[] = { E_ACTION, E_DSTHOST, E_PROTO, E_PORTS, E_ICMP };
    int order[5];
    size_t norder = 5;
    memcpy(order, order_init, sizeof order);
    const char *vals[E_N] = { 0 };
    for (size_t i = 0; i < args->n; i++) {
        const char *opt = args->v[i];
        if (strlen(opt) > FWRULE_MAX_LINE)
            return fail(err, "rule too long");
        size_t len = strlen(opt);
        if (len && opt[len - 1] == '=')
            return fail(err, qt_printf("invalid rule description: %s", opt));
        const char *eq = strchr(opt, '=');
        const char *key, *value;
        if (!eq) {
            if (!norder)
                return fail(err, qt_printf("invalid rule description: %s", opt));
            key = elem_names[order[0]];
            value = opt;
        } else {
            if (strchr(eq + 1, '='))
                return fail(err, qt_printf("invalid rule description: %s", opt));
            key = qt_strndup(opt, (size_t)(eq - opt));
            value = eq + 1;
        }
        int e = elem_of(key);
        if (e < 0)
            return fail(err, qt_printf("Invalid rule element: %s", opt));
        if (e == E_EXPIRE && value[0] == '+') {
            long long secs;
            if (!parse_int(value + 1, 0, 1LL << 40, &secs))
                return fail(err, qt_printf("invalid expire: %s", value));
            value = qt_printf("%lld", (long long)now + secs);
        }
        vals[e] = value;
        /* Drop the element (and what its protocol rules out) from the implicit order. */
        size_t w = 0;
        bool tcpudp = e == E_PROTO && (!strcmp(value, "tcp") || !strcmp(value, "udp"));
        bool icmp = e == E_PROTO && !strcmp(value, "icmp");
        for (size_t k = 0; k < norder; k++) {
            if (order[k] == e || (tcpudp && order[k] == E_ICMP) || (icmp && order[k] == E_PORTS))
                continue;
            order[w++] = order[k];
        }
        norder = w;
    }
    return build(vals, r, err);
}

char *fwrule_format(const struct fwrule *r)
{
    char *s = qt_printf("action=%s", r->action);
    if (r->proto)
        s = qt_printf("%s proto=%s", s, r->proto);
    /* 0.0.0.0/0 and ::/0 match everything: Qubes leaves them out. */
    if (r->dsthost && !(r->prefixlen == 0 && strcmp(r->dsttype, "dsthost")))
        s = qt_printf("%s %s=%s", s, r->dsttype, r->dsthost);
    if (r->has_ports)
        s = qt_printf("%s dstports=%u-%u", s, r->port_lo, r->port_hi);
    if (r->has_icmptype)
        s = qt_printf("%s icmptype=%u", s, r->icmptype);
    if (r->specialtarget)
        s = qt_printf("%s specialtarget=%s", s, r->specialtarget);
    if (r->has_expire)
        s = qt_printf("%s expire=%lld", s, r->expire);
    if (r->comment)
        s = qt_printf("%s comment=%s", s, r->comment);
    return s;
}

void fwrule_cells(const struct fwrule *r, time_t now, const char *cells[8])
{
    cells[0] = r->action;
    cells[1] = r->dsthost ? r->dsthost : "-";
    cells[2] = r->proto ? r->proto : "-";
    cells[3] = !r->has_ports ? "-"
               : r->port_lo == r->port_hi ? qt_printf("%u", r->port_lo)
                                          : qt_printf("%u-%u", r->port_lo, r->port_hi);
    cells[4] = r->specialtarget ? r->specialtarget : "-";
    cells[5] = r->has_icmptype ? qt_printf("%u", r->icmptype) : "-";
    cells[6] = r->has_expire ? qt_printf("%+llds", r->expire - (long long)now) : "-";
    cells[7] = r->comment ? r->comment : "-";
}
