/* cgroup v2: one unified hierarchy at /sys/fs/cgroup. */
#include "ns.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BASE "/sys/fs/cgroup"

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

static void cg_dir(char *out, size_t n, const char *tag, const char *name)
{
    if (name)
        snprintf(out, n, BASE "/%s/%s", tag, name);
    else
        snprintf(out, n, BASE "/%s", tag);
}

static char *read_small(const char *tag, const char *name, const char *file)
{
    char path[4096];
    snprintf(path, sizeof path, BASE "/%s/%s/%s", tag, name, file);
    return bh_read_file(path, 1 << 16, NULL);
}

static void enable(const char *dir)
{
    /* One controller at a time: one that is unavailable must not block the others. */
    static const char *c[] = { "+memory", "+pids", "+cpu" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(c); i++)
        (void)bh_cg_write(dir, "cgroup.subtree_control", c[i], NULL);
}

static int v2_create(const char *tag, const struct bh_qube_spec *spec, bh_error *err)
{
    char dir[4096], val[64];
    enable(BASE);
    for (int attempt = 0;; attempt++) { /* the parent may vanish between the mkdirs */
        cg_dir(dir, sizeof dir, tag, NULL);
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
            return bh_fail_errno(err, "mkdir %s", dir);
        enable(dir);
        cg_dir(dir, sizeof dir, tag, spec->name);
        if (mkdir(dir, 0755) == 0 || errno == EEXIST)
            break;
        if (errno != ENOENT || attempt == 3)
            return bh_fail_errno(err, "mkdir %s", dir);
    }
    if (spec->all_qubes_mib) { /* all qubes together: see cgroup_v1.c */
        /* the parent in a buffer of its own: `dir` names the qube's cgroup from here on
         * (writing the qube's limits into the parent overwrote the budget and left the
         * qube unbounded; found by running the tests on a v2 host) */
        char parent[4096];
        cg_dir(parent, sizeof parent, tag, NULL);
        snprintf(val, sizeof val, "%llu", (unsigned long long)spec->all_qubes_mib << 20);
        (void)bh_cg_write(parent, "memory.max", val, NULL);
    }
    uint64_t hard = spec->maxmem_mib ? spec->maxmem_mib : spec->memory_mib;
    if (hard) {
        snprintf(val, sizeof val, "%llu", (unsigned long long)hard << 20);
        if (bh_cg_write(dir, "memory.max", val, err) < 0)
            return -1;
        (void)bh_cg_write(dir, "memory.swap.max", "0", NULL);
    }
    /* v1's soft limit (reclaim above it first) maps to v2's memory.low (protect below it). */
    if (spec->memory_mib) {
        snprintf(val, sizeof val, "%llu", (unsigned long long)spec->memory_mib << 20);
        if (bh_cg_write(dir, "memory.low", val, err) < 0)
            return -1;
    }
    snprintf(val, sizeof val, "%u", spec->max_pids ? spec->max_pids : BH_NS_DEFAULT_PIDS);
    if (bh_cg_write(dir, "pids.max", val, err) < 0)
        return -1;
    if (spec->vcpus) {
        snprintf(val, sizeof val, "%llu 100000", (unsigned long long)spec->vcpus * 100000ull);
        if (bh_cg_write(dir, "cpu.max", val, err) < 0)
            return -1;
        /* a live change reaches the qube's host helpers too (v2_charge_cpu) */
        char host[4200];
        snprintf(host, sizeof host, "%s@host", dir);
        if (access(host, F_OK) == 0)
            (void)bh_cg_write(host, "cpu.max", val, NULL);
    }
    /* Device access on v2 needs a BPF program; the qube's /dev holds only bind-mounted
     * nodes and mknod is impossible in its user namespace, so none is attached. */
    return 0;
}

static int v2_attach_self(const char *tag, const char *name, bh_error *err)
{
    char dir[4096];
    cg_dir(dir, sizeof dir, tag, name);
    return bh_cg_write(dir, "cgroup.procs", "0", err);
}

static int v2_frozen(const char *tag, const char *name)
{
    _cleanup_free_ char *s = read_small(tag, name, "cgroup.events");
    if (!s)
        return -1;
    return strstr(s, "frozen 1") != NULL;
}

static int v2_freeze(const char *tag, const char *name, bool frozen, bh_error *err)
{
    char dir[4096];
    cg_dir(dir, sizeof dir, tag, name);
    if (bh_cg_write(dir, "cgroup.freeze", frozen ? "1" : "0", err) < 0)
        return -1;
    for (int i = 0; frozen && i < 1000; i++) { /* up to 10 s on a loaded host */
        if (v2_frozen(tag, name) == 1)
            return 0;
        sleep_ms(10);
    }
    return frozen ? bh_fail(err, ETIMEDOUT, "freezing %s did not complete", name) : 0;
}

