/* One event loop answers dom0's tools and every qube's calls (policy checks, disposables'
 * starts). On a host where qubes keep every CPU busy, an administrator may want that
 * loop not to queue behind them: BULKHEAD_DAEMON_NICE=-5 (say) gives the daemon ~3x a
 * nice-0 task's weight. Off by default: on the 2-core test machine, alternated runs of
 * bench/flood_isolation.sh (2026-12-05 18:30-18:35, quiet otherwise) gave the quiet
 * qube's call 1.83-2.28x at -5 against 1.74-1.88x at 0, and `qvm-ls` 1.80-2.39x against
 * 1.89-2.17x: no gain shown (earlier runs under other load had suggested one). Where the
 * weight counts: against the qubes' common cgroup where both are children of the same
 * cgroup and autogroup is off; with autogroup (kernel.sched_autogroup_enabled=1, as on
 * Debian), tasks of the root cgroup are weighed per session, so it ranks the daemon
 * within the session that started it, above the helpers it forks for the qubes (engine
 * stages, mkfs, network set-up, sweeps); under a service manager, the daemon's cgroup
 * weighs. Its work for any one qube is bounded per caller (call rates, disposable
 * rates; docs/ns-engine.md), so the weight buys responsiveness, not a way for a qube to
 * take more CPU.
 *
 * Nothing the daemon starts keeps that weight: SCHED_RESET_ON_FORK (sched(7)) puts every
 * child back to nice 0 at its creation (the kernel does it in the clone itself, before
 * the child runs a single instruction), whether made by fork or by a clone that shares
 * the daemon's memory: engine stages, qubes' init and everything in the qubes, qrexec
 * daemons and their call processes, helpers. The flag is set first, then the nice value,
 * so no child is ever made between the two with the raised weight. */
#include "daemon_priority.h"
#include "log.h"
#include <errno.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#define DEFAULT_NICE 0

static int wanted_nice(void)
{
    const char *s = getenv("BULKHEAD_DAEMON_NICE");
    if (!s || !*s)
        return DEFAULT_NICE;
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < -20 || v > 0) {
        bh_warn("BULKHEAD_DAEMON_NICE=%.20s: not a nice value from -20 to 0; using %d", s, DEFAULT_NICE);
        return DEFAULT_NICE;
    }
    return (int)v;
}

void bh_daemon_priority_raise(void)
{
    int nice = wanted_nice();
    if (nice == 0)
        return;
    struct sched_param sp = { 0 };
    if (sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &sp) < 0) {
        /* without the reset, children would inherit the weight: keep nice 0 */
        bh_warn("cannot set SCHED_RESET_ON_FORK (%s): staying at nice 0", strerror(errno));
        return;
    }
    if (setpriority(PRIO_PROCESS, 0, nice) < 0)
        bh_warn("cannot raise the daemon's CPU weight to nice %d: %s", nice, strerror(errno));
}
