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
static pid_t owner;        /* the process whose table it is (a fork's copy is not its own) */

int bh_pidfd_try_reap(int pidfd, siginfo_t *si)
{
    siginfo_t own = { 0 };
    siginfo_t *s = si ? si : &own;
    *s = (siginfo_t){ 0 };
    int r;
    while ((r = waitid(P_PIDFD, (id_t)pidfd, s, WEXITED | WNOHANG)) < 0 && errno == EINTR)
        ;
    if (r < 0)
        return -1;
    return s->si_pid != 0;
}

/* 1 reaped (or not ours: nothing to reap), 0 not ended yet, -1 cannot tell (a kernel
 * without P_PIDFD). */
static int try_reap(int pidfd)
{
    int r = bh_pidfd_try_reap(pidfd, NULL);
    return r < 0 && errno == ECHILD ? 1 : r;
}

/* A forked child's copy of the table names its parent's fds (closed, or copies that the
 * child does not own): forgotten, never closed or waited for. */
static void own_table(void)
{
    if (owner != getpid()) {
        for (int i = 0; i < MAX_LATE; i++)
            held[i] = 0;
        owner = getpid();
    }
}

int bh_late_reap(int pidfd)
{
    if (pidfd < 0)
        return 1;
    own_table();
    int r = try_reap(pidfd);
    if (r != 0) {
        close(pidfd);
        return r;
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
    own_table();
    for (int i = 0; i < MAX_LATE; i++)
        if (held[i] && try_reap(held[i] - 1) != 0) {
            close(held[i] - 1);
            held[i] = 0;
        }
}

int bh_late_reap_pending(void)
{
    own_table();
    int n = 0;
    for (int i = 0; i < MAX_LATE; i++)
        n += held[i] != 0;
    return n;
}
