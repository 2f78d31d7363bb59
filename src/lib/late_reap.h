/* Children of this process that were told to end but had not ended within the caller's
 * bound (a process stuck in the kernel, a large QEMU still freeing its guest's RAM): held
 * by pidfd and reaped by the daemon's tick once they have, so that no caller waits for
 * one without bound and none stays a zombie. By pidfd, not PID: whoever else reaps the
 * process first, the entry can never reap a later process that got its PID. */
#pragma once
#include <signal.h>

/* waitid(P_PIDFD, WEXITED | WNOHANG), EINTR retried: 1 reaped (its status in *si, may be
 * NULL), 0 not ended yet, -1 an error (errno: ECHILD when it is not our child). */
int bh_pidfd_try_reap(int pidfd, siginfo_t *si);
/* Reaps the process behind pidfd now if it has ended, else keeps pidfd (taking it) for
 * bh_late_reap_tick. Not a child of ours (adopted, reaped by its own parent): just closed.
 * 1 reaped or closed now, 0 kept, -1 the list is full or the kernel cannot wait by
 * pidfd (pidfd closed: the caller waits as it did before, or the process stays a zombie
 * until this process ends). A forked child starts with an empty list of its own. */
int bh_late_reap(int pidfd);
/* Reaps what has ended since; called every tick. */
void bh_late_reap_tick(void);
/* How many are held (for tests). */
int bh_late_reap_pending(void);
