/* ext4 image files: a persistent volume with a size the qube cannot exceed. The image
 * is sparse, so a new 2 GiB private volume takes a few MiB of host disk, and the
 * filesystem inside can never grow the file beyond its size. */
#include "internal.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
#include <dirent.h>
#include <linux/loop.h>
#include <sys/ioctl.h>

static int open_image(int dirfd, const char *name, int flags, bh_error *err)
{
    int fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return bh_fail_errno(err, "open image %s", name);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bh_fail(err, EINVAL, "%s is not a regular file", name);
    }
    return fd;
}

int st_image_create(int dirfd, const char *name, uint64_t size, bh_error *err)
{
    if (size < BH_VOLUME_MIN_SIZE || size > BH_VOLUME_MAX_SIZE)
        return bh_fail(err, EINVAL, "size %" PRIu64 " out of range", size);
    _cleanup_close_ int fd = open_image(dirfd, name, O_RDWR | O_CREAT | O_EXCL, err);
    if (fd < 0)
        return -1;
    if (ftruncate(fd, (off_t)size) < 0) {
        bh_fail_errno(err, "size image");
        goto fail;
    }
    char path[64];
    bh_fs_fd_path(path, sizeof path, fd, NULL);
    /* Made without mounting: mkfs writes the file directly. root_owner=0:0 makes the
     * top directory belong to UID 0 of the qube (the engine idmaps it); -m 1 keeps a
     * small reserve for the qube's root. The file is a fresh hole, which reads as zeros:
     * so the inode tables and the journal need no zeroing (lazy_*_init) and nothing
     * needs discarding, and a new 2 GiB image takes ~1 MiB instead of ~66 MiB. 4 KiB
     * blocks even for small images: their reserved group descriptors let the
     * filesystem grow online (resize while running) far beyond its first size. */
    const char *argv[] = { "mkfs.ext4", "-q", "-F", "-b", "4096", "-m", "1", "-E",
                           "root_owner=0:0,lazy_itable_init=1,lazy_journal_init=1,nodiscard", "--", path, NULL };
    const int keep[] = { fd, -1 };
    if (bh_fs_run(argv, keep, -1, err) < 0)
        goto fail;
    if (fsync(fd) < 0) {
        bh_fail_errno(err, "fsync image");
        goto fail;
    }
    return 0;
fail:
    unlinkat(dirfd, name, 0);
    return bh_prefix(err, "create image %s", name);
}

