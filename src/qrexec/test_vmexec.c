/* Unit tests for qubes.VMExec's argument encoding: Qubes' examples, round trips, hostile input. */
#include "../../tests/unit/tap.h"
#include "vmexec.h"
#include <stdlib.h>
#include <string.h>

static int dec(const char *s, char ***v)
{
    bh_error e;
    size_t n;
    return bh_vmexec_decode(s, v, &n, &e);
}

int main(void)
{
    char out[256];
    char *const a1[] = { "ls", "-la", "/tmp/a b", "x+y", "" };
    CHECK(bh_vmexec_encode(a1, 5, out, sizeof out) > 0);
    CHECK(!strcmp(out, "ls+--la+-2Ftmp-2Fa-20b+x-2By+"));
    char *const a2[] = { "printf", "\xc3\xbc\n" };
    CHECK(bh_vmexec_encode(a2, 2, out, sizeof out) > 0 && !strcmp(out, "printf+-C3-BC-0A"));
    CHECK(bh_vmexec_encode(a1, 5, out, 10) < 0); /* does not fit */

    char **v;
    CHECK(dec("ls+--la+-2Ftmp-2Fa-20b+x-2By+", &v) == 0);
    CHECK(v && !strcmp(v[0], "ls") && !strcmp(v[1], "-la") && !strcmp(v[2], "/tmp/a b") && !strcmp(v[3], "x+y") &&
          !strcmp(v[4], "") && v[5] == NULL);
    free(v);
    CHECK(dec("echo", &v) == 0 && !strcmp(v[0], "echo") && !v[1]);
    free(v);
    CHECK(dec("a---2D", &v) == 0 && !strcmp(v[0], "a--")); /* "--" then "-2D" */
    free(v);

    /* hostile or malformed */
    const char *bad[] = { "", "+x", "ls+-", "ls+-2", "ls+-2f", "ls+-G0", "ls+-00", "ls+a-00b", "ls a", "ls;id",
                          "ls+\x1b", "ls+\xc3\xbc", "ls+$(id)", "-", "a-" };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = (char **)1;
        CHECK(dec(bad[i], &v) < 0 && v == NULL);
    }
    /* limits */
    char *big = malloc(BH_VMEXEC_MAX_LEN + 2);
    memset(big, 'a', BH_VMEXEC_MAX_LEN + 1);
    big[BH_VMEXEC_MAX_LEN + 1] = '\0';
    CHECK(dec(big, &v) < 0);
    big[BH_VMEXEC_MAX_LEN] = '\0';
    CHECK(dec(big, &v) == 0);
    free(v);
    for (int i = 1; i < 2 * (BH_VMEXEC_MAX_ARGS + 1); i += 2)
        big[i] = '+';
    big[2 * (BH_VMEXEC_MAX_ARGS + 1)] = '\0';
    CHECK(dec(big, &v) < 0); /* 4097 arguments */
    big[2 * BH_VMEXEC_MAX_ARGS - 1] = '\0';
    CHECK(dec(big, &v) == 0);
    free(v);
    free(big);
    return tap_done();
}
