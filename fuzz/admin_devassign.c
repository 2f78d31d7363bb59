/* libFuzzer harness: Qubes' device assignment serialisation (the payload of
 * admin.vm.device.<class>.{Attach,Assign}), src/admin/devassign.c. Invariants: a
 * refusal says why; what parses holds only Qubes' allowed characters, within the
 * limits; packing the parsed properties again and parsing that gives the same
 * properties (the quoting round-trips). */
#include "devassign.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static bool key_ok(const char *k)
{
    for (; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= 'A' && *k <= 'Z') || (*k >= '0' && *k <= '9') ||
              strchr("!#$%&()*+,-./:;<>?@[\\]^_{|}~", *k)))
            return false;
    return true;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct bh_dev_props p, again;
    static struct bh_dev_assignment a;
    char msg[512] = "";
    if (bh_dev_props_unpack((const char *)data, size, &p, msg, sizeof msg) < 0) {
        if (!msg[0])
            __builtin_trap();
    } else {
        if (p.n > BH_DEVA_MAX_PROPS)
            __builtin_trap();
        static char buf[BH_DEVA_MAX_PROPS * (BH_DEVA_KEY + 2 * BH_DEVA_VAL + 8) + 1];
        buf[0] = '\0';
        for (size_t i = 0; i < p.n; i++) {
            if (!key_ok(p.kv[i].key))
                __builtin_trap();
            for (const char *v = p.kv[i].val; *v; v++)
                if (*v < 0x20 || *v > 0x7e)
                    __builtin_trap();
            /* Values that Qubes' own format cannot carry need not round-trip: an
             * empty key, a value with "' " or "='" (split points), one ending in '='
             * (with the closing quote it makes "='"), or one with a backslash. */
            const char *v = p.kv[i].val;
            size_t vl = strlen(v);
            if (!p.kv[i].key[0] || strstr(v, "' ") || strstr(v, "='") || strchr(v, '\\') ||
                (vl && v[vl - 1] == '='))
                return 0;
            if (!bh_dev_pack(buf, sizeof buf, p.kv[i].key, p.kv[i].val))
                __builtin_trap();
        }
        if (strlen(buf) <= BH_DEVA_MAX_PAYLOAD) {
            if (bh_dev_props_unpack(buf, strlen(buf), &again, msg, sizeof msg) < 0 || again.n != p.n)
                __builtin_trap();
            for (size_t i = 0; i < p.n; i++)
                if (strcmp(again.kv[i].key, p.kv[i].key) || strcmp(again.kv[i].val, p.kv[i].val))
                    __builtin_trap();
        }
    }
    msg[0] = '\0';
    if (bh_dev_assignment_parse((const char *)data, size, "dom0", "loop7", "block", ":7", &a, msg, sizeof msg) < 0 &&
        !msg[0])
        __builtin_trap();
    return 0;
}
