/* cgroup v1: one hierarchy per controller (this is what the test machines have). */
#include "ns.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BASE "/sys/fs/cgroup"
static const char *const ctrls[] = { "memory", "pids", "freezer", "cpu", "cpuacct", "devices" };
/* Controllers a qube's host helpers (qrexec-daemon) are charged to: see charge_cpu. */
static const char *const cpu_ctrls[] = { "cpu", "cpuacct" };
static bool required(const char *c) { return !strcmp(c, "memory") || !strcmp(c, "pids") || !strcmp(c, "freezer"); }

static void cg_dir(char *out, size_t n, const char *ctrl, const char *tag, const char *name)
{
    if (name)
        snprintf(out, n, BASE "/%s/%s/%s", ctrl, tag, name);
    else
        snprintf(out, n, BASE "/%s/%s", ctrl, tag);
}

static bool have(const char *ctrl)
{
    char p[256];
    snprintf(p, sizeof p, BASE "/%s/cgroup.procs", ctrl);
    return access(p, F_OK) == 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static int create(const char *tag, const struct bh_qube_spec *spec, bool devices, bh_error *err)
{
    char dir[4096], val[64];
    for (size_t i = 0; i < BH_ARRAY_SIZE(ctrls); i++) {
        if (!have(ctrls[i])) {
            if (required(ctrls[i]))
                return bh_fail(err, ENOENT, "cgroup v1 controller %s is not mounted", ctrls[i]);
            continue;
        }
        /* The shared parent may vanish between our two mkdirs (the daemon's last other
         * qube being destroyed): try again. */
        for (int attempt = 0;; attempt++) {
            cg_dir(dir, sizeof dir, ctrls[i], tag, NULL);
            if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return bh_fail_errno(err, "mkdir %s", dir);
            cg_dir(dir, sizeof dir, ctrls[i], tag, spec->name);
            if (mkdir(dir, 0755) == 0 || errno == EEXIST)
                break;
            if (errno != ENOENT || attempt == 3)
                return bh_fail_errno(err, "mkdir %s", dir);
        }
    }
    if (spec->all_qubes_mib) {
        /* All qubes together stay below the host's memory (the budget bulkheadd admits
         * starts against). EBUSY: the qubes already use more; the admission check is
         * what keeps them under it, so keep going. */
        bh_error ignored;
        cg_dir(dir, sizeof dir, "memory", tag, NULL);
        snprintf(val, sizeof val, "%llu", (unsigned long long)spec->all_qubes_mib << 20);
        (void)bh_cg_write(dir, "memory.limit_in_bytes", val, &ignored);
        (void)bh_cg_write(dir, "memory.kmem.tcp.limit_in_bytes", val, &ignored);
    }
    uint64_t hard = spec->maxmem_mib ? spec->maxmem_mib : spec->memory_mib;
    cg_dir(dir, sizeof dir, "memory", tag, spec->name);
    if (hard) {
        snprintf(val, sizeof val, "%llu", (unsigned long long)hard << 20);
        if (bh_cg_write(dir, "memory.limit_in_bytes", val, err) < 0)
            return -1;
        /* With swap accounting, memory+swap gets the same bound: no escape into swap. */
        char p[4200];
        snprintf(p, sizeof p, "%s/memory.memsw.limit_in_bytes", dir);
        if (access(p, F_OK) == 0 && bh_cg_write(dir, "memory.memsw.limit_in_bytes", val, err) < 0)
            return -1;
        /* v1 charges socket buffers (TCP, UDP) to a cgroup only once it has a TCP limit
         * of its own: without one, a qube's root pinned 384 MiB of unread loopback TCP
         * data with maxmem 128 (tests/attack/test_ns_kmem.py), bounded only by the
         * host-wide net.ipv4.tcp_mem. v1 counts it beside memory.usage, so the bound is
         * maxmem again (v2 charges it to memory.max by itself). */
        snprintf(p, sizeof p, "%s/memory.kmem.tcp.limit_in_bytes", dir);
        if (access(p, F_OK) == 0 && bh_cg_write(dir, "memory.kmem.tcp.limit_in_bytes", val, err) < 0)
            return -1;
    }
    if (spec->memory_mib) {
        snprintf(val, sizeof val, "%llu", (unsigned long long)spec->memory_mib << 20);
        if (bh_cg_write(dir, "memory.soft_limit_in_bytes", val, err) < 0)
            return -1;
    }
    cg_dir(dir, sizeof dir, "pids", tag, spec->name);
    snprintf(val, sizeof val, "%u", spec->max_pids ? spec->max_pids : BH_NS_DEFAULT_PIDS);
    if (bh_cg_write(dir, "pids.max", val, err) < 0)
        return -1;
    if (spec->vcpus && have("cpu")) {
        cg_dir(dir, sizeof dir, "cpu", tag, spec->name);
        snprintf(val, sizeof val, "%llu", (unsigned long long)spec->vcpus * 100000ull);
        if (bh_cg_write(dir, "cpu.cfs_period_us", "100000", err) < 0 || bh_cg_write(dir, "cpu.cfs_quota_us", val, err) < 0)
            return -1;
    }
    if (devices && have("devices")) {
        cg_dir(dir, sizeof dir, "devices", tag, spec->name);
        if (bh_cg_write(dir, "devices.deny", "a", err) < 0)
            return -1;
        for (size_t i = 0; i < bh_cg_base_devices_n; i++) {
            const struct bh_dev_rule *r = &bh_cg_base_devices[i];
            char rule[64], minor[16];
            snprintf(minor, sizeof minor, "%d", (int)r->minor);
            snprintf(rule, sizeof rule, "%c %d:%s %s", r->type, (int)r->major, r->minor < 0 ? "*" : minor, r->access);
            if (bh_cg_write(dir, "devices.allow", rule, err) < 0)
                return -1;
        }
    }
    return 0;
}

static int v1_create(const char *tag, const struct bh_qube_spec *spec, bh_error *err)
{
    return create(tag, spec, true, err);
}

/* Limits of a running qube: the device list stays (it may hold attached block devices). */
static int v1_update_limits(const char *tag, const struct bh_qube_spec *spec, bh_error *err)
{
    return create(tag, spec, false, err);
}

static int v1_device_access(const char *tag, const char *name, unsigned major, unsigned minor, const char *access,
                            bh_error *err)
{
    char dir[4096], rule[64];
    if (!have("devices"))
        return bh_fail(err, ENOTSUP, "the cgroup v1 devices controller is not mounted");
    cg_dir(dir, sizeof dir, "devices", tag, name);
    snprintf(rule, sizeof rule, "b %u:%u %s", major, minor, access ? access : "rwm");
    return bh_cg_write(dir, access ? "devices.allow" : "devices.deny", rule, err);
}

static char *read_small(const char *ctrl, const char *tag, const char *name, const char *file);

static int v1_revoke_blocks(const char *tag, const char *name)
{
    if (!have("devices"))
        return 0;
    char dir[4096];
    cg_dir(dir, sizeof dir, "devices", tag, name);
    _cleanup_free_ char *list = read_small("devices", tag, name, "devices.list");
    int n = 0;
    for (char *line = list, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        unsigned major, minor;
        if (sscanf(line, "b %u:%u", &major, &minor) != 2)
            continue; /* char devices of the fixed /dev; "b *:*" is never allowed */
        char rule[64];
        snprintf(rule, sizeof rule, "b %u:%u rwm", major, minor);
        if (bh_cg_write(dir, "devices.deny", rule, NULL) == 0)
            n++;
    }
    return n;
}

static int v1_attach_self(const char *tag, const char *name, bh_error *err)
{
    char dir[4096];
    for (size_t i = 0; i < BH_ARRAY_SIZE(ctrls); i++) {
        if (!have(ctrls[i]))
            continue;
        cg_dir(dir, sizeof dir, ctrls[i], tag, name);
        if (bh_cg_write(dir, "tasks", "0", err) < 0)
            return -1;
    }
    return 0;
}

static char *read_small(const char *ctrl, const char *tag, const char *name, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, BASE "/%s/%s/%s/%s", ctrl, tag, name, file);
    return bh_read_file(path, 1 << 16, NULL);
}

