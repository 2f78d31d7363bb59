/* libFuzzer harness: admin.pool.Add's payload (src/admin/pool_config.c), bytes from an
 * Admin API client that policy may let manage pools. Invariants: a refusal names a
 * Qubes exception class and says why; what parses is bounded, has a name in Qubes' safe
 * set, unique keys without '=', line ends or NULs, and printing it back as
 * name=...\nKEY=VALUE\n... parses to the same options. */
#include "pool_config.h"
#include <stdint.h>
#include <stdio.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bh_poolcfg c, again;
    static char text[BH_POOLCFG_MAX_LEN * 2 + 64];
    const char *type = NULL;
    char msg[256] = "";
    if (bh_poolcfg_parse((const char *)data, size, &c, &type, msg, sizeof msg) < 0) {
        if (!msg[0] || !type || (strcmp(type, "ProtocolError") && strcmp(type, "PermissionDenied")))
            __builtin_trap();
        return 0;
    }
    if (size > BH_POOLCFG_MAX_LEN || c.n >= BH_POOLCFG_MAX ||
        strspn(c.name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.") != strlen(c.name))
        __builtin_trap();
    size_t len = (size_t)snprintf(text, sizeof text, "name=%s\n", c.name);
    for (size_t i = 0; i < c.n; i++) {
        size_t kl = strlen(c.o[i].key), vl = strlen(c.o[i].val);
        if (kl > BH_POOLCFG_KEY || vl > BH_POOLCFG_VAL || strchr(c.o[i].key, '=') || !strcmp(c.o[i].key, "name") ||
            strpbrk(c.o[i].key, "\n\r\v\f\x1c\x1d\x1e") || strpbrk(c.o[i].val, "\n\r\v\f\x1c\x1d\x1e"))
            __builtin_trap();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(c.o[i].key, c.o[j].key))
                __builtin_trap();
        len += (size_t)snprintf(text + len, sizeof text - len, "%s=%s\n", c.o[i].key, c.o[i].val);
    }
    if (len <= BH_POOLCFG_MAX_LEN) {
        if (bh_poolcfg_parse(text, len, &again, &type, msg, sizeof msg) < 0 || again.n != c.n ||
            strcmp(again.name, c.name))
            __builtin_trap();
        for (size_t i = 0; i < c.n; i++)
            if (strcmp(bh_poolcfg_get(&again, c.o[i].key) ? bh_poolcfg_get(&again, c.o[i].key) : "\x01", c.o[i].val))
                __builtin_trap();
    }
    return 0;
}
