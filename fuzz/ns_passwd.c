/* libFuzzer harness: the passwd(5) parser that reads a qube's /etc/passwd. */
#include "driver/ns/ns.h"
#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uid_t u;
    gid_t g;
    char home[64];
    static const char *users[] = { "user", "root", "a", "" };
    for (size_t i = 0; i < sizeof users / sizeof users[0]; i++)
        if (bh_passwd_find((const char *)data, size, users[i], &u, &g, home, sizeof home) == 0)
            if (home[0] != '/' || strlen(home) >= sizeof home || u > 65535 || g > 65535)
                __builtin_trap();
    return 0;
}
