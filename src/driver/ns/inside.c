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

int bh_inside_setup(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, bh_error *err)
{
    (void)p;
    const unsigned long safe = MS_NOSUID | MS_NODEV | MS_NOEXEC;
    _cleanup_close_ int rootfd = open("root", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return bh_fail_errno(err, "open the new root");
    if (mount_at(rootfd, "proc", "proc", "proc", safe, NULL, err) < 0)
        return -1;
    /* Host-wide kernel state that proc would show a qube: masked as containers do. */
    static const char *masked[] = { "proc/kcore", "proc/keys", "proc/timer_list", "proc/sched_debug",
                                    "proc/kallsyms", "proc/sysrq-trigger" };
    for (size_t i = 0; i < sizeof masked / sizeof masked[0]; i++) {
        _cleanup_close_ int fd = bh_open_beneath(rootfd, masked[i], false);
        if (fd >= 0 && bind_beneath(rootfd, "dev/null", masked[i], false, err) < 0)
            return -1;
    }
    /* sysfs read-only; it shows the qube's own network devices. Some hosts hide parts
     * of /sys from namespaces (the kernel then refuses a new sysfs): not fatal. */
    if (mount_at(rootfd, "sys", "sysfs", "sysfs", safe | MS_RDONLY, NULL, err) < 0 && err && err->errnum != EPERM)
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