static int v1_frozen(const char *tag, const char *name)
{
    _cleanup_free_ char *s = read_small("freezer", tag, name, "freezer.state");
    if (!s)
        return -1;
    return strncmp(s, "FROZEN", 6) == 0;
}

static int v1_freeze(const char *tag, const char *name, bool frozen, bh_error *err)
{
    char dir[4096];
    cg_dir(dir, sizeof dir, "freezer", tag, name);
    if (bh_cg_write(dir, "freezer.state", frozen ? "FROZEN" : "THAWED", err) < 0)
        return -1;
    /* FREEZING -> FROZEN is asynchronous; pause returns once it holds. A task caught in
     * an uninterruptible wait leaves the cgroup FREEZING until FROZEN is written again
     * (v1 retries only on a write), so write it again every 100 ms, for up to 10 s on a
     * loaded host. */
    for (int i = 0; frozen && i < 1000; i++) {
        if (v1_frozen(tag, name) == 1)
            return 0;
        if (i % 10 == 9)
            (void)bh_cg_write(dir, "freezer.state", "FROZEN", NULL);
        sleep_ms(10);
    }
    return frozen ? bh_fail(err, ETIMEDOUT, "freezing %s did not complete", name) : 0;
}

static int v1_kill_all(const char *tag, const char *name)
{
    /* Freeze, kill every member, thaw: nothing can fork while we walk the list. */
    int n = 0;
    for (int round = 0; round < 100; round++) {
        /* An empty cgroup cannot gain a member (only a member's fork could add one):
         * nothing to freeze. Freezing is not free: each freeze and thaw flips a kernel
         * static key, a text patch on every CPU (milliseconds on a paravirtualized guest),
         * and this runs at every qube's end, when init's death has usually emptied it. */
        _cleanup_free_ char *pre = read_small("pids", tag, name, "cgroup.procs");
        if (!pre || !*pre)
            break;
        (void)v1_freeze(tag, name, true, NULL);
        _cleanup_free_ char *s = read_small("pids", tag, name, "cgroup.procs");
        if (!s || !*s)
            break;
        for (char *p = s, *e; *p; p = e) {
            long pid = strtol(p, &e, 10);
            if (e == p)
                break;
            if (pid > 0 && kill((pid_t)pid, SIGKILL) == 0)
                n++;
            while (*e == '\n')
                e++;
        }
        (void)v1_freeze(tag, name, false, NULL);
        sleep_ms(5);
    }
    (void)v1_freeze(tag, name, false, NULL);
    return n;
}