int st_image_grow(int dirfd, const char *name, uint64_t size, bh_error *err)
{
    if (size > BH_VOLUME_MAX_SIZE)
        return bh_fail(err, EINVAL, "size %" PRIu64 " too large", size);
    _cleanup_close_ int fd = open_image(dirfd, name, O_RDWR, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return bh_fail_errno(err, "stat image");
    if (size < (uint64_t)st.st_size)
        return bh_fail(err, EINVAL, "shrinking a volume is not supported");
    if (ftruncate(fd, (off_t)size) < 0)
        return bh_fail_errno(err, "grow image file");
    char path[64], sz[32];
    bh_fs_fd_path(path, sizeof path, fd, NULL);
    snprintf(sz, sizeof sz, "%" PRIu64 "K", size / 1024);
    const int keep[] = { fd, -1 };
    /* resize2fs wants a freshly checked filesystem; e2fsck -p exits 1 when it fixed
     * something harmless, which is still a success. */
    const char *fsck[] = { "e2fsck", "-f", "-p", "--", path, NULL };
    int code = bh_fs_run_code(fsck, keep, -1, err);
    if (code < 0 || code > 1)
        return bh_prefix(err, "check image %s (e2fsck %d)", name, code);
    const char *rs[] = { "resize2fs", "--", path, sz, NULL };
    if (bh_fs_run(rs, keep, -1, err) < 0)
        return bh_prefix(err, "resize image %s", name);
    if (fsync(fd) < 0)
        return bh_fail_errno(err, "fsync image");
    return 0;
}

/* The loop device (by number) whose backing file is the open image fd, or -1. Matched
 * by device and inode, not by path. Only bound devices are opened: sysfs has
 * loopN/loop/ only while a file backs the device, and a host keeps every loop device it
 * ever made (hundreds after many qubes), whose opens would cost milliseconds per scan. */
/* Whether loop device n is bound to the file of st. */
static bool loop_backs(int n, const struct stat *st)
{
    char dev[32];
    snprintf(dev, sizeof dev, "/dev/loop%d", n);
    _cleanup_close_ int fd = open(dev, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct loop_info64 li;
    if (ioctl(fd, LOOP_GET_STATUS64, &li) < 0)
        return false;
    return li.lo_inode == st->st_ino && li.lo_device == st->st_dev;
}

/* Bound loop devices from /proc/partitions, which lists a disk only while it has a size
 * (an unbound loop device has none): one read instead of a sysfs lookup for each of the
 * host's loop devices (hundreds where many qubes ran; the scan ran several times per
 * start). -2: /proc/partitions unreadable (then sysfs is asked). A loop device bound to
 * an empty file has no size either; no image of ours is empty while a qube uses it. */
static int loop_from_partitions(const struct stat *st)
{
    FILE *f = fopen("/proc/partitions", "re");
    if (!f)
        return -2;
    char line[256];
    int found = -1;
    while (found < 0 && fgets(line, sizeof line, f)) {
        unsigned maj, min;
        unsigned long long blocks;
        char name[64];
        int n;
        char tail;
        if (sscanf(line, " %u %u %llu %63s", &maj, &min, &blocks, name) != 4)
            continue;
        if (sscanf(name, "loop%d%c", &n, &tail) != 1 || n < 0)
            continue;
        if (loop_backs(n, st))
            found = n;
    }
    bool err = ferror(f);
    fclose(f);
    return err && found < 0 ? -2 : found;
}

int st_image_loop(int imgfd)
{
    struct stat st;
    if (fstat(imgfd, &st) < 0)
        return -1;
    int n = loop_from_partitions(&st);
    if (n != -2)
        return n;
    _cleanup_closedir_ DIR *d = opendir("/sys/block");
    if (!d)
        return -1;
    struct dirent *e;
    while ((e = readdir(d))) {
        char tail;
        if (sscanf(e->d_name, "loop%d%c", &n, &tail) != 1 || n < 0)
            continue;
        char bound[64];
        snprintf(bound, sizeof bound, "loop%d/loop", n);
        if (faccessat(dirfd(d), bound, F_OK, AT_EACCESS) < 0 && errno == ENOENT)
            continue; /* unbound (any other error: look at the device itself) */
        if (loop_backs(n, &st))
            return n;
    }
    return -1;
}

int st_image_grow_online(int dirfd, const char *name, uint64_t size, bh_error *err)
{
    _cleanup_close_ int fd = open_image(dirfd, name, O_RDWR, err);
    if (fd < 0)
        return -1;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return bh_fail_errno(err, "stat image");
    if (size < (uint64_t)st.st_size)
        return bh_fail(err, EINVAL, "shrinking a volume is not supported");
    int n = st_image_loop(fd);
    if (n < 0)
        return bh_fail(err, EBUSY, "image %s is in use but not through a loop device we can find", name);
    char dev[32];
    snprintf(dev, sizeof dev, "/dev/loop%d", n);
    _cleanup_close_ int lfd = open(dev, O_RDONLY | O_CLOEXEC);
    if (lfd < 0)
        return bh_fail_errno(err, "open %s", dev);
    /* A longer file is harmless to the filesystem inside until it is told; ext4 then
     * grows online through its journal (EXT4_IOC_RESIZE_FS), so a crash at any point
     * leaves a consistent filesystem of the old or the new size. */
    if (ftruncate(fd, (off_t)size) < 0 || fsync(fd) < 0)
        return bh_fail_errno(err, "grow image file");
    if (ioctl(lfd, LOOP_SET_CAPACITY, 0) < 0)
        return bh_fail_errno(err, "refresh %s capacity", dev);
    const char *rs[] = { "resize2fs", dev, NULL };
    if (bh_fs_run(rs, NULL, -1, err) < 0)
        return bh_prefix(err, "online resize of %s", name);
    return 0;
}

int st_image_in_use(int dirfd, const char *name)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return 0;
    return st_image_loop(fd) >= 0;
}
