/* Revisions (revisions_to_keep): at shutdown a persistent volume is copied to
 * revisions/<vol>/<timestamp>; the N newest stay. Names are Unix timestamps, as Qubes'
 * revision names, made strictly increasing. */
#include "internal.h"
#include "cleanup.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int st_revisions_take(int qfd, const char *vol, int keep, bh_error *err);
int st_revisions_prune(int qfd, const char *vol, int keep, bh_error *err);

static bool revision_name_valid(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 19 || s[0] == '0')
        return false;
    for (size_t i = 0; i < n; i++)
        if (s[i] < '0' || s[i] > '9')
            return false;
    return true;
}

static bool persistent_vol(const char *vol)
{
    return !strcmp(vol, "private") || !strcmp(vol, "root");
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* Sorted (oldest first) revisions of vol; *n = 0 if none. */
static int list_revs(int qfd, const char *vol, uint64_t **out, size_t *n, bh_error *err)
{
    *out = NULL;
    *n = 0;
    _cleanup_close_ int revs = openat(qfd, "revisions", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (revs < 0)
        return errno == ENOENT ? 0 : bh_fail_errno(err, "open revisions");
    int vd = openat(revs, vol, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (vd < 0)
        return errno == ENOENT ? 0 : bh_fail_errno(err, "open revisions of %s", vol);
    _cleanup_closedir_ DIR *d = fdopendir(vd);
    if (!d) {
        close(vd);
        return bh_fail_errno(err, "read revisions");
    }
    size_t cap = 0;
    uint64_t *v = NULL;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!revision_name_valid(e->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            uint64_t *nv = realloc(v, cap * sizeof *v);
            if (!nv) {
                free(v);
                return bh_fail(err, ENOMEM, "out of memory");
            }
            v = nv;
        }
        v[(*n)++] = strtoull(e->d_name, NULL, 10);
    }
    if (*n)
        qsort(v, *n, sizeof *v, cmp_u64);
    *out = v;
    return 0;
}

int st_revisions_prune(int qfd, const char *vol, int keep, bh_error *err)
{
    _cleanup_free_ uint64_t *v = NULL;
    size_t n;
    if (list_revs(qfd, vol, &v, &n, err) < 0)
        return -1;
    if (n <= (size_t)keep)
        return 0;
    _cleanup_close_ int revs = bh_fs_open_dir(qfd, "revisions", err);
    if (revs < 0)
        return -1;
    _cleanup_close_ int vd = bh_fs_open_dir(revs, vol, err);
    if (vd < 0)
        return -1;
    for (size_t i = 0; i + (size_t)keep < n; i++) {
        char name[32], trash[64];
        snprintf(name, sizeof name, "%" PRIu64, v[i]);
        st_tmpname(trash, sizeof trash, "trash", name);
        /* Invisible first (a rename), then the slow delete. */
        if (renameat(vd, name, vd, trash) < 0)
            return bh_fail_errno(err, "drop revision %s", name);
        if (bh_fs_remove_tree_at(vd, trash, err) < 0)
            return -1;
    }
    fsync(vd);
    return 0;
}

int st_revisions_take(int qfd, const char *vol, int keep, bh_error *err)
{
    if (keep <= 0)
        return st_revisions_prune(qfd, vol, 0, err);
    _cleanup_free_ uint64_t *v = NULL;
    size_t n;
    if (list_revs(qfd, vol, &v, &n, err) < 0)
        return -1;
    uint64_t ts = (uint64_t)time(NULL);
    if (n && v[n - 1] >= ts)
        ts = v[n - 1] + 1;
    _cleanup_close_ int revs = bh_fs_mkdir_open(qfd, "revisions", 0700, err);
    if (revs < 0)
        return -1;
    _cleanup_close_ int vd = bh_fs_mkdir_open(revs, vol, 0700, err);
    if (vd < 0)
        return -1;
    char name[32], tmp[64];
    snprintf(name, sizeof name, "%" PRIu64, ts);
    st_tmpname(tmp, sizeof tmp, "tmp", name);
    if (bh_fs_remove_tree_at(vd, tmp, err) < 0)
        return -1;
    int r = !strcmp(vol, "private") ? bh_fs_copy_file_at(qfd, "private.img", vd, tmp, 0600, err)
            : st_root_is_image(qfd) ? st_root_copy_image(qfd, vd, tmp, err)
                                    : bh_fs_copy_tree_at(qfd, "root", vd, tmp, err);
    if (r < 0) {
        bh_error e2;
        bh_fs_remove_tree_at(vd, tmp, &e2);
        return bh_prefix(err, "snapshot %s", vol);
    }
    st_failpoint("snapshot-before-rename");
    if (renameat(vd, tmp, vd, name) < 0)
        return bh_fail_errno(err, "publish revision %s", name);
    fsync(vd);
    return st_revisions_prune(qfd, vol, keep, err);
}

/* Opens revisions/<vol> into *dirfd and names its newest revision; -1 if none. */
int st_revisions_open_newest(int qfd, const char *vol, int *dirfd, char *name, size_t n)
{
    _cleanup_free_ uint64_t *v = NULL;
    size_t count;
    if (list_revs(qfd, vol, &v, &count, NULL) < 0 || count == 0)
        return -1;
    _cleanup_close_ int revs = bh_fs_open_dir(qfd, "revisions", NULL);
    if (revs < 0)
        return -1;
    *dirfd = bh_fs_open_dir(revs, vol, NULL);
    if (*dirfd < 0)
        return -1;
    snprintf(name, n, "%" PRIu64, v[count - 1]);
    return 0;
}

int bh_volume_list_snapshots(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, char **out,
                             bh_error *err)
{
    *out = NULL;
    if (st_validate(q, err) < 0)
        return -1;
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    _cleanup_free_ uint64_t *v = NULL;
    size_t n = 0;
    if (persistent_vol(vol)) {
        if (list_revs(qfd, vol, &v, &n, err) < 0)
            return -1;
    } else if (strcmp(vol, "volatile") && strcmp(vol, "kernel")) {
        return bh_fail(err, EINVAL, "no such volume: %s", vol);
    }
    char *s = malloc(n * 21 + 1);
    if (!s)
        return bh_fail(err, ENOMEM, "out of memory");
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(s + len, "%" PRIu64 "\n", v[i]);
    s[len] = '\0';
    *out = s;
    return 0;
}

int bh_volume_revert(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, const char *revision,
                     bh_error *err)
{
    if (st_validate(q, err) < 0)
        return -1;
    bool root = !strcmp(vol, "root");
    if (!persistent_vol(vol) || (root && !st_own_root(q->klass)) || (!root && !strcmp(q->klass, "DispVM")))
        return bh_fail(err, EINVAL, "volume %s of %s has no revisions", vol, q->name);
    if (revision && *revision && !revision_name_valid(revision))
        return bh_fail(err, EINVAL, "invalid revision name");
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    if (st_private_in_use(qfd))
        return bh_fail(err, EBUSY, "%s is running; revert while it is halted", q->name);
    _cleanup_free_ uint64_t *v = NULL;
    size_t n;
    if (list_revs(qfd, vol, &v, &n, err) < 0)
        return -1;
    if (n == 0)
        return bh_fail(err, ENOENT, "volume %s of %s has no revisions", vol, q->name);
    char name[32];
    if (revision && *revision) {
        uint64_t want = strtoull(revision, NULL, 10);
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= v[i] == want;
        if (!found)
            return bh_fail(err, ENOENT, "no revision %s of %s:%s", revision, q->name, vol);
        snprintf(name, sizeof name, "%" PRIu64, want);
    } else {
        snprintf(name, sizeof name, "%" PRIu64, v[n - 1]);
    }
    _cleanup_close_ int revs = bh_fs_open_dir(qfd, "revisions", err);
    if (revs < 0)
        return -1;
    _cleanup_close_ int vd = bh_fs_open_dir(revs, vol, err);
    if (vd < 0)
        return -1;
    char tmp[64];
    st_tmpname(tmp, sizeof tmp, "tmp", root ? "root.img" : "private.img");
    if (bh_fs_remove_tree_at(qfd, tmp, err) < 0)
        return -1;
    /* Build the whole copy under a temporary name, then one rename: a crash leaves the
     * current volume or the reverted one. */
    if (!root) {
        if (bh_fs_copy_file_at(vd, name, qfd, tmp, 0600, err) < 0)
            return bh_prefix(err, "revert %s:%s", q->name, vol);
        st_failpoint("revert-before-rename");
        if (renameat(qfd, tmp, qfd, "private.img") < 0) {
            unlinkat(qfd, tmp, 0);
            return bh_fail_errno(err, "revert %s:%s", q->name, vol);
        }
        fsync(qfd);
        return 0;
    }
    /* A root left as a tree by an earlier version becomes an image first. */
    if (st_root_ensure(qfd, err) < 0)
        return bh_prefix(err, "revert %s:%s", q->name, vol);
    /* A revision is an image, or a tree taken by an earlier version: made into one. */
    struct stat rst;
    if (fstatat(vd, name, &rst, AT_SYMLINK_NOFOLLOW) < 0)
        return bh_fail_errno(err, "revision %s", name);
    uint64_t size = BH_ROOT_DEFAULT_SIZE;
    _cleanup_free_ char *szs = bh_fs_read_small_at(qfd, "root.size", 64);
    if (szs)
        size = strtoull(szs, NULL, 10);
    unlinkat(qfd, tmp, 0);
    int r = S_ISDIR(rst.st_mode) ? st_root_image_from_tree(vd, name, qfd, tmp, size, err)
            : S_ISREG(rst.st_mode) ? bh_fs_copy_file_at(vd, name, qfd, tmp, 0600, err)
                                   : bh_fail(err, EINVAL, "revision %s is neither image nor tree", name);
    if (r < 0) {
        unlinkat(qfd, tmp, 0);
        return bh_prefix(err, "revert %s:%s", q->name, vol);
    }
    st_failpoint("revert-before-rename");
    /* The template is halted (checked above); its app qubes that still run keep the
     * image they started on (their mounts hold the replaced file). */
    if (st_root_unmount(qfd, err) < 0 || renameat(qfd, tmp, qfd, "root.img") < 0) {
        unlinkat(qfd, tmp, 0);
        bh_error e2;
        st_root_mount(qfd, false, &e2);
        return bh_prefix(err, "revert %s:%s", q->name, vol);
    }
    fsync(qfd);
    if (st_bump_gen(qfd, err) < 0)
        return -1;
    return st_root_mount(qfd, false, err);
}
