/* In-namespace stage: runs as the qube's root, as PID 1 of the qube's PID namespace,
 * in the qube's own (locked) copy of the assembled tree, just before bulkhead-init.
 * Mounts that need the qube's namespaces (proc for its PID ns, sysfs for its net ns,
 * a private devpts) are made here; then /home from /rw/home; then pivot_root.
 * The working directory is the staging dir (set by stage 1 before the mount namespace
 * was copied), so nothing here walks the host's runtime path; every path inside the
 * qube's tree is resolved beneath it without symlinks (see bh_open_beneath): /rw is
 * the qube's own persistent data and may hold any symlink the qube's root planted. */
#include "ns.h"
#include "cleanup.h"
#include "log.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int mount_at(int rootfd, const char *rel, const char *src, const char *type, unsigned long flags,
                    const char *data, bh_error *err)
{
    char dst[64];
    _cleanup_close_ int t = bh_open_beneath(rootfd, rel, true);
    if (t < 0)
        return bh_fail_errno(err, "/%s in the qube's root", rel);
    bh_fd_path(t, dst, sizeof dst);
    if (mount(src, dst, type, flags, data) < 0)
        return bh_fail_errno(err, "mount %s on /%s", type ? type : src, rel);
    return 0;
}

/* Binds what `src` (beneath rootfd) is onto `dst`; both are opened without symlinks. */
static int bind_beneath(int rootfd, const char *src, const char *dst, bool dir, bh_error *err)
{
    char s[64], d[64];
    _cleanup_close_ int sf = bh_open_beneath(rootfd, src, dir);
    _cleanup_close_ int df = sf < 0 ? -1 : bh_open_beneath(rootfd, dst, dir);
    if (sf < 0 || df < 0)
        return bh_fail_errno(err, "/%s or /%s is not a plain %s", src, dst, dir ? "directory" : "file");
    bh_fd_path(sf, s, sizeof s);
    bh_fd_path(df, d, sizeof d);
    if (mount(s, d, NULL, MS_BIND, NULL) < 0)
        return bh_fail_errno(err, "bind /%s on /%s", src, dst);
    return 0;
}

/* Parts of sysfs a qube's software reads (CPU topology for thread pools, NUMA nodes
 * for allocators, its own network devices, THP settings). Everything else in sysfs is
 * the host's hardware and other qubes' disks: /sys/block and /sys/devices/virtual/block
 * name every loop device with its backing file (another qube's private.img path, hence
 * its name) and I/O counters; /sys/kernel has vmcoreinfo and boot_params; /sys/firmware
 * the host's ACPI/DMI tables. */
static const char *const sys_kept[] = { "devices/system/cpu", "devices/system/node", "class/net",
                                        "devices/virtual/net", "kernel/mm/transparent_hugepage" };

/* cpuidle's per-CPU state times and counts run from the host's boot (an estimate of
 * its uptime and of every other qube's load): each CPU's cpuidle dir in the qube is
 * covered by an empty read-only tmpfs. No qube software needs them (powertop and
 * turbostat read them). A failure leaves them visible, with a warning: not worth a
 * failed start. Hosts without a cpuidle driver have none. */
static void mask_cpuidle(int rootfd)
{
    int cpus = bh_open_beneath(rootfd, "sys/devices/system/cpu", true);
    DIR *d = cpus < 0 ? NULL : fdopendir(cpus);
    if (!d) {
        if (cpus >= 0)
            close(cpus);
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        size_t n = strlen(e->d_name);
        if (n < 4 || n > 12 || strncmp(e->d_name, "cpu", 3) || strspn(e->d_name + 3, "0123456789") != n - 3)
            continue;
        char rel[96];
        snprintf(rel, sizeof rel, "sys/devices/system/cpu/%.12s/cpuidle", e->d_name);
        int fd = bh_open_beneath(rootfd, rel, true);
        if (fd < 0)
            continue;
        close(fd);
        bh_error err = { 0 };
        if (mount_at(rootfd, rel, "tmpfs", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                     "size=4k,nr_inodes=2,mode=0555", &err) < 0)
            bh_warn("/%s stays visible: %s", rel, err.msg);
    }
    closedir(d);
}

