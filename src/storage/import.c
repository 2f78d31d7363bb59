/* Importing data into a volume, in Qubes' two steps (qubes/storage/file.py
 * import_data / import_data_end): begin makes a sparse file of the size next to the
 * volume and hands its path to the writer (Qubes' admin.vm.volume.Import script runs
 * dd into it); end checks what was written and renames it over the volume, or deletes
 * it. Clear is an import of nothing: a fresh, empty volume of the same size.
 *
 * Only a private volume can take data here: an app qube's root is its template's
 * (Qubes: not save_on_stop), a template's root is a directory tree, volatile is tmpfs.
 * In the ns engine the host kernel mounts a private image, so an imported image must
 * pass `e2fsck -f -n` (a clean ext4 filesystem) before it replaces the volume. The
 * image may come from a qube (admin.vm.volume.Import over qrexec), so e2fsck, a large
 * parser of those bytes, runs confined: an unprivileged host identity of its own, no
 * new privileges, no network, bounded memory, CPU and wall time (check_ext4). */
#include "internal.h"
#include "cleanup.h"
#include "confine.h"
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* The host UID/GID e2fsck runs as: 2^19 - 1, just below qrexec's unprivileged
 * identities (2^19 + qid) and far below every qube's range (from 2^20): nothing else
 * runs as it. */
#define BH_FSCK_ID ((1u << 19) - 1)
#define BH_FSCK_MEM (1ull << 30)   /* address space */
#define BH_FSCK_CPU_S 60           /* CPU seconds */
#define BH_FSCK_WALL_S 120         /* then SIGALRM ends it */

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

/* The temporary file of one import: the importer's token in its name, so two imports
 * into one volume at once each write their own file and neither renames the other's
 * half-written data over the volume. */
static void import_tmpname(char *buf, size_t n, long importer)
{
    char what[64];
    snprintf(what, sizeof what, "%s-%ld", IMPORT_NAME, importer);
    st_tmpname(buf, n, "tmp", what);
}

int bh_volume_import_begin(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, long importer,
                           uint64_t size,
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
    import_tmpname(tmp, sizeof tmp, importer);
    (void)unlinkat(qfd, tmp, 0); /* an earlier unfinished import by the same importer */
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

/* Runs `e2fsck -f -n` on fd as BH_FSCK_ID with the limits above; its exit code, or
 * 128+signal (a limit ended it), or -1. */
static int run_fsck_confined(int fd)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0 || dup2(fd, 3) < 0)
            _exit(125);
        if (close_range(4, ~0U, 0) < 0)
            _exit(125);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGALRM, SIG_DFL);
        static const struct bh_rlimit limits[] = {
            { RLIMIT_AS, BH_FSCK_MEM }, { RLIMIT_CPU, BH_FSCK_CPU_S }, { RLIMIT_CORE, 0 }
        };
        if (bh_confine_rlimits(limits, sizeof limits / sizeof *limits, NULL) < 0)
            _exit(125);
        if (unshare(CLONE_NEWNET | CLONE_NEWIPC) < 0) /* no network, no shared IPC */
            _exit(125);
        if (bh_confine_ids(BH_FSCK_ID, BH_FSCK_ID, NULL) < 0 || bh_confine_no_new_privs(NULL) < 0 ||
            bh_confine_undumpable(NULL) < 0)
            _exit(125);
        alarm(BH_FSCK_WALL_S); /* survives exec: a stalled check ends */
        const char *argv[] = { "e2fsck", "-f", "-n", "--", "/proc/self/fd/3", NULL };
        char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", NULL };
        bh_fs_exec_system(argv, envp);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
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
    /* The confined e2fsck reopens the image through the fd (its directory is root's
     * alone); for that the file is readable to it while the check runs. */
    if (fchmod(fd, 0644) < 0)
        return bh_fail_errno(err, "chmod the imported data");
    int code = run_fsck_confined(fd);
    if (fchmod(fd, 0600) < 0)
        return bh_fail_errno(err, "chmod the imported data");
    if (code != 0)
        return bh_fail(err, EINVAL, "the imported ext4 filesystem is not clean (e2fsck -f -n: %d)", code);
    return 0;
}

int bh_volume_import_end(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, long importer, bool ok,
                         bh_error *err)
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
    import_tmpname(tmp, sizeof tmp, importer);
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
