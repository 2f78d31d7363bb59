/* The `file` pool: opening it, its lock, name rules and crash leftovers. */
#include "internal.h"
#include "cleanup.h"
#include "names.h"
#include "io.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <inttypes.h>
#include <linux/fs.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/statvfs.h>
#include <sys/stat.h>
#include <unistd.h>

const char *const bh_volume_names[5] = { "root", "private", "volatile", "kernel", NULL };

const char *bh_pool_path(const struct bh_pool *p)
{
    return p->path;
}

bool st_own_root(const char *klass)
{
    return klass && (!strcmp(klass, "TemplateVM") || !strcmp(klass, "StandaloneVM"));
}

bool st_shared_root(const char *klass)
{
    return klass && (!strcmp(klass, "AppVM") || !strcmp(klass, "DispVM"));
}

static int check_name(const char *what, const char *name, bh_error *err)
{
    const char *why;
    if (!name)
        return bh_fail(err, EINVAL, "%s missing", what);
    if (!bh_qube_name_valid(name, &why))
        return bh_fail(err, EINVAL, "invalid %s name: %s", what, why);
    return 0;
}

int st_validate(const struct bh_storage_qube *q, bh_error *err)
{
    if (check_name("qube", q->name, err) < 0)
        return -1;
    if (!st_own_root(q->klass) && !st_shared_root(q->klass))
        return bh_fail(err, EINVAL, "unknown qube class %s", q->klass ? q->klass : "(none)");
    if (st_shared_root(q->klass) && check_name("template", q->template_name, err) < 0)
        return -1;
    if (q->template_name && check_name("template", q->template_name, err) < 0)
        return -1;
    if (!strcmp(q->klass, "DispVM") && check_name("disposable template", q->dispvm_template, err) < 0)
        return -1;
    if (q->revisions_to_keep < 0 || q->revisions_to_keep > 1000)
        return bh_fail(err, EINVAL, "revisions_to_keep out of range");
    return 0;
}

int st_qube_dir(struct bh_pool *p, const char *name, bh_error *err)
{
    if (check_name("qube", name, err) < 0)
        return -1;
    int fd = openat(p->qubes_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return bh_fail(err, ENOENT, "qube %s has no volumes in pool %s", name, p->name);
        return bh_fail_errno(err, "open volumes of %s", name);
    }
    return fd;
}

void st_tmpname(char *buf, size_t n, const char *kind, const char *what)
{
    snprintf(buf, n, ".%s-%d-%s", kind, (int)getpid(), what);
}

bool st_private_in_use(int qfd)
{
    return bh_fs_is_mountpoint(qfd, "private-mnt") == 1 || st_image_in_use(qfd, "private.img") == 1;
}

bool st_private_wait_free(int qfd, int ms)
{
    for (int waited = 0;; waited += 20) {
        if (!st_private_in_use(qfd))
            return true;
        if (waited >= ms)
            return false;
        usleep(20 * 1000);
    }
}

int st_lock(struct bh_pool *p, bh_error *err)
{
    int fd = openat(p->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return bh_fail_errno(err, "open pool for locking");
    while (flock(fd, LOCK_EX) < 0) {
        if (errno != EINTR) {
            close(fd);
            return bh_fail_errno(err, "lock pool");
        }
    }
    return fd;
}

/* ".tmp-<pid>-x" / ".trash-<pid>-x" whose pid is gone: a crash's leftover. */
static bool is_dead_leftover(const char *n)
{
    const char *rest;
    if (!strncmp(n, ".tmp-", 5))
        rest = n + 5;
    else if (!strncmp(n, ".trash-", 7))
        rest = n + 7;
    else
        return false;
    char *end;
    long pid = strtol(rest, &end, 10);
    if (end == rest || *end != '-' || pid <= 0)
        return false;
    if (pid == getpid())
        return false;
    return kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

void st_sweep(int dirfd)
{
    int dup = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0)
        return;
    _cleanup_closedir_ DIR *d = fdopendir(dup);
    if (!d) {
        close(dup);
        return;
    }
    struct dirent *e;
    bool removed = false;
    while ((e = readdir(d))) {
        if (is_dead_leftover(e->d_name)) {
            bh_error err;
            if (st_qube_tree_remove(dirfd, e->d_name, &err) < 0)
                fprintf(stderr, "storage: leftover %s: %s\n", e->d_name, err.msg);
            removed = true;
        }
    }
    if (removed)
        fsync(dirfd);
}

/* After a crash: temporaries in qubes/, in each qube dir and its revision dirs. */
static void sweep_pool(struct bh_pool *p)
{
    st_sweep(p->qubes_fd);
    int dup = openat(p->qubes_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0)
        return;
    _cleanup_closedir_ DIR *d = fdopendir(dup);
    if (!d) {
        close(dup);
        return;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!bh_qube_name_valid(e->d_name, NULL))
            continue;
        _cleanup_close_ int q = bh_fs_open_dir(p->qubes_fd, e->d_name, NULL);
        if (q < 0)
            continue;
        st_sweep(q);
        _cleanup_close_ int revs = bh_fs_open_dir(q, "revisions", NULL);
        if (revs < 0)
            continue;
        for (int i = 0; bh_volume_names[i]; i++) {
            _cleanup_close_ int v = bh_fs_open_dir(revs, bh_volume_names[i], NULL);
            if (v >= 0)
                st_sweep(v);
        }
    }
}

