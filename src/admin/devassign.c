/* Qubes' device serialisation, parsed as qubes/device_protocol.py parses it. */
#include "devassign.h"
#include <stdio.h>
#include <string.h>

/* DeviceSerializer.ALLOWED_CHARS_KEY: letters, digits and this punctuation. Values
 * (ALLOWED_CHARS_PARAM) also take the rest of the punctuation and space: every
 * printable ASCII character. */
static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c && strchr("!#$%&()*+,-./:;<>?@[\\]^_{|}~", c));
}
static bool val_char(char c) { return c >= 0x20 && c <= 0x7e; }

/* Python's str.isspace() for ASCII: what str.strip() removes. */
static bool py_space(char c) { return c == ' ' || (c >= '\t' && c <= '\r') || (c >= 0x1c && c <= 0x1f); }

static void strip(const char **s, size_t *n)
{
    while (*n && py_space(**s))
        (*s)++, (*n)--;
    while (*n && py_space((*s)[*n - 1]))
        (*n)--;
}

/* Python's repr() of a one-character string. */
static int char_repr(char *out, size_t n, char c)
{
    switch (c) {
    case '\'': return snprintf(out, n, "\"'\"");
    case '\\': return snprintf(out, n, "'\\\\'");
    case '\n': return snprintf(out, n, "'\\n'");
    case '\t': return snprintf(out, n, "'\\t'");
    case '\r': return snprintf(out, n, "'\\r'");
    default:
        if ((unsigned char)c < 0x20 || c == 0x7f)
            return snprintf(out, n, "'\\x%02x'", (unsigned char)c);
        return snprintf(out, n, "'%c'", c);
    }
}

/* sanitize_str: "PREFIX{'a', 'b'}" naming the characters that are not allowed (each
 * once, in order of appearance; Python's set prints them in hash order). */
static int bad_chars(const char *s, size_t n, bool (*ok)(char), const char *prefix, char *msg, size_t msglen)
{
    bool seen[256] = { false }, any = false;
    size_t len = (size_t)snprintf(msg, msglen, "%s{", prefix);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (ok(s[i]) || seen[c])
            continue;
        seen[c] = true;
        char r[16];
        char_repr(r, sizeof r, s[i]);
        if (len < msglen)
            len += (size_t)snprintf(msg + len, msglen - len, "%s%s", any ? ", " : "", r);
        any = true;
    }
    if (!any)
        return 0;
    if (len < msglen)
        snprintf(msg + len, msglen - len, "}");
    return -1;
}

static const char *find2(const char *s, size_t n, const char *pat)
{
    for (size_t i = 0; i + 1 < n; i++)
        if (s[i] == pat[0] && s[i + 1] == pat[1])
            return s + i;
    return NULL;
}

static const char *rfind2(const char *s, size_t n, const char *pat)
{
    for (size_t i = n; i >= 2; i--)
        if (s[i - 2] == pat[0] && s[i - 1] == pat[1])
            return s + i - 2;
    return NULL;
}

static int add(struct bh_dev_props *p, const char *k, size_t kn, const char *v, size_t vn, char *msg, size_t msglen)
{
    if (bad_chars(k, kn, key_char, "Invalid chars in property name: ", msg, msglen) < 0)
        return -1;
    /* deserialize_str: \' -> ' */
    char val[BH_DEVA_VAL];
    size_t o = 0;
    for (size_t i = 0; i < vn; i++) {
        if (v[i] == '\\' && i + 1 < vn && v[i + 1] == '\'')
            i++;
        if (o + 1 >= sizeof val) {
            snprintf(msg, msglen, "Property value too long (at most %d characters)", BH_DEVA_VAL - 1);
            return -1;
        }
        val[o++] = v[i];
    }
    val[o] = '\0';
    if (bad_chars(val, o, val_char, "Invalid chars in property value: ", msg, msglen) < 0)
        return -1;
    if (kn >= BH_DEVA_KEY) {
        snprintf(msg, msglen, "Property name too long (at most %d characters)", BH_DEVA_KEY - 1);
        return -1;
    }
    for (size_t i = 0; i < p->n; i++)
        if (strlen(p->kv[i].key) == kn && !memcmp(p->kv[i].key, k, kn)) {
            memcpy(p->kv[i].val, val, o + 1);
            return 0;
        }
    if (p->n == BH_DEVA_MAX_PROPS) {
        snprintf(msg, msglen, "Too many properties (at most %d)", BH_DEVA_MAX_PROPS);
        return -1;
    }
    memcpy(p->kv[p->n].key, k, kn);
    p->kv[p->n].key[kn] = '\0';
    memcpy(p->kv[p->n].val, val, o + 1);
    p->n++;
    return 0;
}

