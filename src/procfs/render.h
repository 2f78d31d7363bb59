/* What bulkhead-procfs serves in place of /proc/uptime, /proc/stat, /proc/softirqs and
 * /proc/interrupts of one qube: pure functions from the host's text (read by the
 * server) and the qube's own figures to the qube's text. No host figure that counts
 * from the host's boot passes through:
 *  - uptime: the qube's age (its boot clock, as its time namespace shows it) and the
 *    idle time of its CPUs (age per CPU minus the qube's own CPU use);
 *  - stat: cpu lines from the qube's cgroup CPU accounting (user, system; idle = age
 *    minus both; the other columns 0), btime the qube's boot, and the counters (intr,
 *    ctxt, processes, softirq) host-wide since the qube's start (the current text
 *    minus the text the server read when the qube started); procs_running/blocked as is;
 *  - softirqs, interrupts: every per-CPU count since the qube's start, likewise.
 * Inputs are the kernel's text; every output is bounded by the caller's buffer limit. */
#pragma once
#include "buf.h"
#include <stdint.h>

#define BH_PF_MAX_CPUS 4096

/* One CPU's use by the qube, in nanoseconds. */
struct bh_pf_cpu {
    uint64_t user_ns, system_ns;
};

/* The qube's CPU use per CPU from cgroup v1's cpuacct.usage_all ("cpu user system"
 * header, then "N USER SYS" lines), or from v2's cpu.stat (user_usec/system_usec, spread
 * evenly over ncpu CPUs). Fills cpus[0..ncpu) (zero where the text says nothing);
 * returns 0, or -1 if the text is not in the expected form. */
int bh_pf_parse_usage_all(const char *text, struct bh_pf_cpu *cpus, unsigned ncpu);
int bh_pf_parse_cpu_stat(const char *text, struct bh_pf_cpu *cpus, unsigned ncpu);

/* The CPUs /proc/stat lists ("cpuN" lines): their numbers in out[], how many (at most
 * max). */
unsigned bh_pf_stat_cpus(const char *host_stat, unsigned *out, unsigned max);

struct bh_pf_view {
    uint64_t age_ns;          /* the qube's uptime */
    uint64_t btime;           /* the qube's boot, seconds since the epoch */
    unsigned hz;              /* USER_HZ */
    const struct bh_pf_cpu *cpus; /* indexed by CPU number */
    unsigned ncpu;            /* entries in cpus */
};

/* /proc/stat: the qube's CPU lines and btime; the host-wide counters (intr, ctxt,
 * processes, softirq) as 0 in the kernel's layout; procs_running 1, procs_blocked 0. */
int bh_pf_render_stat(bh_buf *out, const char *host_stat, const struct bh_pf_view *v);
/* /proc/uptime: "AGE IDLE\n", idle summed over the CPUs host_stat lists. */
int bh_pf_render_uptime(bh_buf *out, const char *host_stat, const struct bh_pf_view *v);
/* /proc/softirqs and /proc/interrupts: the current text with each per-CPU count shown
 * as 0, in the same columns (the host's counts carry other qubes' activity). Only the
 * first N numbers of a line are counts, N = the CPU columns of the header line; the
 * rest (interrupt chip and name) is kept as it is. */
int bh_pf_render_zeroed(bh_buf *out, const char *cur);
/* /proc/vmstat and /proc/schedstat: every number as 0 in the kernel's layout (names,
 * schedstat's version line and its domains' CPU masks kept). vmstat's counters count
 * from the host's boot and its gauges (free pages, dirty pages, ...) are the host's:
 * both carry other qubes' activity and the host's uptime; so do schedstat's timestamp
 * (jiffies since boot) and run/wait times. */
int bh_pf_render_counts_zeroed(bh_buf *out, const char *cur);
/* /proc/pressure/{cpu,io,memory}: "some|full avg10=0.00 avg60=0.00 avg300=0.00 total=0":
 * the stall averages and total (microseconds since the host's boot) are host-wide. */
int bh_pf_render_pressure(bh_buf *out, const char *cur);