/* Tries a reflink between two scratch files in the pool. */
static bool probe_reflink(int pfd)
{
    char a[64], b[64];
    st_tmpname(a, sizeof a, "tmp", "reflink-a");
    st_tmpname(b, sizeof b, "tmp", "reflink-b");
    _cleanup_close_ int fa = openat(pfd, a, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    _cleanup_close_ int fb = openat(pfd, b, O_RDWR | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
    bool ok = fa >= 0 && fb >= 0 && bh_write_all(fa, "x", 1) == 0 && ioctl(fb, FICLONE, fa) == 0;
    unlinkat(pfd, a, 0);
    unlinkat(pfd, b, 0);
    return ok;
}

int bh_pool_default_revisions(const struct bh_pool *p)
{
    /* Set by admin.pool.Set.revisions_to_keep (a small file in the pool directory). */
    _cleanup_free_ char *set = bh_fs_read_small_at(p->fd, "revisions_to_keep", 16);
    if (set) {
        char *end;
        long v = strtol(set, &end, 10);
        if (end != set && (*end == '\n' || !*end) && v >= -1 && v <= 1000000)
            return (int)v;
    }
    return p->reflink ? 1 : 0;
}

int bh_pool_set_default_revisions(struct bh_pool *p, int keep, bh_error *err)
{
    if (keep < -1)
        return bh_fail(err, EINVAL, "Value can't be lower than -1");
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    char v[16];
    int n = snprintf(v, sizeof v, "%d\n", keep);
    return bh_fs_write_atomic_at(p->fd, "revisions_to_keep", v, (size_t)n, 0644, err);
}

int bh_pool_info_format(struct bh_pool *p, char *buf, size_t n)
{
    struct statvfs sv;
    uint64_t size = 0, usage = 0;
    if (fstatvfs(p->fd, &sv) == 0) {
        size = (uint64_t)sv.f_blocks * sv.f_frsize;
        usage = (uint64_t)(sv.f_blocks - sv.f_bfree) * sv.f_frsize;
    }
    int r = snprintf(buf, n,
                     "dir_path=%s\ndriver=%s\nephemeral_volatile=True\nname=%s\nrevisions_to_keep=%d\n"
                     "size=%" PRIu64 "\nusage=%" PRIu64 "\n",
                     p->path, p->driver, p->name, bh_pool_default_revisions(p), size, usage);
    return r < 0 || (size_t)r >= n ? -1 : r;
}

/* The pool in directory pfd (path for messages and Info): its qubes/ directory, the
 * reflink probe, leftovers of a crash swept. Takes pfd. */
static struct bh_pool *pool_from_fd(int pfd, const char *path, const char *name, bh_error *err)
{
    _cleanup_close_ int dfd = pfd;
    _cleanup_close_ int qfd = bh_fs_mkdir_open(dfd, "qubes", 0700, err);
    if (qfd < 0)
        return NULL;
    struct bh_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->path = strdup(path))) {
        free(p);
        bh_fail(err, ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(p->name, sizeof p->name, "%s", name);
    snprintf(p->driver, sizeof p->driver, "file");
    p->fd = steal_fd(&dfd);
    p->qubes_fd = steal_fd(&qfd);
    p->reflink = probe_reflink(p->fd);
    _cleanup_close_ int lock = st_lock(p, NULL);
    if (lock >= 0)
        sweep_pool(p);
    return p;
}

struct bh_pool *bh_pool_open(const char *root, const char *name, bh_error *err)
{
    if (!root || root[0] != '/') {
        bh_fail(err, EINVAL, "pool root must be an absolute path");
        return NULL;
    }
    if (!bh_ident_valid(name, 63) || name[0] == '.') {
        bh_fail(err, EINVAL, "invalid pool name");
        return NULL;
    }
    /* The root itself is the administrator's choice and may be a symlink; below it we
     * create and never follow. */
    if (bh_mkdir_p(root, 0755) < 0) {
        bh_fail_errno(err, "create %s", root);
        return NULL;
    }
    _cleanup_close_ int rootfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0) {
        bh_fail_errno(err, "open %s", root);
        return NULL;
    }
    _cleanup_close_ int pools = bh_fs_mkdir_open(rootfd, "pools", 0700, err);
    if (pools < 0)
        return NULL;
    int pfd = bh_fs_mkdir_open(pools, name, 0700, err);
    if (pfd < 0)
        return NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/pools/%s", root, name);
    return pool_from_fd(pfd, path, name, err);
}

struct bh_pool *bh_pool_open_dir(const char *dir, const char *name, bool *created, bh_error *err)
{
    *created = false;
    if (!dir || dir[0] != '/') {
        bh_fail(err, EINVAL, "dir_path must be an absolute path");
        return NULL;
    }
    if (!bh_ident_valid(name, 63) || name[0] == '.') {
        bh_fail(err, EINVAL, "invalid pool name");
        return NULL;
    }
    struct stat st;
    if (stat(dir, &st) < 0) {
        if (bh_mkdir_p(dir, 0700) < 0) {
            bh_fail_errno(err, "create %s", dir);
            return NULL;
        }
        *created = true;
    }
    int pfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (pfd < 0) {
        bh_fail_errno(err, "open %s", dir);
        return NULL;
    }
    return pool_from_fd(pfd, dir, name, err);
}

bool bh_pool_reflinks(const struct bh_pool *p) { return p->reflink; }

void bh_pool_set_driver(struct bh_pool *p, const char *driver)
{
    snprintf(p->driver, sizeof p->driver, "%s", driver);
}

void bh_pool_close(struct bh_pool *p)
{
    if (!p)
        return;
    close(p->fd);
    close(p->qubes_fd);
    free(p->path);
    free(p);
}
