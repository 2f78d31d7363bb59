#include "fsutil.h"
#include "cleanup.h"
#include "io.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <linux/close_range.h>
#include <sys/sysmacros.h>

int bh_fs_fd_path(char *buf, size_t n, int fd, const char *name)
{
    int r = name ? snprintf(buf, n, "/proc/self/fd/%d/%s", fd, name) : snprintf(buf, n, "/proc/self/fd/%d", fd);
    if (r < 0 || (size_t)r >= n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int bh_fs_open_dir(int dirfd, const char *name, bh_error *err)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return bh_fail_errno(err, "open directory %s", name);
    return fd;
}

int bh_fs_mkdir_open(int dirfd, const char *name, mode_t mode, bh_error *err)
{
    if (mkdirat(dirfd, name, mode) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", name);
    return bh_fs_open_dir(dirfd, name, err);
}

int bh_fs_exists(int dirfd, const char *name)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 1;
    return errno == ENOENT ? 0 : -1;
}

bool bh_fs_is_dir(int dirfd, const char *name)
{
    struct stat st;
    return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(st.st_mode);
}

int bh_fs_fsync_dir(int dirfd)
{
    return fsync(dirfd);
}

static int write_replace(int dirfd, const char *name, const void *data, size_t len, mode_t mode, bool durable,
                         bh_error *err)
{
    char tmp[300];
    if ((size_t)snprintf(tmp, sizeof tmp, ".tmp-%d-%s", (int)getpid(), name) >= sizeof tmp)
        return bh_fail(err, ENAMETOOLONG, "name too long: %s", name);
    unlinkat(dirfd, tmp, 0);
    _cleanup_close_ int fd = openat(dirfd, tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fd < 0)
        return bh_fail_errno(err, "create %s", tmp);
    if (bh_write_all(fd, data, len) < 0 || (durable && fsync(fd) < 0) || renameat(dirfd, tmp, dirfd, name) < 0) {
        bh_fail_errno(err, "write %s", name);
        unlinkat(dirfd, tmp, 0);
        return -1;
    }
    if (durable)
        fsync(dirfd);
    return 0;
}

int bh_fs_write_atomic_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, bh_error *err)
{
    return write_replace(dirfd, name, data, len, mode, true, err);
}

int bh_fs_write_runtime_at(int dirfd, const char *name, const void *data, size_t len, mode_t mode, bh_error *err)
{
    return write_replace(dirfd, name, data, len, mode, false, err);
}

char *bh_fs_read_small_at(int dirfd, const char *name, size_t limit)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return NULL;
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > limit) {
        errno = EINVAL;
        return NULL;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    if (!buf)
        return NULL;
    ssize_t n = bh_read_all(fd, buf, (size_t)st.st_size);
    if (n < 0) {
        free(buf);
        return NULL;
    }
    while (n > 0 && buf[n - 1] == '\n')
        n--;
    buf[n] = '\0';
    return buf;
}

static int copy_data(int in, int out, bool durable, bh_error *err)
{
    struct stat st;
    if (fstat(in, &st) < 0)
        return bh_fail_errno(err, "stat source");
    /* A reflink shares the blocks (btrfs, xfs): instant and crash-safe by construction. */
    if (ioctl(out, FICLONE, in) == 0)
        return durable && fsync(out) < 0 ? bh_fail_errno(err, "fsync copy") : 0;
    if (ftruncate(out, 0) < 0)
        return bh_fail_errno(err, "truncate copy");
    off_t pos = 0;
    while (pos < st.st_size) {
        off_t data = lseek(in, pos, SEEK_DATA);
        if (data < 0) {
            if (errno == ENXIO)
                break; /* only a hole is left */
            return bh_fail_errno(err, "seek data");
        }
        off_t hole = lseek(in, data, SEEK_HOLE);
        if (hole < 0)
            return bh_fail_errno(err, "seek hole");
        off_t ioff = data, ooff = data;
        bool plain = false; /* copy_file_range refused: read and write ourselves */
        while (ioff < hole) {
            ssize_t n;
            if (!plain) {
                n = copy_file_range(in, &ioff, out, &ooff, (size_t)(hole - ioff), 0);
                if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == EOPNOTSUPP || errno == ENOSYS)) {
                    plain = true;
                    continue;
                }
            } else {
                static char block[1 << 16];
                size_t want = (size_t)(hole - ioff) < sizeof block ? (size_t)(hole - ioff) : sizeof block;
                n = pread(in, block, want, ioff);
                if (n > 0) {
                    ssize_t done = 0;
                    while (done < n) {
                        ssize_t w = pwrite(out, block + done, (size_t)(n - done), ooff + done);
                        if (w < 0 && errno != EINTR)
                            return bh_fail_errno(err, "write copy");
                        if (w > 0)
                            done += w;
                    }
                    ioff += n;
                    ooff += n;
                }
            }
            if (n < 0) {
                if (errno == EINTR)
                    continue;
                return bh_fail_errno(err, "copy data");
            }
            if (n == 0)
                break; /* source shrank under us */
        }
        pos = hole;
    }
    if (ftruncate(out, st.st_size) < 0)
        return bh_fail_errno(err, "set copy size");
    if (durable && fsync(out) < 0)
        return bh_fail_errno(err, "fsync copy");
    return 0;
}

