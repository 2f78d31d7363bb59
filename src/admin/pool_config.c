/* admin.pool.Add's payload parser (pool_config.h). */
#include "pool_config.h"
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define POOL_NAME_CHARS "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_."

static int fail(const char **exc_type, const char *type, char *msg, size_t msglen, const char *text)
{
    *exc_type = type;
    snprintf(msg, msglen, "%s", text);
    return -1;
}

/* str.splitlines() of ASCII text: \n, \r, \r\n, \v, \f, \x1c, \x1d, \x1e end a line. */
static bool line_end(char ch)
{
    return ch == '\n' || ch == '\r' || ch == '\v' || ch == '\f' || ch == 0x1c || ch == 0x1d || ch == 0x1e;
}

int bh_poolcfg_parse(const char *data, size_t len, struct bh_poolcfg *out, const char **exc_type, char *msg,
                     size_t msglen)
{
    out->n = 0;
    out->name[0] = '\0';
    if (len > BH_POOLCFG_MAX_LEN)
        return fail(exc_type, "ProtocolError", msg, msglen, "Pool parameters too long");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)data[i] > 0x7f)
            return fail(exc_type, "ProtocolError", msg, msglen, "Pool parameters contains non-ASCII characters");
    /* every line first: Qubes checks all for '=' before looking at any key */
    struct { size_t off, len; } lines[BH_POOLCFG_MAX + 1];
    size_t nlines = 0;
    for (size_t i = 0; i < len;) {
        size_t s = i;
        while (i < len && !line_end(data[i]))
            i++;
        if (nlines == BH_POOLCFG_MAX)
            return fail(exc_type, "ProtocolError", msg, msglen, "Too many pool parameters");
        lines[nlines].off = s, lines[nlines].len = i - s;
        nlines++;
        if (i < len && data[i] == '\r' && i + 1 < len && data[i + 1] == '\n')
            i++;
        if (i < len)
            i++;
    }
    for (size_t l = 0; l < nlines; l++)
        if (!memchr(data + lines[l].off, '=', lines[l].len))
            return fail(exc_type, "ProtocolError", msg, msglen, "Options must be separated by equal sign");
    for (size_t l = 0; l < nlines; l++) {
        const char *s = data + lines[l].off, *eq = memchr(s, '=', lines[l].len);
        size_t kl = (size_t)(eq - s), vl = lines[l].len - kl - 1;
        if (kl > BH_POOLCFG_KEY || vl > BH_POOLCFG_VAL)
            return fail(exc_type, "ProtocolError", msg, msglen, "Pool parameter too long");
        if (memchr(s, '\0', lines[l].len))
            return fail(exc_type, "ProtocolError", msg, msglen, "Pool parameters contain a NUL byte");
        for (size_t k = 0; k < out->n; k++)
            if (strlen(out->o[k].key) == kl && !memcmp(out->o[k].key, s, kl))
                return fail(exc_type, "ProtocolError", msg, msglen, "Options must be unique");
        memcpy(out->o[out->n].key, s, kl);
        out->o[out->n].key[kl] = '\0';
        memcpy(out->o[out->n].val, eq + 1, vl);
        out->o[out->n].val[vl] = '\0';
        out->n++;
    }
    size_t k = 0;
    while (k < out->n && strcmp(out->o[k].key, "name"))
        k++;
    if (k == out->n)
        return fail(exc_type, "ProtocolError", msg, msglen, "Pool configuration must contain key: name");
    snprintf(out->name, sizeof out->name, "%s", out->o[k].val);
    out->o[k] = out->o[--out->n];
    if (strspn(out->name, POOL_NAME_CHARS) != strlen(out->name))
        return fail(exc_type, "ProtocolError", msg, msglen, "Pool name must be in safe set: " POOL_NAME_CHARS);
    return 0;
}

const char *bh_poolcfg_get(const struct bh_poolcfg *c, const char *key)
{
    for (size_t i = 0; i < c->n; i++)
        if (!strcmp(c->o[i].key, key))
            return c->o[i].val;
    return NULL;
}