static int v2_kill_all(const char *tag, const char *name)
{
    char dir[4096];
    cg_dir(dir, sizeof dir, tag, name);
    return bh_cg_write(dir, "cgroup.kill", "1", NULL) == 0 ? 1 : 0;
}

static void remove_host_dir(const char *tag, const char *name);

static int v2_destroy(const char *tag, const char *name, bh_error *err)
{
    char dir[4096];
    remove_host_dir(tag, name);
    cg_dir(dir, sizeof dir, tag, name);
    int tries = 0;
    while (rmdir(dir) < 0 && errno != ENOENT) {
        if (errno != EBUSY || ++tries > 2000) /* exiting tasks still counted: up to 10 s under load */
            return bh_fail_errno(err, "rmdir %s", dir);
        sleep_ms(5);
    }
    cg_dir(dir, sizeof dir, tag, NULL);
    (void)rmdir(dir);
    return 0;
}

static int v2_stats(const char *tag, const char *name, struct bh_qube_stats *st)
{
    _cleanup_free_ char *m = read_small(tag, name, "memory.current");
    _cleanup_free_ char *c = read_small(tag, name, "cpu.stat");
    st->mem_bytes = m ? strtoull(m, NULL, 10) : 0;
    st->cputime_ns = 0;
    const char *u = c ? strstr(c, "usage_usec ") : NULL;
    if (u)
        st->cputime_ns = strtoull(u + 11, NULL, 10) * 1000ull;
    return m ? 0 : -1;
}

static bool v2_contains(const char *tag, const char *name, pid_t pid)
{
    char path[64], want[512];
    snprintf(path, sizeof path, "/proc/%d/cgroup", (int)pid);
    _cleanup_free_ char *s = bh_read_file(path, 1 << 16, NULL);
    if (!s)
        return false;
    snprintf(want, sizeof want, "0::/%s/%s\n", tag, name);
    return strstr(s, want) != NULL;
}

/* v2 has one hierarchy: a process is in one cgroup for every controller, so a host
 * helper put into the qube's cgroup would be frozen and killed with the qube. The qube's
 * host helpers (its qrexec-daemon and the call processes it forks) get a sibling,
 * "<name>@host" ('@' is never in a qube's name), with the qube's CPU quota: the host
 * work a qube causes is bounded by its own share and weighs in the parent's fair share
 * next to it, as v1 charges it to the qube's cpu cgroup; memory and pids stay unbounded
 * there, as on v1. */
static void host_dir(char *out, size_t n, const char *tag, const char *name)
{
    snprintf(out, n, BASE "/%s/%s@host", tag, name);
}

static int v2_charge_cpu(const char *tag, const char *name, pid_t pid, bh_error *err)
{
    char dir[4096], val[32];
    host_dir(dir, sizeof dir, tag, name);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", dir);
    _cleanup_free_ char *quota = read_small(tag, name, "cpu.max");
    if (quota && bh_cg_write(dir, "cpu.max", quota, err) < 0)
        return -1;
    snprintf(val, sizeof val, "%d", (int)pid);
    return bh_cg_write(dir, "cgroup.procs", val, err);
}

/* The helpers outlive nothing of the qube's: back to the root cgroup (as on v1), then the
 * sibling goes. */
static void remove_host_dir(const char *tag, const char *name)
{
    char dir[4096];
    host_dir(dir, sizeof dir, tag, name);
    bh_cg_move_procs(dir, BASE);
    for (int tries = 0; rmdir(dir) < 0 && errno == EBUSY && tries < 2000; tries++)
        sleep_ms(5);
}

/* No device controller here (v2 filters devices with BPF programs, which the engine
 * does not install): block devices cannot be handed to a qube. */
static int v2_device_access(const char *tag, const char *name, unsigned major, unsigned minor, const char *access,
                            bh_error *err)
{
    (void)tag, (void)name, (void)major, (void)minor, (void)access;
    return bh_fail(err, ENOTSUP, "block devices need the cgroup v1 devices controller");
}

static int v2_revoke_blocks(const char *tag, const char *name)
{
    (void)tag, (void)name;
    return 0; /* nothing can have been attached (v2_device_access) */
}

const struct bh_cgroup_ops bh_cgroup_v2 = {
    v2_create, v2_attach_self, v2_freeze, v2_frozen, v2_kill_all, v2_destroy, v2_stats, v2_contains, v2_charge_cpu,
    v2_create, v2_device_access, v2_revoke_blocks,
};