static int v1_destroy(const char *tag, const char *name, bh_error *err)
{
    char dir[4096];
    int ret = 0;
    for (size_t i = 0; i < BH_ARRAY_SIZE(ctrls); i++) {
        if (!have(ctrls[i]))
            continue;
        cg_dir(dir, sizeof dir, ctrls[i], tag, name);
        if (!strcmp(ctrls[i], "cpu") || !strcmp(ctrls[i], "cpuacct") || !strcmp(ctrls[i], "memory")) {
            /* A host helper charged to the qube (its qrexec-daemon, stopping right after
             * the qube; bulkhead-procfs, ending with the qube's mount) is not the
             * qube's: back to the root cgroup, uncharged. */
            char root[256];
            snprintf(root, sizeof root, BASE "/%s", ctrls[i]);
            bh_cg_move_procs(dir, root);
        }
        int tries = 0;
        while (rmdir(dir) < 0 && errno != ENOENT) {
            /* EBUSY: exiting tasks still counted (up to 10 s: a loaded host tears
             * namespaces down slowly); not waited for when cgroups that are not ours
             * are in it (that lasts) */
            int e = errno;
            bool children = e == EBUSY && bh_cg_has_children(dir);
            errno = e;
            if (errno != EBUSY || children || ++tries > 2000) {
                ret = bh_fail_errno(err, "rmdir %s%s", dir, children ? " (it holds cgroups that are not the qube's)" : "");
                break;
            }
            sleep_ms(5);
        }
        cg_dir(dir, sizeof dir, ctrls[i], tag, NULL);
        (void)rmdir(dir); /* the shared parent goes when its last qube does */
    }
    return ret;
}

