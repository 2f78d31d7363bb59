#include "firewall.h"
#include "buf.h"
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { F_ACTION, F_DST, F_PROTO, F_PORTS, F_ICMP, F_SPECIAL, F_EXPIRE, F_COMMENT, F_N };

static int parse_uint(const char *s, unsigned long max, unsigned long *out)
{
    if (!*s || strlen(s) > 10)
        return -1;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9')
            return -1;
    unsigned long v = strtoul(s, NULL, 10);
    if (v > max)
        return -1;
    *out = v;
    return 0;
}

/* Address with optional prefix; host bits must be clear (as Python's ipaddress does). */
static int norm_net(int af, const char *v, char *out, size_t cap)
{
    char addr[64];
    const char *slash = strchr(v, '/');
    size_t alen = slash ? (size_t)(slash - v) : strlen(v);
    if (alen == 0 || alen >= sizeof addr)
        return -1;
    memcpy(addr, v, alen);
    addr[alen] = '\0';
    unsigned char bytes[16];
    if (inet_pton(af, addr, bytes) != 1)
        return -1;
    unsigned long maxp = af == AF_INET ? 32 : 128, prefix = maxp;
    if (slash && parse_uint(slash + 1, maxp, &prefix) < 0)
        return -1;
    size_t nbytes = af == AF_INET ? 4 : 16;
    for (size_t bit = prefix; bit < nbytes * 8; bit++)
        if (bytes[bit / 8] & (0x80 >> (bit % 8)))
            return -1;
    char txt[INET6_ADDRSTRLEN];
    if (!inet_ntop(af, bytes, txt, sizeof txt))
        return -1;
    snprintf(out, cap, "%s/%lu", txt, prefix);
    return 0;
}

static bool host_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > 253 || v[0] == '-' || v[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = v[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
            return false;
    }
    return true;
}