int bh_fs_copy_data(int in, int out, bh_error *err)
{
    return copy_data(in, out, true, err);
}

static int copy_file_at(int sdir, const char *sname, int ddir, const char *dname, mode_t mode, bool durable,
                        bh_error *err)
{
    _cleanup_close_ int in = openat(sdir, sname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    if (in < 0)
        return bh_fail_errno(err, "open %s", sname);
    struct stat st;
    if (fstat(in, &st) < 0)
        return bh_fail_errno(err, "stat %s", sname);
    if (!S_ISREG(st.st_mode))
        return bh_fail(err, EINVAL, "%s is not a regular file", sname);
    _cleanup_close_ int out = openat(ddir, dname, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode);
    if (out < 0)
        return bh_fail_errno(err, "create %s", dname);
    if (copy_data(in, out, durable, err) < 0) {
        unlinkat(ddir, dname, 0);
        return bh_prefix(err, "copy %s", sname);
    }
    return 0;
}

int bh_fs_copy_file_at(int sdir, const char *sname, int ddir, const char *dname, mode_t mode, bh_error *err)
{
    return copy_file_at(sdir, sname, ddir, dname, mode, true, err);
}

int bh_fs_copy_file_throwaway_at(int sdir, const char *sname, int ddir, const char *dname, mode_t mode,
                                 bh_error *err)
{
    return copy_file_at(sdir, sname, ddir, dname, mode, false, err);
}

int bh_fs_copy_tree_at(int sdir, const char *sname, int ddir, const char *dname, bh_error *err)
{
    struct stat st;
    if (fstatat(sdir, sname, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_fail_errno(err, "stat %s", sname);
    if (!S_ISDIR(st.st_mode))
        return bh_fail(err, EINVAL, "%s is not a directory", sname);
    if (bh_fs_exists(ddir, dname) != 0)
        return bh_fail(err, EEXIST, "%s already exists", dname);
    char src[64 + 256], dst[64 + 256];
    if (bh_fs_fd_path(src, sizeof src, sdir, sname) < 0 || bh_fs_fd_path(dst, sizeof dst, ddir, dname) < 0)
        return bh_fail_errno(err, "path");
    /* -a never dereferences symlinks inside the source; dst is new, so nothing in the
     * source can make cp write outside it. */
    const char *argv[] = { "cp", "-a", "--reflink=auto", "--sparse=always", "--", src, dst, NULL };
    const int keep[] = { sdir, ddir, -1 };
    if (bh_fs_run(argv, keep, -1, err) < 0)
        return bh_prefix(err, "copy tree %s", sname);
    if (syncfs(ddir) < 0)
        return bh_fail_errno(err, "sync");
    return 0;
}

/* The common case without a child process (a fork and exec of rm cost more than the
 * removal; a used disposable's volumes are a few files and an empty mount point): a
 * directory holding only non-directories and empty directories. Nothing is followed
 * (unlinkat), and an entry that is a mount point or a non-empty directory makes it
 * give up (-1), leaving the rest to rm, which handles those. */
static int remove_shallow(int dirfd, const char *name)
{
    int fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    int ret = 0;
    struct dirent *e;
    while (ret == 0 && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (unlinkat(fd, e->d_name, 0) == 0)
            continue;
        if ((errno != EISDIR && errno != EPERM) || unlinkat(fd, e->d_name, AT_REMOVEDIR) < 0)
            ret = -1;
    }
    closedir(d);
    if (ret == 0 && unlinkat(dirfd, name, AT_REMOVEDIR) < 0)
        ret = -1;
    return ret;
}

int bh_fs_remove_tree_at(int dirfd, const char *name, bh_error *err)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : bh_fail_errno(err, "stat %s", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(dirfd, name, 0) < 0 && errno != ENOENT)
            return bh_fail_errno(err, "unlink %s", name);
        return 0;
    }
    if (remove_shallow(dirfd, name) == 0)
        return 0;
    char path[64 + 256];
    if (bh_fs_fd_path(path, sizeof path, dirfd, name) < 0)
        return bh_fail_errno(err, "path");
    /* rm walks with openat/O_NOFOLLOW (fts physical); --one-file-system keeps it out of
     * a volume a running qube still has mounted. */
    const char *argv[] = { "rm", "-rf", "--one-file-system", "--", path, NULL };
    const int keep[] = { dirfd, -1 };
    if (bh_fs_run(argv, keep, -1, err) < 0)
        return bh_prefix(err, "remove %s", name);
    return 0;
}

int bh_fs_usage_at(int dirfd, const char *name, uint64_t *bytes, bh_error *err)
{
    struct stat st;
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_fail_errno(err, "stat %s", name);
    if (!S_ISDIR(st.st_mode)) {
        *bytes = (uint64_t)st.st_blocks * 512;
        return 0;
    }
    char path[64 + 256];
    if (bh_fs_fd_path(path, sizeof path, dirfd, name) < 0)
        return bh_fail_errno(err, "path");
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return bh_fail_errno(err, "pipe");
    _cleanup_close_ int rd = pfd[0];
    const char *argv[] = { "du", "-s", "-x", "-B1", "--", path, NULL };
    const int keep[] = { dirfd, -1 };
    int r = bh_fs_run(argv, keep, pfd[1], err);
    close(pfd[1]);
    if (r < 0)
        return bh_prefix(err, "usage of %s", name);
    char buf[128];
    ssize_t n = bh_read_all(rd, buf, sizeof buf - 1);
    if (n <= 0)
        return bh_fail(err, EIO, "du printed nothing");
    buf[n] = '\0';
    char *end;
    errno = 0;
    unsigned long long v = strtoull(buf, &end, 10);
    if (errno || end == buf)
        return bh_fail(err, EIO, "du output unreadable");
    *bytes = v;
    return 0;
}

int bh_fs_is_mountpoint(int dirfd, const char *name)
{
    struct statx sx;
    if (statx(dirfd, name, AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS, &sx) < 0)
        return errno == ENOENT ? 0 : -1;
    if (sx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT)
        return (sx.stx_attributes & STATX_ATTR_MOUNT_ROOT) ? 1 : 0;
    struct stat parent;
    if (fstat(dirfd, &parent) < 0)
        return -1;
    return makedev(sx.stx_dev_major, sx.stx_dev_minor) != parent.st_dev;
}

void bh_fs_exec_system(const char *const argv[], char *const envp[])
{
    /* Only the system's own directories: never the caller's PATH. */
    static const char *const dirs[] = { "/usr/sbin", "/usr/bin", "/sbin", "/bin" };
    for (size_t i = 0; i < sizeof dirs / sizeof dirs[0]; i++) {
        char path[256];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dirs[i], argv[0]) >= sizeof path)
            return;
        execve(path, (char *const *)argv, envp);
    }
}