static int v1_stats(const char *tag, const char *name, struct bh_qube_stats *st)
{
    _cleanup_free_ char *m = read_small("memory", tag, name, "memory.usage_in_bytes");
    _cleanup_free_ char *c = have("cpuacct") ? read_small("cpuacct", tag, name, "cpuacct.usage") : NULL;
    st->mem_bytes = m ? strtoull(m, NULL, 10) : 0;
    st->cputime_ns = c ? strtoull(c, NULL, 10) : 0;
    return m ? 0 : -1;
}

static bool v1_contains(const char *tag, const char *name, pid_t pid)
{
    char path[64], want[512];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    _cleanup_free_ char *s = bh_read_file(path, 1 << 16, NULL);
    if (!s)
        return false;
    snprintf(want, sizeof want, ":pids:/%s/%s\n", tag, name);
    return strstr(s, want) != NULL;
}

static int v1_charge_cpu(const char *tag, const char *name, pid_t pid, bh_error *err)
{
    char dir[4096], val[32];
    snprintf(val, sizeof val, "%d", (int)pid);
    /* A helper charging itself is a single-threaded child between fork and exec: moving
     * its one thread ("0" to tasks) skips the RCU grace period a cgroup.procs write
     * waits for (10-20 ms per controller, see attach_self). */
    bool self = pid == getpid();
    for (size_t i = 0; i < BH_ARRAY_SIZE(cpu_ctrls); i++) {
        if (!have(cpu_ctrls[i]))
            continue;
        cg_dir(dir, sizeof dir, cpu_ctrls[i], tag, name);
        if (bh_cg_write(dir, self ? "tasks" : "cgroup.procs", self ? "0" : val, err) < 0)
            return -1;
    }
    return 0;
}

static void v1_cpu_usage_file(const char *tag, const char *name, char *out, size_t n)
{
    out[0] = '\0';
    if (have("cpuacct")) {
        char dir[4096];
        cg_dir(dir, sizeof dir, "cpuacct", tag, name);
        snprintf(out, n, "%s/cpuacct.usage_all", dir);
    }
}

/* v1's memory hierarchy is its own: the helper's pages count against the qube's
 * memory.limit_in_bytes (it is charged before it allocates: called between fork and
 * exec), while its freezer and pids stay the root's. */
static int v1_charge_memory(const char *tag, const char *name, pid_t pid, bh_error *err)
{
    char dir[4096], val[32];
    snprintf(val, sizeof val, "%d", (int)pid);
    cg_dir(dir, sizeof dir, "memory", tag, name);
    return bh_cg_write(dir, pid == getpid() ? "tasks" : "cgroup.procs", pid == getpid() ? "0" : val, err);
}

const struct bh_cgroup_ops bh_cgroup_v1 = {
    v1_create, v1_attach_self, v1_freeze, v1_frozen, v1_kill_all, v1_destroy, v1_stats, v1_contains, v1_charge_cpu,
    v1_update_limits, v1_device_access, v1_revoke_blocks, v1_cpu_usage_file, v1_charge_memory,
};
