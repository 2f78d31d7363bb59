/* A template's (or standalone's) root volume: the tree lives inside root.img, a sparse
 * ext4 image of root.size bytes, mounted on the host at root/ with nosuid, nodev and
 * noexec. Every user of the tree keeps its path (the ns engine's idmapped binds, the vm
 * engine's export, builds), while what the template qube writes is bounded by the
 * image's size and can never be a working setuid program or device node on the host.
 *
 * One superblock per image: the mount is always made through the loop device that
 * already serves the image if there is one (a running qube keeps its own clone of the
 * mount, hence the device, alive after the host mount went away, e.g. across a daemon
 * crash), so the image is never mounted twice through two devices. The loop device is
 * autoclear: it goes with the last mount of the image. */
#include "internal.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/loop.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* linux/fs.h clashes with sys/mount.h in glibc 2.36 */
#ifndef FIFREEZE
#define FIFREEZE _IOWR('X', 119, int)
#define FITHAW _IOWR('X', 120, int)
#endif

#define HOST_ATTRS (MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC)

bool st_root_is_image(int qfd)
{
    return bh_fs_exists(qfd, "root.img") == 1;
}

/* A loop device bound to the open image: the one that serves it already, else a new
 * autoclear one. Returns its fd (keep it open until the mount holds the device). */
static int loop_for(int imgfd, char *dev, size_t devlen, bh_error *err)
{
    int n = st_image_loop(imgfd);
    if (n >= 0) {
        snprintf(dev, devlen, "/dev/loop%d", n);
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return bh_fail_errno(err, "open %s", dev);
        return fd;
    }
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return bh_fail_errno(err, "open /dev/loop-control");
    for (int attempt = 0; attempt < 16; attempt++) {
        int k = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (k < 0)
            return bh_fail_errno(err, "LOOP_CTL_GET_FREE");
        snprintf(dev, devlen, "/dev/loop%d", k);
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return bh_fail_errno(err, "open %s", dev);
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (uint32_t)imgfd;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR;
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
            return fd;
        int e = errno;
        close(fd);
        if (e != EBUSY) {
            errno = e;
            return bh_fail_errno(err, "LOOP_CONFIGURE %s", dev);
        }
    }
    return bh_fail(err, EBUSY, "no free loop device");
}

/* Does the block device dev (a loop device) serve the open image? One open and one
 * ioctl on that device, instead of scanning every loop device (a host keeps hundreds). */
static bool loop_dev_serves(dev_t dev, int imgfd)
{
    struct stat ist;
    if (major(dev) != 7 || fstat(imgfd, &ist) < 0)
        return false;
    char path[32];
    snprintf(path, sizeof path, "/dev/loop%u", minor(dev));
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat dst;
    struct loop_info64 li;
    if (fd < 0 || fstat(fd, &dst) < 0 || !S_ISBLK(dst.st_mode) || dst.st_rdev != dev ||
        ioctl(fd, LOOP_GET_STATUS64, &li) < 0)
        return false;
    return li.lo_inode == ist.st_ino && li.lo_device == ist.st_dev;
}

/* Is root/ the mount of root.img (through its loop device)? 1 yes, 0 nothing mounted,
 * -1 something else is mounted there (err set). */
