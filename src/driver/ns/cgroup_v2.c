/* cgroup v2: one unified hierarchy at /sys/fs/cgroup. */
#include "ns.h"
#include "cleanup.h"
#include "io.h"
#include "log.h"
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

/* Inside the qube's cgroup "<tag>/<name>": its own processes in the leaf "@qube", its
 * bulkhead-procfs in "@procfs" ('@' is never in a qube's name). "<name>" enables no
 * controller for its children, so both are charged to it: its memory.max, pids.max and
 * cpu.max bound the qube and the server of its /proc files together, as on v1, where
 * the server joins the qube's memory and cpu cgroups. Pausing freezes "@qube" alone (a
 * reader in the qube waiting on the server in FUSE cannot be frozen, so the server
 * must keep answering), and killing kills "@qube" alone (the server ends with the
 * qube's mount, as on v1). */
#define QUBE_LEAF "@qube"
#define PROCFS_LEAF "@procfs"

static void leaf_dir(char *out, size_t n, const char *tag, const char *name, const char *leaf)
{
    snprintf(out, n, BASE "/%s/%s/%s", tag, name, leaf);
}

/* Where the qube's processes are: its leaf, or the cgroup itself for a qube that an
 * earlier version started (adopted by a restarted daemon). */
static void procs_dir(char *out, size_t n, const char *tag, const char *name)
{
    leaf_dir(out, n, tag, name, QUBE_LEAF);
    if (access(out, F_OK) < 0)
        cg_dir(out, n, tag, name);
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

/* The block devices attached to each running qube, in this daemon's memory: the device
 * program holds the whole list, so every change rebuilds it from here. A restarted
 * daemon starts with none, which is what adoption makes true (v2_revoke_blocks). */
#define MAX_QUBE_BLOCKS 64
struct qube_blocks {
    struct qube_blocks *next;
    unsigned n;
    struct bh_dev_rule dev[MAX_QUBE_BLOCKS];
    char key[]; /* tag/name */
};
static struct qube_blocks *blocks;

static struct qube_blocks **blocks_find(const char *tag, const char *name)
{
    struct qube_blocks **q = &blocks;
    for (; *q; q = &(*q)->next) {
        size_t tl = strlen(tag);
        if (!strncmp((*q)->key, tag, tl) && (*q)->key[tl] == '/' && !strcmp((*q)->key + tl + 1, name))
            break;
    }
    return q;
}

static void blocks_forget(const char *tag, const char *name)
{
    struct qube_blocks **q = blocks_find(tag, name), *dead = *q;
    if (dead) {
        *q = dead->next;
        free(dead);
    }
}

/* Installs the qube's device program: the base devices, then its block devices. */
static int devices_install(const char *tag, const char *name, const struct qube_blocks *qb, bh_error *err)
{
    struct bh_dev_rule rules[32 + MAX_QUBE_BLOCKS];
    size_t n = 0;
    for (size_t i = 0; i < bh_cg_base_devices_n && n < 32; i++)
        rules[n++] = bh_cg_base_devices[i];
    for (unsigned i = 0; qb && i < qb->n; i++)
        rules[n++] = qb->dev[i];
    char dir[4096];
    cg_dir(dir, sizeof dir, tag, name);
    return bh_devbpf_install(dir, rules, n, err);
}

static int v2_limits(const char *tag, const struct bh_qube_spec *spec, bh_error *err)
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
    return 0;
}

/* A new qube's cgroup: its limits and a device program allowing its base devices only
 * (the qube's /dev has nothing else and it cannot mknod, but a node reached any other
 * way must open nothing either, as on v1). */
static int v2_create(const char *tag, const struct bh_qube_spec *spec, bh_error *err)
{
    if (v2_limits(tag, spec, err) < 0)
        return -1;
    blocks_forget(tag, spec->name);
    if (devices_install(tag, spec->name, NULL, err) < 0)
        return -1;
    char dir[4096];
    leaf_dir(dir, sizeof dir, tag, spec->name, QUBE_LEAF);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", dir);
    return 0;
}

static int v2_attach_self(const char *tag, const char *name, bh_error *err)
{
    char dir[4096];
    procs_dir(dir, sizeof dir, tag, name);
    return bh_cg_write(dir, "cgroup.procs", "0", err);
}

static int v2_frozen(const char *tag, const char *name)
{
    char dir[4096], path[4200];
    procs_dir(dir, sizeof dir, tag, name);
    snprintf(path, sizeof path, "%s/cgroup.events", dir);
    _cleanup_free_ char *s = bh_read_file(path, 1 << 16, NULL);
    if (!s)
        return -1;
    return strstr(s, "frozen 1") != NULL;
}

static int v2_freeze(const char *tag, const char *name, bool frozen, bh_error *err)
{
    char dir[4096];
    procs_dir(dir, sizeof dir, tag, name);
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
    procs_dir(dir, sizeof dir, tag, name);
    return bh_cg_write(dir, "cgroup.kill", "1", NULL) == 0 ? 1 : 0;
}

static void remove_host_dir(const char *tag, const char *name);

