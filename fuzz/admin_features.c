/* libFuzzer harness: the KEY=VALUE payload of qubes.FeaturesRequest / qubes.NotifyTools
 * (src/admin/features_parse.c), bytes a qube sends. Invariants: a refusal says why;
 * what parses is bounded, keys are in [A-Za-z0-9._-] and unique, values in the safe
 * set; printing the entries as lines and parsing them again gives the same entries. */
#include "features_parse.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check(const uint8_t *data, size_t size, const char *safe)
{
    static struct bh_fr f, again;
    static char text[BH_FR_MAX * (BH_FR_KEY + BH_FR_VAL + 2) + 1];
    char msg[256] = "";
    if (bh_fr_parse((const char *)data, size, safe, &f, msg, sizeof msg) < 0) {
        if (!msg[0])
            __builtin_trap();
        return;
    }
    if (f.n > BH_FR_MAX)
        __builtin_trap();
    size_t len = 0;
    for (size_t i = 0; i < f.n; i++) {
        size_t kl = strlen(f.e[i].key), vl = strlen(f.e[i].val);
        if (!kl || kl > BH_FR_KEY || vl > BH_FR_VAL || strspn(f.e[i].val, safe) != vl ||
            strspn(f.e[i].key, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") != kl)
            __builtin_trap();
        for (size_t j = 0; j < i; j++)
            if (!strcmp(f.e[i].key, f.e[j].key))
                __builtin_trap();
        len += (size_t)sprintf(text + len, "%s=%s\n", f.e[i].key, f.e[i].val);
    }
    if (bh_fr_parse(text, len, safe, &again, msg, sizeof msg) < 0 || again.n != f.n)
        __builtin_trap();
    for (size_t i = 0; i < f.n; i++)
        if (strcmp(f.e[i].key, again.e[i].key) || strcmp(f.e[i].val, again.e[i].val))
            __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    check(data, size, BH_FR_SAFE_REQUEST);
    check(data, size, BH_FR_SAFE_TOOLS);
    return 0;
}