int bh_fw_rule_normalize(const char *line, size_t len, time_t now, char *out, size_t cap, bh_error *err)
{
    if (len == 0)
        return bh_fail(err, EINVAL, "empty rule");
    if (len > BH_FW_MAX_LINE)
        return bh_fail(err, E2BIG, "rule too long");
    char buf[BH_FW_MAX_LINE + 1];
    memcpy(buf, line, len);
    buf[len] = '\0';
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)buf[i] < 0x20 || (unsigned char)buf[i] > 0x7e)
            return bh_fail(err, EINVAL, "invalid character in rule");
    char f[F_N][300];
    bool have[F_N] = { false };
    const char *dstkey = NULL;
    char proto[8] = "";
    char *p = buf;
    while (*p) {
        if (*p == ' ') {
            p++;
            continue;
        }
        char *eq = strchr(p, '=');
        if (!eq)
            return bh_fail(err, EINVAL, "expected key=value, got '%.40s'", p);
        *eq = '\0';
        const char *key = p;
        char *val = eq + 1;
        if (!strcmp(key, "comment")) {
            /* The comment takes the rest of the line, spaces included. */
            if (strlen(val) >= sizeof f[0])
                return bh_fail(err, E2BIG, "comment too long");
            if (have[F_COMMENT])
                return bh_fail(err, EINVAL, "duplicate comment");
            strcpy(f[F_COMMENT], val);
            have[F_COMMENT] = true;
            break;
        }
        char *sp = strchr(val, ' ');
        if (sp)
            *sp = '\0';
        p = sp ? sp + 1 : val + strlen(val);
        int slot;
        char norm[300];
        unsigned long n, m;
        if (!strcmp(key, "action")) {
            if (strcmp(val, "accept") != 0 && strcmp(val, "drop") != 0)
                return bh_fail(err, EINVAL, "invalid action '%.20s'", val);
            slot = F_ACTION;
            snprintf(norm, sizeof norm, "%s", val);
        } else if (!strcmp(key, "dst4") || !strcmp(key, "dst6")) {
            if (norm_net(key[3] == '4' ? AF_INET : AF_INET6, val, norm, sizeof norm) < 0)
                return bh_fail(err, EINVAL, "invalid %s '%.60s'", key, val);
            slot = F_DST;
            dstkey = key[3] == '4' ? "dst4" : "dst6";
        } else if (!strcmp(key, "dsthost")) {
            if (!host_ok(val))
                return bh_fail(err, EINVAL, "invalid dsthost");
            slot = F_DST;
            dstkey = "dsthost";
            snprintf(norm, sizeof norm, "%s", val);
        } else if (!strcmp(key, "proto")) {
            if (strcmp(val, "tcp") && strcmp(val, "udp") && strcmp(val, "icmp"))
                return bh_fail(err, EINVAL, "invalid proto '%.10s'", val);
            slot = F_PROTO;
            snprintf(proto, sizeof proto, "%s", val);
            snprintf(norm, sizeof norm, "%s", val);
        } else if (!strcmp(key, "dstports")) {
            char *dash = strchr(val, '-');
            if (dash)
                *dash = '\0';
            if (parse_uint(val, 65535, &n) < 0 || n == 0 || (dash && (parse_uint(dash + 1, 65535, &m) < 0 || m < n)))
                return bh_fail(err, EINVAL, "invalid dstports");
            if (!dash)
                m = n;
            slot = F_PORTS;
            snprintf(norm, sizeof norm, "%lu-%lu", n, m);
        } else if (!strcmp(key, "icmptype")) {
            if (parse_uint(val, 255, &n) < 0)
                return bh_fail(err, EINVAL, "invalid icmptype");
            slot = F_ICMP;
            snprintf(norm, sizeof norm, "%lu", n);
        } else if (!strcmp(key, "specialtarget")) {
            if (strcmp(val, "dns") != 0)
                return bh_fail(err, EINVAL, "invalid specialtarget");
            slot = F_SPECIAL;
            snprintf(norm, sizeof norm, "dns");
        } else if (!strcmp(key, "expire")) {
            bool rel = val[0] == '+';
            if (parse_uint(val + rel, 4000000000UL, &n) < 0)
                return bh_fail(err, EINVAL, "invalid expire");
            slot = F_EXPIRE;
            snprintf(norm, sizeof norm, "%llu", (unsigned long long)(rel ? (unsigned long long)now + n : n));
        } else {
            return bh_fail(err, EINVAL, "unknown rule option '%.20s'", key);
        }
        if (have[slot])
            return bh_fail(err, EINVAL, "duplicate option '%s'", key);
        have[slot] = true;
        strcpy(f[slot], norm);
    }
    if (!have[F_ACTION])
        return bh_fail(err, EINVAL, "rule has no action");
    if (have[F_PORTS] && strcmp(proto, "tcp") && strcmp(proto, "udp"))
        return bh_fail(err, EINVAL, "dstports needs proto=tcp or proto=udp");
    if (have[F_ICMP] && strcmp(proto, "icmp"))
        return bh_fail(err, EINVAL, "icmptype needs proto=icmp");
    int w = snprintf(out, cap, "action=%s", f[F_ACTION]);
    static const char *const keys[F_N] = { "action", NULL, "proto", "dstports", "icmptype", "specialtarget", "expire", "comment" };
    for (int i = F_DST; i < F_N && w >= 0 && (size_t)w < cap; i++)
        if (have[i])
            w += snprintf(out + w, cap - (size_t)w, " %s=%s", i == F_DST ? dstkey : keys[i], f[i]);
    if (w < 0 || (size_t)w >= cap)
        return bh_fail(err, E2BIG, "rule too long");
    return 0;
}

char *bh_fw_rules_normalize(const char *text, size_t len, time_t now, bh_error *err)
{
    if (memchr(text, '\0', len)) {
        bh_fail(err, EINVAL, "NUL byte in rules");
        return NULL;
    }
    bh_buf out;
    bh_buf_init(&out, 0);
    size_t pos = 0, count = 0, lineno = 0;
    if (len && text[len - 1] == '\n')
        len--;
    while (pos <= len && len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t l = nl ? (size_t)(nl - (text + pos)) : len - pos;
        lineno++;
        if (++count > BH_FW_MAX_RULES) {
            bh_fail(err, E2BIG, "too many rules (at most %d)", BH_FW_MAX_RULES);
            goto fail;
        }
        char norm[BH_FW_MAX_LINE + 64];
        if (bh_fw_rule_normalize(text + pos, l, now, norm, sizeof norm, err) < 0) {
            bh_prefix(err, "rule %zu", lineno);
            goto fail;
        }
        if (bh_buf_adds(&out, norm) < 0 || bh_buf_addc(&out, '\n') < 0) {
            bh_fail_errno(err, "out of memory");
            goto fail;
        }
        pos += l + 1;
        if (!nl)
            break;
    }
    if (!out.data && bh_buf_reserve(&out, 0) < 0) {
        bh_fail_errno(err, "out of memory");
        goto fail;
    }
    return bh_buf_steal(&out);
fail:
    bh_buf_free(&out);
    return NULL;
}