static int v2_destroy(const char *tag, const char *name, bh_error *err)
{
    char dir[4096];
    remove_host_dir(tag, name);
    blocks_forget(tag, name);
    /* the server of its /proc files is not the qube's: back to the root cgroup (as on
     * v1), uncharged; then the leaves go, then the qube's cgroup */
    leaf_dir(dir, sizeof dir, tag, name, PROCFS_LEAF);
    bh_cg_move_procs(dir, BASE);
    static const char *const leaves[] = { PROCFS_LEAF, QUBE_LEAF };
    for (size_t i = 0; i < BH_ARRAY_SIZE(leaves); i++) {
        leaf_dir(dir, sizeof dir, tag, name, leaves[i]);
        for (int t = 0; rmdir(dir) < 0 && errno == EBUSY && t < 2000; t++) /* exiting tasks: up to 10 s */
            sleep_ms(5);
    }
    cg_dir(dir, sizeof dir, tag, name);
    int tries = 0;
    while (rmdir(dir) < 0 && errno != ENOENT) {
        /* exiting tasks still counted: up to 10 s under load; not waited for when
         * cgroups that are not ours are in it (that lasts) */
        int e = errno;
        bool children = e == EBUSY && bh_cg_has_children(dir);
        errno = e;
        if (errno != EBUSY || children || ++tries > 2000)
            return bh_fail_errno(err, "rmdir %s%s", dir, children ? " (it holds cgroups that are not the qube's)" : "");
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
    snprintf(want, sizeof want, "0::/%s/%s/" QUBE_LEAF "\n", tag, name);
    if (strstr(s, want))
        return true;
    snprintf(want, sizeof want, "0::/%s/%s\n", tag, name); /* started by an earlier version */
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

/* Allows (access "r"/"rw") or no longer allows (NULL) block device major:minor: the
 * list changes, and a program built from the new list replaces the old one. */
static int v2_device_access(const char *tag, const char *name, unsigned major, unsigned minor, const char *access,
                            bh_error *err)
{
    struct qube_blocks **q = blocks_find(tag, name);
    if (!*q) {
        size_t klen = strlen(tag) + 1 + strlen(name) + 1;
        *q = calloc(1, sizeof **q + klen);
        if (!*q)
            return bh_fail(err, ENOMEM, "out of memory");
        snprintf((*q)->key, klen, "%s/%s", tag, name);
    }
    struct qube_blocks *qb = *q, before = *qb;
    unsigned i = 0;
    while (i < qb->n && !(qb->dev[i].major == (int32_t)major && qb->dev[i].minor == (int32_t)minor))
        i++;
    if (i < qb->n) /* drop the old entry, whatever comes next */
        qb->dev[i] = qb->dev[--qb->n];
    if (access) {
        if (qb->n == MAX_QUBE_BLOCKS)
            return bh_fail(err, ENOSPC, "qube %s has %d block devices already", name, MAX_QUBE_BLOCKS);
        qb->dev[qb->n++] = (struct bh_dev_rule){ 'b', (int32_t)major, (int32_t)minor,
                                                 !strcmp(access, "rw") ? "rw" : "r" };
    }
    if (devices_install(tag, name, qb, err) < 0) {
        /* the old program stays attached (or the intersection of both): the list
         * remembered is the old one */
        struct qube_blocks *next = qb->next;
        *qb = before;
        qb->next = next;
        return -1;
    }
    return 0;
}

/* Adoption by a restarted bulkheadd: the predecessor's program (with its block
 * devices) is replaced by one with the base devices only. Counted from the length of
 * the old program: each block rule is 8 instructions longer than the base program. */
static int v2_revoke_blocks(const char *tag, const char *name)
{
    char dir[4096];
    cg_dir(dir, sizeof dir, tag, name);
    size_t base = bh_devbpf_build(bh_cg_base_devices, bh_cg_base_devices_n, NULL, BH_DEVBPF_MAX_INSNS);
    int old = bh_devbpf_attached_len(dir);
    blocks_forget(tag, name);
    bh_error e;
    if (devices_install(tag, name, NULL, &e) < 0)
        bh_warn("%s: %s", name, e.msg);
    if (old <= 0 || (size_t)old <= base)
        return 0;
    return (int)(((size_t)old - base + 7) / 8);
}

/* The qube's processes' own CPU use, for its /proc/stat: its "@qube" leaf (cpu.stat's
 * usage fields exist in every v2 cgroup, with or without the cpu controller), not the
 * qube's cgroup, which also counts its bulkhead-procfs: the server's time spent
 * answering reads is charged to the qube's quota but is no CPU use of the qube's own
 * programs (under TCG it showed as ~0.5 s of "busy" in an idle qube). */
static void v2_cpu_usage_file(const char *tag, const char *name, char *out, size_t n)
{
    char dir[4096];
    procs_dir(dir, sizeof dir, tag, name);
    snprintf(out, n, "%s/cpu.stat", dir);
}

/* bulkhead-procfs: into "<name>/@procfs", charged to the qube's cgroup with the qube
 * (memory, pids and CPU: the leaf has no controller of its own), never frozen or
 * killed with it (see QUBE_LEAF). It was in "<name>@host" (charge_cpu) until now. */
static int v2_charge_memory(const char *tag, const char *name, pid_t pid, bh_error *err)
{
    char dir[4096], val[32];
    leaf_dir(dir, sizeof dir, tag, name, PROCFS_LEAF);
    if (mkdir(dir, 0755) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", dir);
    snprintf(val, sizeof val, "%d", (int)pid);
    return bh_cg_write(dir, "cgroup.procs", val, err);
}

const struct bh_cgroup_ops bh_cgroup_v2 = {
    v2_create, v2_attach_self, v2_freeze, v2_frozen, v2_kill_all, v2_destroy, v2_stats, v2_contains, v2_charge_cpu,
    v2_limits, v2_device_access, v2_revoke_blocks, v2_cpu_usage_file, v2_charge_memory,
};
