/* In-namespace stage: runs as the qube's root, as PID 1 of the qube's PID namespace,
 * in the qube's own (locked) copy of the assembled tree, just before bulkhead-init.
 * Mounts that need the qube's namespaces (proc for its PID ns, sysfs for its net ns,
 * a private devpts) are made here; then /home from /rw/home; then pivot_root.
 * The working directory is the staging dir (set by stage 1 before the mount namespace
 * was copied), so every path here is relative: the qube's root need not be able to
 * walk the host's runtime path. */
#include "ns.h"
#include "cleanup.h"
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#define JOIN(buf, a, b) bh_path_join(buf, sizeof buf, a, b)

int bh_inside_setup(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, bh_error *err)
{
    char path[4096];
    const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    JOIN(path, "root", "proc");
    if (mount("proc", path, "proc", safe, NULL) < 0)
        return bh_fail_errno(err, "mount proc");
    /* Host-wide kernel state that proc would show a qube: masked as containers do. */
    static const char *masked[] = { "kcore", "keys", "timer_list", "sched_debug", "kallsyms", "sysrq-trigger" };
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        char m[256];
        snprintf(m, sizeof m, "root/proc/%s", masked[i]);
        if (access(m, F_OK) == 0 && mount("root/dev/null", m, NULL, MS_BIND, NULL) < 0)
            return bh_fail_errno(err, "masking /proc/%s", masked[i]);
    }
    /* sysfs read-only; it shows the qube's own network devices. Some hosts hide parts
     * of /sys from namespaces (the kernel then refuses a new sysfs): not fatal. */
    JOIN(path, "root", "sys");
    if (mount("sysfs", path, "sysfs", safe | MS_RDONLY, NULL) < 0 && errno != EPERM)
        return bh_fail_errno(err, "mount sysfs");
    JOIN(path, "root", "dev/pts");
    if (mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5") < 0 &&
        mount("devpts", path, "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620") < 0)
        return bh_fail_errno(err, "mount devpts");
    if (spec->vol.private_img) {
        /* /rw/home is created by the qube's root, so it gets the qube's IDs on disk. */
        char home[4096];
        JOIN(path, "root", "rw/home");
        if (mkdir(path, 0755) < 0 && errno != EEXIST)
            return bh_fail_errno(err, "mkdir /rw/home");
        JOIN(home, "root", "home");
        if (mount(path, home, NULL, MS_BIND, NULL) < 0)
            return bh_fail_errno(err, "bind /home");
    }
    if (sethostname(spec->name, strlen(spec->name)) < 0)
        return bh_fail_errno(err, "sethostname");
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
