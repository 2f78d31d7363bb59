#include "late_reap.h"
#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

#define MAX_LATE 64
static int held[MAX_LATE]; /* pidfd + 1; 0: free */

/* 1 reaped (or not ours: nothing to reap), 0 not ended yet. */
static int try_reap(int pidfd)
{
    siginfo_t si = { 0 };
    int r;
    while ((r = waitid(P_PIDFD, (id_t)pidfd, &si, WEXITED | WNOHANG)) < 0 && errno == EINTR)
        ;
    return r < 0 || si.si_pid != 0;
}

int bh_late_reap(int pidfd)
{
    if (pidfd < 0)
        return 1;
    if (try_reap(pidfd)) {
        close(pidfd);
        return 1;
    }
    for (int i = 0; i < MAX_LATE; i++)
        if (!held[i]) {
            held[i] = pidfd + 1;
            return 0;
        }
    close(pidfd);
    return -1;
}

void bh_late_reap_tick(void)
{
    for (int i = 0; i < MAX_LATE; i++)
        if (held[i] && try_reap(held[i] - 1)) {
            close(held[i] - 1);
            held[i] = 0;
        }
}

int bh_late_reap_pending(void)
{
    int n = 0;
    for (int i = 0; i < MAX_LATE; i++)
        n += held[i] != 0;
    return n;
}
