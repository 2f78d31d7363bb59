/* The KEY=VALUE payload of qubes.FeaturesRequest / qubes.NotifyTools. */
#include "features_parse.h"
#include <stdio.h>
#include <string.h>

static bool key_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
           c == '-';
}

int bh_fr_parse(const char *data, size_t len, const char *safe, struct bh_fr *out, char *msg, size_t msglen)
{
    out->n = 0;
    size_t pos = 0;
    while (pos < len) {
        const char *line = data + pos;
        const char *nl = memchr(line, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - line) : len - pos;
        pos += ll + (nl ? 1 : 0);
        const char *eq = memchr(line, '=', ll);
        if (!eq) {
            snprintf(msg, msglen, "Request entries must be KEY=VALUE lines");
            return -1;
        }
        size_t kl = (size_t)(eq - line), vl = ll - kl - 1;
        if (!kl || kl > BH_FR_KEY) {
            snprintf(msg, msglen, "Feature name must be 1 to %d characters", BH_FR_KEY);
            return -1;
        }
        for (size_t i = 0; i < kl; i++)
            if (!key_char(line[i])) {
                snprintf(msg, msglen, "Feature name outside safe set: a-zA-Z0-9._-");
                return -1;
            }
        if (vl > BH_FR_VAL) {
            snprintf(msg, msglen, "Value too long (at most %d characters)", BH_FR_VAL);
            return -1;
        }
        for (size_t i = 0; i < vl; i++)
            if (!eq[1 + i] || !strchr(safe, eq[1 + i])) {
                snprintf(msg, msglen, "Value outside safe set: %s", safe);
                return -1;
            }
        struct bh_fr_entry *e = NULL;
        for (size_t i = 0; i < out->n && !e; i++)
            if (strlen(out->e[i].key) == kl && !memcmp(out->e[i].key, line, kl))
                e = &out->e[i];
        if (!e) {
            if (out->n == BH_FR_MAX) {
                snprintf(msg, msglen, "Too many entries (at most %d)", BH_FR_MAX);
                return -1;
            }
            e = &out->e[out->n++];
            memcpy(e->key, line, kl);
            e->key[kl] = '\0';
        }
        memcpy(e->val, eq + 1, vl);
        e->val[vl] = '\0';
    }
    return 0;
}

const char *bh_fr_get(const struct bh_fr *f, const char *key)
{
    for (size_t i = 0; i < f->n; i++)
        if (!strcmp(f->e[i].key, key))
            return f->e[i].val;
    return NULL;
}
