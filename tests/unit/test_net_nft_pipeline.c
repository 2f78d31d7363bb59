/* bh_nft_submit / bh_nft_collect (src/net/nft_helper.c): transactions handed to the
 * helper take effect in the order they were handed over and each result reaches its
 * own ticket, also when collected out of order; a forgotten ticket is no longer known;
 * a helper killed while it holds a queue has every unanswered transaction reported
 * failed (EIO), none made a second time, and later runs go on in this process. Needs
 * root and a network namespace of its own (the scripts touch nothing else): skips
 * (77) without. */
#include "tap.h"
#include "nft.h"
#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The helper: our child named bulkheadd-nft. */
static pid_t helper_pid(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%d/children", (int)getpid());
    FILE *f = fopen(path, "re");
    if (!f)
        return -1;
    int pid;
    pid_t found = -1;
    while (found < 0 && fscanf(f, "%d", &pid) == 1) {
        char comm_path[64], comm[32] = "";
        snprintf(comm_path, sizeof comm_path, "/proc/%d/comm", pid);
        FILE *c = fopen(comm_path, "re");
        if (c && fgets(comm, sizeof comm, c) && !strncmp(comm, "bulkheadd-nft", 13))
            found = pid;
        if (c)
            fclose(c);
    }
    fclose(f);
    return found;
}

static int run(const char *script) { return bh_nft_run(-1, script, NULL); }

int main(void)
{
    if (geteuid() != 0 || unshare(CLONE_NEWNET) < 0) {
        printf("skipped: needs root and a network namespace of its own\n");
        return 77;
    }
    bh_error err = { 0 };
    CHECK(bh_nft_helper_start(&err) == 0);
    pid_t helper = -1;
    for (int i = 0; i < 400 && (helper = helper_pid()) < 0; i++) /* until it has named itself */
        usleep(5000);
    CHECK(helper > 0);

    /* three in flight, the first one bad, collected last first: each gets its own
     * result (an answer given to the wrong ticket shows as a failure moved) */
    int t1 = bh_nft_submit(-1, "add table inet p1 { chain c { type filter hook nonsense priority 0; } }\n", &err);
    int t2 = bh_nft_submit(-1, "add table inet p2\n", &err);
    int t3 = bh_nft_submit(-1, "add table inet p3\n", &err);
    CHECK(t1 > 0 && t2 > 0 && t3 > 0 && t1 != t2 && t2 != t3);
    bh_error e3 = { 0 }, e2 = { 0 }, e1 = { 0 };
    CHECK(bh_nft_collect(t3, &e3) == 0);
    CHECK(bh_nft_collect(t1, &e1) < 0 && e1.msg[0]);
    CHECK(bh_nft_collect(t2, &e2) == 0);
    CHECK(bh_nft_collect(t2, NULL) < 0); /* collected: gone */
    CHECK(run("delete table inet p2\n") == 0 && run("delete table inet p3\n") == 0);
    CHECK(run("delete table inet p1\n") < 0); /* the failed one took no effect */

    /* order: a delete handed over after its add finds the table */
    int add = bh_nft_submit(-1, "add table inet o\n", &err);
    int del = bh_nft_submit(-1, "delete table inet o\n", &err);
    CHECK(bh_nft_collect(del, NULL) == 0);
    CHECK(bh_nft_collect(add, NULL) == 0);

    /* forgotten: no longer known, yet made */
    int f = bh_nft_submit(-1, "add table inet f\n", &err);
    bh_nft_forget(f);
    CHECK(bh_nft_collect(f, NULL) < 0);
    CHECK(run("delete table inet f\n") == 0);
    CHECK(bh_nft_collect(12345678, NULL) < 0);

    /* the helper dies holding two whole requests it never read: both are reported
     * failed with EIO and not made again here; the next run is made in this process */
    if (helper > 0) {
        CHECK(kill(helper, SIGSTOP) == 0);
        int k1 = bh_nft_submit(-1, "add table inet k1\n", &err);
        int k2 = bh_nft_submit(-1, "add table inet k2\n", &err);
        CHECK(k1 > 0 && k2 > 0);
        CHECK(kill(helper, SIGKILL) == 0); /* our own child */
        bh_error ek2 = { 0 }, ek1 = { 0 };
        CHECK(bh_nft_collect(k2, &ek2) < 0 && ek2.errnum == EIO);
        CHECK(bh_nft_collect(k1, &ek1) < 0 && ek1.errnum == EIO);
        CHECK(helper_pid() < 0); /* killed and reaped */
        CHECK(run("delete table inet k1\n") < 0 && run("delete table inet k2\n") < 0);
        int h = bh_nft_submit(-1, "add table inet here\n", &err);
        CHECK(h > 0 && bh_nft_collect(h, NULL) == 0);
        CHECK(run("delete table inet here\n") == 0);
    }
    bh_nft_helper_stop();
    return tap_done();
}