/* /sys: a read-only tmpfs holding clones of the kept subtrees of a fresh sysfs (which
 * shows the qube's own network namespace). Some hosts hide parts of /sys from
 * namespaces (the kernel then refuses a new sysfs): /sys then stays an empty dir. */
static int mount_sys(int rootfd, bh_error *err)
{
    const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    if (mount_at(rootfd, "sys", "sysfs", "sysfs", safe | MS_RDONLY, NULL, err) < 0)
        return err && err->errnum == EPERM ? 0 : -1;
    int keep[BH_ARRAY_SIZE(sys_kept)];
    int ret = -1;
    for (size_t i = 0; i < BH_ARRAY_SIZE(sys_kept); i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "sys/%s", sys_kept[i]);
        _cleanup_close_ int fd = bh_open_beneath(rootfd, rel, true);
        keep[i] = fd < 0 ? -1 : open_tree(fd, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH);
    }
    {
        char dst[64];
        _cleanup_close_ int t = bh_open_beneath(rootfd, "sys", true);
        bh_fd_path(t, dst, sizeof dst);
        if (t < 0 || umount2(dst, MNT_DETACH) < 0) {
            bh_fail_errno(err, "unmount the full sysfs");
            goto out;
        }
    }
    if (mount_at(rootfd, "sys", "tmpfs", "tmpfs", safe, "mode=0755,size=16k,nr_inodes=64", err) < 0)
        goto out;
    {
        _cleanup_close_ int sys = bh_open_beneath(rootfd, "sys", true);
        if (sys < 0 || bh_mkdir_beneath(sys, "fs", 0755, 0, false, NULL) < 0 ||
            bh_mkdir_beneath(sys, "fs/cgroup", 0755, 0, false, NULL) < 0) {
            bh_fail_errno(err, "mkdir in /sys");
            goto out;
        }
        for (size_t i = 0; i < BH_ARRAY_SIZE(sys_kept); i++) {
            if (keep[i] < 0)
                continue;
            char part[128];
            snprintf(part, sizeof part, "%s", sys_kept[i]);
            for (char *s = part; (s = strchr(s, '/')); s++) {
                *s = '\0';
                int r = bh_mkdir_beneath(sys, part, 0755, 0, false, NULL);
                *s = '/';
                if (r < 0) {
                    bh_fail_errno(err, "mkdir /sys/%s", part);
                    goto out;
                }
            }
            if (bh_mkdir_beneath(sys, part, 0755, 0, false, NULL) < 0) {
                bh_fail_errno(err, "mkdir /sys/%s", part);
                goto out;
            }
            _cleanup_close_ int t = bh_open_beneath(sys, part, true);
            if (t < 0 || move_mount(keep[i], "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
                bh_fail_errno(err, "mount /sys/%s", part);
                goto out;
            }
        }
    }
    mask_cpuidle(rootfd);
    {
        char dst[64];
        _cleanup_close_ int t = bh_open_beneath(rootfd, "sys", true);
        bh_fd_path(t, dst, sizeof dst);
        if (t < 0 || mount(NULL, dst, NULL, MS_REMOUNT | MS_RDONLY | safe, "mode=0755,size=16k,nr_inodes=64") < 0) {
            bh_fail_errno(err, "remount /sys read-only");
            goto out;
        }
    }
    ret = 0;
out:
    for (size_t i = 0; i < BH_ARRAY_SIZE(sys_kept); i++)
        if (keep[i] >= 0)
            close(keep[i]);
    return ret;
}

