/* The host bridge's supervisor (bridge_supervise.c). */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

/* Forks the worker and returns in it; in the supervisor never returns: it passes
 * SIGUSR1 on, and when the worker ends while QEMU (qemu) still runs, kills QEMU. */
void bh_bridge_supervise(pid_t qemu);

/* The supervisor's watch (after the fork): w is the worker, wfd its pidfd, sfd the
 * SIGUSR1 signalfd, qfd QEMU's pidfd. Returns the supervisor's exit status: 0 when the
 * qube is going anyway, 1 when it stopped the qube (the worker failed, or its own fds
 * or poll did). */
int bh_bridge_supervise_loop(pid_t w, int wfd, int sfd, int qfd);
