/* Importing data into a volume, in Qubes' two steps (qubes/storage/file.py
 * import_data / import_data_end): begin makes a sparse file of the size next to the
 * volume and hands its path to the writer (Qubes' admin.vm.volume.Import script runs
 * dd into it); end checks what was written and renames it over the volume, or deletes
 * it. Clear is an import of nothing: a fresh, empty volume of the same size.
 *
 * Only a private volume can take data here: an app qube's root is its template's
 * (Qubes: not save_on_stop), a template's root is a directory tree, volatile is tmpfs.
 * In the ns engine the host kernel mounts a private image, so an imported image must
 * pass `e2fsck -f -n` (a clean ext4 filesystem) before it replaces the volume. */
#include "internal.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#define IMPORT_NAME "private-import"

static int check_vol(const struct bh_storage_qube *q, const char *vol, bh_error *err)
{
    if (!strcmp(vol, "private")) {
        if (q->klass && !strcmp(q->klass, "DispVM"))
            return bh_fail(err, EINVAL, "a disposable's private follows its disposable template");
        return 0;
    }
    if (!strcmp(vol, "root") && q->klass && st_own_root(q->klass))
        return bh_fail(err, EINVAL,
                       "the root volume of %s is a directory tree, not an image: build templates with qvm-template",
                       q->name);
    return bh_fail(err, EINVAL, "Can not import into save_on_stop=False volume %s:%s", q->name, vol);
}

static int open_qube(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, bh_error *err)
{
    if (st_validate(q, err) < 0 || check_vol(q, vol, err) < 0)
        return -1;
    int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    if (st_private_in_use(qfd)) {
        close(qfd);
        return bh_fail(err, EBUSY, "private volume of %s is in use", q->name);
    }
    return qfd;
}

int bh_volume_import_begin(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, uint64_t size,
                           char *path, size_t n, uint64_t *size_out, bh_error *err)
{
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    _cleanup_close_ int qfd = open_qube(p, q, vol, err);
    if (qfd < 0)
        return -1;
    if (!size) {
        struct stat st;
        if (fstatat(qfd, "private.img", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            return bh_fail(err, ENOENT, "private volume of %s is missing", q->name);
        size = (uint64_t)st.st_size;
    }
    if (size < BH_VOLUME_MIN_SIZE || size > BH_VOLUME_MAX_SIZE)
        return bh_fail(err, EINVAL, "size %" PRIu64 " out of range (%llu..%llu)", size,
                       (unsigned long long)BH_VOLUME_MIN_SIZE, (unsigned long long)BH_VOLUME_MAX_SIZE);
    char tmp[96];
    st_tmpname(tmp, sizeof tmp, "tmp", IMPORT_NAME);
    (void)unlinkat(qfd, tmp, 0); /* an earlier unfinished import of this daemon */
    _cleanup_close_ int fd = openat(qfd, tmp, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return bh_fail_errno(err, "create %s", tmp);
    if (ftruncate(fd, (off_t)size) < 0) {
        int e = errno;
        (void)unlinkat(qfd, tmp, 0);
        errno = e;
        return bh_fail_errno(err, "size %s", tmp);
    }
    int r = snprintf(path, n, "%s/qubes/%s/%s", bh_pool_path(p), q->name, tmp);
    if (r < 0 || (size_t)r >= n || strchr(path, ' ')) {
        (void)unlinkat(qfd, tmp, 0);
        return bh_fail(err, ENAMETOOLONG, "Path contains whitespace or is too long");
    }
    *size_out = size;
    return 0;
}

/* The imported image may replace the volume only as a clean ext4 filesystem. */
static int check_ext4(int dirfd, const char *name, bh_error *err)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode))
        return bh_fail(err, EINVAL, "the imported data is gone");
    unsigned char magic[2];
    if (pread(fd, magic, 2, 1080) != 2 || magic[0] != 0x53 || magic[1] != 0xEF)
        return bh_fail(err, EINVAL, "the imported data is not an ext4 filesystem");
    char path[64];
    bh_fs_fd_path(path, sizeof path, fd, NULL);
    const int keep[] = { fd, -1 };
    const char *fsck[] = { "e2fsck", "-f", "-n", "--", path, NULL };
    bh_error e = { 0 };
    int code = bh_fs_run_code(fsck, keep, -1, &e);
    if (code != 0)
        return bh_fail(err, EINVAL, "the imported ext4 filesystem is not clean (e2fsck -f -n: %d)", code);
    return 0;
}

int bh_volume_import_end(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, bool ok, bh_error *err)
{
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    if (st_validate(q, err) < 0 || check_vol(q, vol, err) < 0)
        return -1;
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    char tmp[96];
    st_tmpname(tmp, sizeof tmp, "tmp", IMPORT_NAME);
    if (bh_fs_exists(qfd, tmp) != 1)
        return bh_fail(err, ENOENT, "No import in progress for %s:%s", q->name, vol);
    if (!ok) {
        (void)unlinkat(qfd, tmp, 0);
        return 0;
    }
    if (st_private_in_use(qfd)) {
        (void)unlinkat(qfd, tmp, 0);
        return bh_fail(err, EBUSY, "private volume of %s is in use", q->name);
    }
    if (check_ext4(qfd, tmp, err) < 0) {
        (void)unlinkat(qfd, tmp, 0);
        return -1;
    }
    {
        _cleanup_close_ int fd = openat(qfd, tmp, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || fsync(fd) < 0)
            return bh_fail_errno(err, "fsync %s", tmp);
    }
    st_failpoint("import-before-rename");
    if (renameat(qfd, tmp, qfd, "private.img") < 0)
        return bh_fail_errno(err, "rename the import over private.img");
    (void)unlinkat(qfd, "private.resize", 0); /* a pending grow was for the old image */
    return bh_fs_fsync_dir(qfd);
}

int bh_volume_clear(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, bh_error *err)
{
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    _cleanup_close_ int qfd = open_qube(p, q, vol, err);
    if (qfd < 0)
        return -1;
    struct stat st;
    if (fstatat(qfd, "private.img", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return bh_fail(err, ENOENT, "private volume of %s is missing", q->name);
    char tmp[96];
    st_tmpname(tmp, sizeof tmp, "tmp", "private-clear");
    (void)unlinkat(qfd, tmp, 0);
    if (st_image_create(qfd, tmp, (uint64_t)st.st_size, err) < 0) {
        (void)unlinkat(qfd, tmp, 0);
        return -1;
    }
    if (renameat(qfd, tmp, qfd, "private.img") < 0)
        return bh_fail_errno(err, "rename the cleared image over private.img");
    (void)unlinkat(qfd, "private.resize", 0);
    return bh_fs_fsync_dir(qfd);
}