int bh_inside_setup(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, bh_error *err)
{
    const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    _cleanup_close_ int rootfd = open("root", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return bh_fail_errno(err, "open the new root");
    if (mount_at(rootfd, "proc", "proc", "proc", safe, NULL, err) < 0)
        return -1;
    /* Host-wide state that proc would show a qube, masked (read as empty):
     *  - kernel internals and triggers: kcore, keys, timer_list, sched_debug, kallsyms,
     *    sysrq-trigger, vmallocinfo;
     *  - other qubes' disk activity and names: diskstats and partitions list every loop
     *    device (each qube's private volume) with its I/O counters, swaps the host's
     *    swap files;
     *  - host facts no software in a qube needs: cmdline (the host's boot command line),
     *    iomem/ioports (physical layout, used to defeat KASLR), config.gz, modules,
     *    bootconfig, mdstat. */
    static const char *masked[] = { "proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug",
                                    "proc/kallsyms", "proc/sysrq-trigger", "proc/vmallocinfo",
                                    "proc/diskstats", "proc/partitions", "proc/swaps",
                                    "proc/cmdline", "proc/iomem", "proc/ioports", "proc/config.gz",
                                    "proc/modules", "proc/bootconfig", "proc/mdstat" };
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        _cleanup_close_ int fd = bh_open_beneath(rootfd, masked[i], false);
        if (fd >= 0 && bind_beneath(rootfd, "dev/null", masked[i], false, err) < 0)
            return -1;
    }
    if (mount_sys(rootfd, err) < 0)
        return -1;
    if (mount_at(rootfd, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5", err) < 0 &&
        mount_at(rootfd, "dev/pts", "devpts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620", err) < 0)
        return -1;
    if (spec->vol.private_img) {
        /* /rw/home is created by the qube's root, so it gets the qube's IDs on disk. */
        if (bh_mkdir_beneath(rootfd, "rw/home", 0755, 0, false, NULL) < 0)
            return bh_fail_errno(err, "mkdir /rw/home");
        if (bind_beneath(rootfd, "rw/home", "home", true, err) < 0)
            return -1;
    }
    if (spec->vol.private_img && spec->vol.root_throwaway) {
        /* As in Qubes, an app qube's /usr/local is its own (/rw/usrlocal): programs and
         * qrexec services the user installs there (/usr/local/etc/qubes-rpc) survive the
         * throwaway root, and the host's /usr/local (under the host template) is hidden. */
        _cleanup_close_ int ul = bh_open_beneath(rootfd, "usr/local", true);
        if (ul >= 0) {
            if (bh_mkdir_beneath(rootfd, "rw/usrlocal", 0755, 0, false, NULL) < 0)
                return bh_fail_errno(err, "mkdir /rw/usrlocal");
            if (bind_beneath(rootfd, "rw/usrlocal", "usr/local", true, err) < 0)
                return -1;
        }
    }
    if (sethostname(spec->name, strlen(spec->name)) < 0)
        return bh_fail_errno(err, "sethostname");
    /* Host-wide CPU accounting (uptime's idle field, stat's cpu lines, softirqs and
     * interrupts count from the host's boot): the qube's own figures instead. Last,
     * so that bulkhead-procfs (which must answer the lookups) has had the most time. */
    if (p->procfs && bh_procfs_bind(rootfd, err) < 0)
        return -1;
    /* Every mount copied into the qube's namespace is locked, and pivot_root refuses a
     * locked new root: bind the tree onto itself (the bind's top is ours, unlocked; the
     * mounts under it stay locked). */
    if (mount("root", "root", NULL, MS_BIND | MS_REC, NULL) < 0)
        return bh_fail_errno(err, "bind the new root");
    /* pivot_root(".", "."): the old root ends up stacked under the new one and is
     * detached at once, so no path back to the host's tree remains. */
    if (chdir("root") < 0)
        return bh_fail_errno(err, "chdir to the new root");
    if (syscall(SYS_pivot_root, ".", ".") < 0)
        return bh_fail_errno(err, "pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return bh_fail_errno(err, "detach old root");
    if (chdir("/") < 0)
        return bh_fail_errno(err, "chdir /");
    return 0;
}
