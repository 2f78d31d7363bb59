/* The host bridge's supervisor (bridge_supervise.c). */
#pragma once
#include <stdbool.h>
#include <sys/types.h>

/* Forks the worker and returns in it; in the supervisor never returns: it passes
 * SIGUSR1 on, and when the worker ends while QEMU (qemu) still runs, kills QEMU. */
void bh_bridge_supervise(pid_t qemu);
