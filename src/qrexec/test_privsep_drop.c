/* The saved-ID switch of qrexec-daemon's privilege separation fails closed. A call
 * process drops to its qube's call identity keeping the qube's unprivileged ID saved;
 * the relay or dom0 pump it forks then becomes that ID for good
 * (bh_qx_drop_privileges, without root). A relay whose saved IDs are anything else
 * (here: a parent that kept none) must get an error, which its caller turns into an
 * exit, never run on as the call identity. It used to go on silently. Needs root (to
 * drop at all); skipped (77) otherwise. */
#include "privsep.h"
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define QID 65000u /* no qube of a test run has it; these processes live for microseconds */

static int fails;

static void check(int ok, const char *what)
{
    printf("%s - %s\n", ok ? "ok" : "not ok", what);
    if (!ok)
        fails++;
}

/* Forks: the child drops as a call process (saving `saved`), forks the relay, which
 * drops to the unprivileged ID. Returns the relay's report: 0 dropped and every ID is
 * the unprivileged one; 1 refused (and still the call identity: it must exit); 2
 * dropped but some ID is not the unprivileged one; 3 refused but not as expected;
 * 9 the call process's own drop failed. */
static int relay_after(uid_t saved)
{
    pid_t p = fork();
    if (p == 0) {
        bh_error e = { 0 };
        if (bh_qx_drop_to_keeping(bh_qx_call_uid(QID), BH_QX_CALL_GID, saved, &e) < 0) {
            fprintf(stderr, "call process: %s\n", e.msg);
            _exit(9);
        }
        pid_t r = fork();
        if (r == 0) {
            uid_t want = bh_qx_unpriv_id(QID), ru, eu, su;
            gid_t rg, eg, sg;
            int dropped = bh_qx_drop_privileges(want, &e) == 0;
            if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
                _exit(8);
            if (!dropped) {
                fprintf(stderr, "relay refused: %s\n", e.msg);
                _exit(ru == bh_qx_call_uid(QID) ? 1 : 3);
            }
            _exit(ru == want && eu == want && su == want && rg == want && eg == want && sg == want ? 0 : 2);
        }
        int st = 0;
        if (r < 0 || waitpid(r, &st, 0) != r || !WIFEXITED(st))
            _exit(7);
        _exit(WEXITSTATUS(st));
    }
    int st = 0;
    if (p < 0 || waitpid(p, &st, 0) != p || !WIFEXITED(st))
        return 7;
    return WEXITSTATUS(st);
}

int main(void)
{
    if (geteuid() != 0) {
        printf("skip: needs root\n");
        return 77;
    }
    /* positive control: the call process kept the unprivileged ID saved */
    int r = relay_after(bh_qx_unpriv_id(QID));
    check(r == 0, "a relay becomes the saved unprivileged ID in every slot");
    /* the call process kept its own ID saved: the relay cannot shed it, and says so */
    r = relay_after(bh_qx_call_uid(QID));
    check(r == 1, "a relay whose saved IDs are not the unprivileged ID is refused");
    return fails ? 1 : 0;
}