int bh_fs_run(const char *const argv[], const int *keep, int out_fd, bh_error *err)
{
    int code = bh_fs_run_code(argv, keep, out_fd, err);
    if (code < 0)
        return -1;
    if (code != 0) {
        bh_prefix(err, "%s exited with %d", argv[0], code);
        return -1;
    }
    return 0;
}

int bh_fs_run_code(const char *const argv[], const int *keep, int out_fd, bh_error *err)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return bh_fail_errno(err, "pipe");
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return bh_fail_errno(err, "fork");
    }
    if (pid == 0) {
        int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(out_fd >= 0 ? out_fd : pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
            _exit(127);
        /* Only what the tool needs crosses exec: nothing else of the caller leaks. */
        if (close_range(3, ~0U, CLOSE_RANGE_CLOEXEC) < 0)
            _exit(127);
        for (const int *p = keep; p && *p >= 0; p++)
            fcntl(*p, F_SETFD, 0);
        signal(SIGPIPE, SIG_DFL);
        char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
        bh_fs_exec_system(argv, envp);
        _exit(127);
    }
    close(pfd[1]);
    char tail[400];
    size_t tl = 0;
    char chunk[4096];
    for (;;) {
        ssize_t n = read(pfd[0], chunk, sizeof chunk);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        /* Keep the last bytes only: the error is usually at the end. */
        for (ssize_t i = 0; i < n; i++) {
            if (tl == sizeof tail - 1) {
                memmove(tail, tail + 1, tl - 1);
                tl--;
            }
            tail[tl++] = chunk[i];
        }
    }
    close(pfd[0]);
    tail[tl] = '\0';
    while (tl > 0 && (tail[tl - 1] == '\n' || tail[tl - 1] == ' '))
        tail[--tl] = '\0';
    for (size_t i = 0; i < tl; i++)
        if (tail[i] == '\n')
            tail[i] = ' ';
    int status;
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return bh_fail_errno(err, "wait %s", argv[0]);
    }
    if (WIFEXITED(status)) {
        bh_fail(err, EIO, "%s", tail);
        return WEXITSTATUS(status);
    }
    return bh_fail(err, EIO, "%s killed by signal %d", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}
