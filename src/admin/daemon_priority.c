/* One event loop answers dom0's tools and every qube's calls (policy checks, disposables'
 * starts). When qubes keep every CPU busy (their `vcpus` share is theirs to use), that
 * loop must not queue behind them, or one busy qube slows every other qube's calls and
 * `qvm-ls` (bench/flood_isolation.sh). So bulkheadd runs at a higher CPU weight than
 * qubes: nice -5 by default, ~3x a nice-0 task's weight in the scheduler. Where that
 * weight counts: against the qubes' common cgroup where both are children of the same
 * cgroup and autogroup is off; with autogroup (kernel.sched_autogroup_enabled=1, as on
 * Debian and the test machines), tasks of the root cgroup are weighed per session, so
 * it ranks the daemon inside the session that started it, above the helpers it forks
 * for the qubes (engine stages, mkfs, network set-up, sweeps), which is where the
 * flood bench found its loop waiting; under a service manager, the daemon's cgroup
 * weighs. Taking a session of its own with the raised autogroup weight was measured
 * too and not kept: its helpers then share that weight, and a quiet qube's calls (which
 * do not pass through the daemon) got slower under the flood. Its work for any one qube is bounded per caller (call
 * rates, disposable rates; docs/ns-engine.md), so the weight buys responsiveness, not a
 * way for a qube to take more CPU.
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

#define DEFAULT_NICE (-5)

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