static int root_mounted(int qfd, int imgfd, bh_error *err)
{
    int m = bh_fs_is_mountpoint(qfd, "root");
    if (m <= 0)
        return m < 0 ? bh_fail_errno(err, "stat root") : 0;
    struct stat rst;
    if (fstatat(qfd, "root", &rst, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_fail_errno(err, "stat root");
    if (loop_dev_serves(rst.st_dev, imgfd))
        return 1;
    /* A host whose loop devices have partitions (max_part) numbers them otherwise. */
    int n = st_image_loop(imgfd);
    if (n >= 0) {
        char dev[32];
        struct stat dst;
        snprintf(dev, sizeof dev, "/dev/loop%d", n);
        if (stat(dev, &dst) == 0 && dst.st_rdev == rst.st_dev)
            return 1;
    }
    return bh_fail(err, EBUSY, "something other than root.img is mounted on root");
}

int st_root_mount(int qfd, bool build, bh_error *err)
{
    _cleanup_close_ int img = openat(qfd, "root.img", O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    if (img < 0)
        return bh_fail_errno(err, "open root.img");
    struct stat st;
    if (fstat(img, &st) < 0 || !S_ISREG(st.st_mode))
        return bh_fail(err, EINVAL, "root.img is not a regular file");
    if ((mkdirat(qfd, "root", 0755) < 0 && errno != EEXIST) || !bh_fs_is_dir(qfd, "root"))
        return bh_fail(err, EINVAL, "root mount point is not a directory");
    int r = root_mounted(qfd, img, err);
    if (r < 0)
        return -1;
    if (r == 1) {
        /* A freeze left by a process that died while copying the image. */
        _cleanup_close_ int top = openat(qfd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (top >= 0)
            (void)ioctl(top, FITHAW, 0);
        return 0;
    }
    char dev[32];
    _cleanup_close_ int loopfd = loop_for(img, dev, sizeof dev, err);
    if (loopfd < 0)
        return bh_prefix(err, "root.img");
    _cleanup_close_ int fs = fsopen("ext4", FSOPEN_CLOEXEC);
    if (fs < 0)
        return bh_fail_errno(err, "fsopen ext4");
    if (fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
        fsconfig(fs, FSCONFIG_SET_STRING, "errors", "remount-ro", 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return bh_fail_errno(err, "mount root.img (%s) as ext4", dev);
    /* A build (debootstrap) runs the new system's programs in a chroot and needs its
     * device nodes: only nosuid then; st_root_seal adds the rest when it is done. */
    _cleanup_close_ int m = fsmount(fs, FSMOUNT_CLOEXEC, build ? MOUNT_ATTR_NOSUID : HOST_ATTRS);
    if (m < 0)
        return bh_fail_errno(err, "fsmount root.img");
    _cleanup_close_ int target = openat(qfd, "root", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (target < 0)
        return bh_fail_errno(err, "open root mount point");
    if (move_mount(m, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return bh_fail_errno(err, "mount root.img on root");
    _cleanup_close_ int top = openat(qfd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (top >= 0)
        (void)ioctl(top, FITHAW, 0);
    return 0;
}

int st_root_seal(int qfd, bh_error *err)
{
    _cleanup_close_ int t = open_tree(qfd, "root", OPEN_TREE_CLOEXEC | AT_SYMLINK_NOFOLLOW);
    if (t < 0)
        return bh_fail_errno(err, "open root mount");
    struct mount_attr a = { .attr_set = HOST_ATTRS };
    if (mount_setattr(t, "", AT_EMPTY_PATH, &a, sizeof a) < 0)
        return bh_fail_errno(err, "seal root mount");
    return 0;
}

int st_root_unmount(int qfd, bh_error *err)
{
    int m = bh_fs_is_mountpoint(qfd, "root");
    if (m <= 0)
        return 0;
    char path[64];
    bh_fs_fd_path(path, sizeof path, qfd, "root");
    if (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) < 0)
        return bh_fail_errno(err, "unmount root");
    return 0;
}

int st_root_image_create(int qfd, uint64_t size, bh_error *err)
{
    if (st_image_create(qfd, "root.img", size, err) < 0)
        return -1;
    if (mkdirat(qfd, "root", 0755) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir root");
    return 0;
}

/* Freezes the mounted root so that a copy of root.img is one consistent state (the
 * template qube's writers wait meanwhile); a freeze left by a crash is thawed by the
 * next st_root_mount. Returns the fd to pass to st_root_thaw, or -1 (not mounted, or
 * cannot freeze: then at least everything written so far is on the image). */
int st_root_freeze(int qfd)
{
    if (bh_fs_is_mountpoint(qfd, "root") != 1)
        return -1;
    int top = openat(qfd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (top < 0)
        return -1;
    if (ioctl(top, FIFREEZE, 0) == 0)
        return top;
    syncfs(top);
    close(top);
    return -1;
}

void st_root_thaw(int fd)
{
    if (fd < 0)
        return;
    (void)ioctl(fd, FITHAW, 0);
    close(fd);
}

/* Copies qube dir sfd's root.img to dfd/dname (frozen while copied if mounted). */
int st_root_copy_image(int sfd, int dfd, const char *dname, bh_error *err)
{
    int frozen = st_root_freeze(sfd);
    int r = bh_fs_copy_file_at(sfd, "root.img", dfd, dname, 0600, err);
    st_root_thaw(frozen);
    return r;
}

/* A root directory tree (legacy layout, or a tree revision) into a new image dfd/dname
 * of size bytes (grown to hold the tree if needed): made, mounted at a temporary mount
 * point, filled with cp -a, unmounted. */
int st_root_image_from_tree(int sdir, const char *sname, int qfd, const char *dname, uint64_t size, bh_error *err)
{
    uint64_t used = 0;
    if (bh_fs_usage_at(sdir, sname, &used, err) < 0)
        return -1;
    /* ext4's own metadata and reserve: leave a quarter free above the tree. */
    if (size < used + used / 4 + (64ULL << 20))
        size = used + used / 4 + (64ULL << 20);
    size = (size + 4095) & ~4095ULL;
    if (st_image_create(qfd, dname, size, err) < 0)
        return -1;
    char mnt[64];
    st_tmpname(mnt, sizeof mnt, "tmp", "rootmnt");
    bh_error e2;
    bh_fs_remove_tree_at(qfd, mnt, &e2);
    if (mkdirat(qfd, mnt, 0700) < 0) {
        unlinkat(qfd, dname, 0);
        return bh_fail_errno(err, "mkdir %s", mnt);
    }
    _cleanup_close_ int img = openat(qfd, dname, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    char dev[32];
    _cleanup_close_ int loopfd = img < 0 ? -1 : loop_for(img, dev, sizeof dev, err);
    _cleanup_close_ int fs = -1, m = -1, target = -1;
    int rc = -1;
    if (loopfd < 0)
        goto out;
    fs = fsopen("ext4", FSOPEN_CLOEXEC);
    if (fs < 0 || fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0) {
        bh_fail_errno(err, "mount new root image");
        goto out;
    }
    m = fsmount(fs, FSMOUNT_CLOEXEC, HOST_ATTRS);
    target = openat(qfd, mnt, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (m < 0 || target < 0 || move_mount(m, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0) {
        bh_fail_errno(err, "mount new root image");
        goto out;
    }
    /* Nothing of ours may hold the mount when it is unmounted below. */
    close(loopfd);
    loopfd = -1;
    close(m);
    m = -1;
    close(target);
    target = -1;
    {
        _cleanup_close_ int top = bh_fs_open_dir(qfd, mnt, err);
        char from[64 + 256], to[64];
        bh_fs_fd_path(from, sizeof from, sdir, sname);
        strncat(from, "/.", sizeof from - strlen(from) - 1);
        bh_fs_fd_path(to, sizeof to, top, NULL);
        const char *cp[] = { "cp", "-a", "--reflink=auto", "--", from, to, NULL };
        const int keep[] = { sdir, top, -1 };
        rc = top < 0 ? -1 : bh_fs_run(cp, keep, -1, err);
        if (rc == 0 && syncfs(top) < 0)
            rc = bh_fail_errno(err, "sync new root image");
    }
    st_failpoint("convert-mounted");
    char path[64 + 64];
    bh_fs_fd_path(path, sizeof path, qfd, mnt);
    if (umount2(path, UMOUNT_NOFOLLOW) < 0 && rc == 0)
        rc = bh_fail_errno(err, "unmount the new root image");
out:
    unlinkat(qfd, mnt, AT_REMOVEDIR);
    if (rc < 0)
        unlinkat(qfd, dname, 0);
    else if (fsync(img) < 0)
        rc = bh_fail_errno(err, "fsync root image");
    return rc < 0 ? bh_prefix(err, "root tree into an image") : 0;
}

/* Ensures the qube dir's root is an image mounted on root/. A root left as a plain
 * directory by an earlier version is converted once: the tree is copied into a new
 * image of root.size (or larger, to hold it), which is renamed into place; only then
 * is the old tree moved aside and deleted. A crash at any step leaves the tree or the
 * complete image (a non-empty unmounted root/ beside root.img is such a leftover). */
int st_root_ensure(int qfd, bh_error *err)
{
    if (!st_root_is_image(qfd)) {
        if (!bh_fs_is_dir(qfd, "root"))
            return bh_fail(err, ENOENT, "no root volume");
        uint64_t size = BH_ROOT_DEFAULT_SIZE;
        _cleanup_free_ char *s = bh_fs_read_small_at(qfd, "root.size", 64);
        if (s)
            size = strtoull(s, NULL, 10);
        if (size < BH_VOLUME_MIN_SIZE || size > BH_VOLUME_MAX_SIZE)
            size = BH_ROOT_DEFAULT_SIZE;
        char tmp[64];
        st_tmpname(tmp, sizeof tmp, "tmp", "root.img");
        unlinkat(qfd, tmp, 0);
        if (st_root_image_from_tree(qfd, "root", qfd, tmp, size, err) < 0)
            return bh_prefix(err, "convert the root tree");
        st_failpoint("convert-before-rename");
        if (renameat(qfd, tmp, qfd, "root.img") < 0) {
            unlinkat(qfd, tmp, 0);
            return bh_fail_errno(err, "convert the root tree");
        }
        fsync(qfd);
    }
    if (bh_fs_is_mountpoint(qfd, "root") != 1 && bh_fs_is_dir(qfd, "root")) {
        /* Unmounted: root/ must be an empty mount point; a tree there is what a
         * conversion left (its copy is in root.img). */
        if (unlinkat(qfd, "root", AT_REMOVEDIR) < 0 && errno != ENOENT) {
            char trash[64];
            st_tmpname(trash, sizeof trash, "trash", "root");
            if (renameat(qfd, "root", qfd, trash) < 0)
                return bh_fail_errno(err, "move the converted root tree aside");
            bh_error e2;
            if (bh_fs_remove_tree_at(qfd, trash, &e2) < 0)
                bh_prefix(&e2, "remove the converted root tree");
        }
    }
    return st_root_mount(qfd, false, err);
}

int st_qube_tree_remove(int parent, const char *name, bh_error *err)
{
    /* A conversion's temporary mount point (.tmp-<pid>-rootmnt) is itself the mount. */
    if (bh_fs_is_mountpoint(parent, name) == 1) {
        char path[64 + 256];
        if (bh_fs_fd_path(path, sizeof path, parent, name) == 0)
            umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
    }
    int fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0) {
        bh_error e;
        if (st_root_unmount(fd, &e) < 0)
            fprintf(stderr, "storage: %s: %s\n", name, e.msg);
        close(fd);
    }
    return bh_fs_remove_tree_at(parent, name, err);
}

/* Waits up to ms for no loop device to serve root.img (its last mount gone). */
static bool image_free_wait(int qfd, int ms)
{
    for (int waited = 0;; waited += 20) {
        if (st_image_in_use(qfd, "root.img") != 1)
            return true;
        if (waited >= ms)
            return false;
        usleep(20 * 1000);
    }
}

int st_root_grow_pending(int qfd, bh_error *err)
{
    _cleanup_free_ char *s = bh_fs_read_small_at(qfd, "root.resize", 64);
    if (!s)
        return 0;
    uint64_t want = strtoull(s, NULL, 10);
    struct stat st;
    if (fstatat(qfd, "root.img", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return bh_fail(err, ENOENT, "root.img missing");
    if (want < (uint64_t)st.st_size)
        want = (uint64_t)st.st_size;
    bh_error online;
    /* Mounted: ext4 grows online (journaled) where the kernel lets us (needs
     * CAP_SYS_RESOURCE). */
    if (bh_fs_is_mountpoint(qfd, "root") == 1 && st_image_grow_online(qfd, "root.img", want, &online) == 0) {
        unlinkat(qfd, "root.resize", 0);
        fsync(qfd);
        return 0;
    }
    /* Offline, on a copy renamed over the image, and only when nothing but our own host
     * mount has it: a running template or app qube keeps its mount, so the wish waits. */
    if (st_root_unmount(qfd, err) < 0)
        return -1;
    int rc = 0;
    if (image_free_wait(qfd, 3000)) {
        char tmp[64];
        st_tmpname(tmp, sizeof tmp, "tmp", "root.img");
        unlinkat(qfd, tmp, 0);
        if (bh_fs_copy_file_at(qfd, "root.img", qfd, tmp, 0600, err) < 0 || st_image_grow(qfd, tmp, want, err) < 0) {
            unlinkat(qfd, tmp, 0);
            rc = -1;
        } else {
            st_failpoint("root-resize-before-rename");
            if (renameat(qfd, tmp, qfd, "root.img") < 0) {
                unlinkat(qfd, tmp, 0);
                rc = bh_fail_errno(err, "replace root.img");
            } else {
                fsync(qfd);
                unlinkat(qfd, "root.resize", 0);
                fsync(qfd);
            }
        }
    }
    bh_error e2;
    if (st_root_mount(qfd, false, rc < 0 ? &e2 : err) < 0 && rc == 0)
        rc = -1;
    return rc < 0 ? bh_prefix(err, "grow root") : 0;
}