int bh_dev_props_unpack(const char *data, size_t len, struct bh_dev_props *out, char *msg, size_t msglen)
{
    out->n = 0;
    if (len > BH_DEVA_MAX_PAYLOAD) {
        snprintf(msg, msglen, "Device serialization too long (at most %d bytes)", BH_DEVA_MAX_PAYLOAD);
        return -1;
    }
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] > 0x7f) {
            snprintf(msg, msglen, "'ascii' codec can't decode byte 0x%02x in position %zu: ordinal not in range(128)",
                     (unsigned char)data[i], i);
            return -1;
        }
    const char *s = data;
    size_t n = len;
    strip(&s, &n);
    if (!n)
        return 0;
    /* key, then each "='" chunk holds VALUE' NEXTKEY, split at its last "' ". */
    const char *eq = find2(s, n, "='");
    const char *key = s;
    size_t kn = eq ? (size_t)(eq - s) : n;
    const char *rest = eq ? eq + 2 : s + n;
    size_t rn = (size_t)(s + n - rest);
    strip(&key, &kn);
    const char *nk;
    while ((eq = find2(rest, rn, "='"))) {
        size_t cn = (size_t)(eq - rest);
        const char *q = rfind2(rest, cn, "' ");
        const char *val = rest;
        size_t vn = q ? (size_t)(q - rest) : 0;
        nk = q ? q + 2 : rest;
        size_t nkn = (size_t)(eq - nk);
        if (add(out, key, kn, val, vn, msg, msglen) < 0)
            return -1;
        key = nk, kn = nkn;
        strip(&key, &kn);
        rest = eq + 2;
        rn = (size_t)(s + n - rest);
    }
    /* The last value: the rest without its last character (the closing quote). */
    return add(out, key, kn, rest, rn ? rn - 1 : 0, msg, msglen);
}

const char *bh_dev_props_get(const struct bh_dev_props *p, const char *key)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->kv[i].key, key))
            return p->kv[i].val;
    return NULL;
}

static const char *const modes[] = { "manual", "ask-to-attach", "auto-attach", "required" };

int bh_dev_assignment_parse(const char *data, size_t len, const char *backend, const char *port,
                            const char *devclass, const char *expected_devid, struct bh_dev_assignment *out,
                            char *msg, size_t msglen)
{
    struct bh_dev_props all;
    memset(out, 0, sizeof *out);
    if (bh_dev_props_unpack(data, len, &all, msg, msglen) < 0)
        return -1;
    const char *v;
    if ((v = bh_dev_props_get(&all, "backend_domain")) && strcmp(v, backend)) {
        snprintf(msg, msglen, "Got device exposed by %swhen expected devices from %s.", v, backend);
        return -1;
    }
    if ((v = bh_dev_props_get(&all, "port_id")) && strcmp(v, port)) {
        snprintf(msg, msglen, "Got device from port: %s when expected port: %s.", v, port);
        return -1;
    }
    if ((v = bh_dev_props_get(&all, "devclass")) && strcmp(v, devclass)) {
        snprintf(msg, msglen, "Got %s device when expected %s.", v, devclass);
        return -1;
    }
    v = bh_dev_props_get(&all, "device_id");
    if (strcmp(expected_devid, "*") && v && strcmp(v, expected_devid)) {
        snprintf(msg, msglen, "Unrecognized device identity '%s' expected '%s'", v, expected_devid);
        return -1;
    }
    snprintf(out->device_id, sizeof out->device_id, "%s", v ? v : expected_devid);
    snprintf(out->mode, sizeof out->mode, "manual");
    static const char *const known[] = { "backend_domain", "port_id", "devclass", "device_id", "port", "device",
                                         "options" };
    for (size_t i = 0; i < all.n; i++) {
        const struct bh_dev_kv *kv = &all.kv[i];
        if (kv->key[0] == '_') {
            struct bh_dev_props *o = &out->options;
            /* "_x" given twice was one dict entry already; "_" alone is the key "". */
            memcpy(o->kv[o->n].key, kv->key + 1, strlen(kv->key));
            memcpy(o->kv[o->n].val, kv->val, sizeof kv->val);
            o->n++;
            continue;
        }
        bool skip = false;
        for (size_t k = 0; k < sizeof known / sizeof known[0]; k++)
            skip |= !strcmp(kv->key, known[k]);
        if (skip)
            continue;
        if (!strcmp(kv->key, "frontend_domain")) {
            snprintf(out->frontend, sizeof out->frontend, "%s", kv->val);
        } else if (!strcmp(kv->key, "mode")) {
            bool ok = false;
            for (size_t k = 0; k < sizeof modes / sizeof modes[0]; k++)
                ok |= !strcmp(kv->val, modes[k]);
            if (!ok) {
                snprintf(msg, msglen, "'%s' is not a valid AssignmentMode", kv->val);
                return -1;
            }
            snprintf(out->mode, sizeof out->mode, "%s", kv->val);
        } else {
            snprintf(msg, msglen, "DeviceAssignment.__init__() got an unexpected keyword argument '%s'", kv->key);
            return -1;
        }
    }
    return 0;
}

bool bh_dev_pack(char *buf, size_t n, const char *key, const char *value)
{
    size_t len = strlen(buf);
    int w = snprintf(buf + len, n - len, "%s%s='", len ? " " : "", key);
    if (w < 0 || (size_t)w >= n - len)
        return false;
    len += (size_t)w;
    for (const char *p = value; *p; p++) {
        if (*p == '\'' && len + 1 < n)
            buf[len++] = '\\';
        if (len + 1 >= n)
            return false;
        buf[len++] = *p;
    }
    if (len + 2 > n)
        return false;
    buf[len++] = '\'';
    buf[len] = '\0';
    return true;
}
