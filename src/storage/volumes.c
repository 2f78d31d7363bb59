/* Volume sets of qubes in a `file` pool: create, remove, clone, info, resize, and the
 * start/stop hooks. Each change builds under a temporary name and is renamed into place,
 * so a crash leaves the old state or the new one. */
#include "internal.h"
#include "cleanup.h"
#include "log.h"
#include "names.h"
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
int st_revisions_open_newest(int qfd, const char *vol, int *dirfd, char *name, size_t n);

static int write_u64(int dfd, const char *name, uint64_t v, bh_error *err)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%" PRIu64 "\n", v);
    return bh_fs_write_atomic_at(dfd, name, buf, (size_t)n, 0600, err);
}

static int read_u64(int dfd, const char *name, uint64_t *v)
{
    _cleanup_free_ char *s = bh_fs_read_small_at(dfd, name, 64);
    if (!s)
        return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(s, &end, 10);
    if (errno || end == s || *end)
        return -1;
    *v = x;
    return 0;
}

/* root.gen: a new value each time the root tree may have changed, so that an app qube
 * started on an older one knows it is outdated. */
int st_bump_gen(int qfd, bh_error *err)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char buf[48];
    int n = snprintf(buf, sizeof buf, "%lld.%09ld\n", (long long)ts.tv_sec, ts.tv_nsec);
    return bh_fs_write_atomic_at(qfd, "root.gen", buf, (size_t)n, 0600, err);
}

static bool has_origin_host(int qfd)
{
    _cleanup_free_ char *o = bh_fs_read_small_at(qfd, "origin", 256);
    return o && !strcmp(o, "host");
}

int st_new_tmpdir(struct bh_pool *p, const char *name, char *tmp, size_t n, bh_error *err)
{
    st_tmpname(tmp, n, "tmp", name);
    if (bh_fs_remove_tree_at(p->qubes_fd, tmp, err) < 0)
        return -1;
    if (mkdirat(p->qubes_fd, tmp, 0700) < 0)
        return bh_fail_errno(err, "mkdir %s", tmp);
    int fd = bh_fs_open_dir(p->qubes_fd, tmp, err);
    if (fd < 0)
        return -1;
    if (mkdirat(fd, "private-mnt", 0700) < 0 || mkdirat(fd, "revisions", 0700) < 0) {
        close(fd);
        return bh_fail_errno(err, "populate %s", tmp);
    }
    return fd;
}

/* The last step of every volume-set change: one rename makes it visible. */
int st_publish_tmpdir(struct bh_pool *p, int tmpfd, const char *tmp, const char *name, bh_error *err)
{
    if (fsync(tmpfd) < 0)
        return bh_fail_errno(err, "fsync %s", tmp);
    if (renameat2(p->qubes_fd, tmp, p->qubes_fd, name, RENAME_NOREPLACE) < 0)
        return bh_fail_errno(err, "publish volumes of %s", name);
    if (fsync(p->qubes_fd) < 0)
        return bh_fail_errno(err, "fsync pool");
    return 0;
}

/* Root volume for a new template/standalone: a copy of srcfd's root image (with its
 * size and origin) if srcfd >= 0, else an empty image of the default size. Mounted
 * once published (st_root_mount_published). */
static int make_own_root(int srcfd, int qfd, bh_error *err)
{
    if (srcfd >= 0) {
        /* A source left as a directory by an earlier version becomes an image first. */
        if (st_root_ensure(srcfd, err) < 0)
            return bh_prefix(err, "root of the source");
        if (st_root_copy_image(srcfd, qfd, "root.img", err) < 0)
            return -1;
        if (mkdirat(qfd, "root", 0755) < 0)
            return bh_fail_errno(err, "mkdir root");
        uint64_t sz;
        if (read_u64(srcfd, "root.size", &sz) == 0 && write_u64(qfd, "root.size", sz, err) < 0)
            return -1;
        _cleanup_free_ char *o = bh_fs_read_small_at(srcfd, "origin", 256);
        if (o && bh_fs_write_atomic_at(qfd, "origin", o, strlen(o), 0600, err) < 0)
            return -1;
    } else {
        if (st_root_image_create(qfd, BH_ROOT_DEFAULT_SIZE, err) < 0)
            return -1;
        if (write_u64(qfd, "root.size", BH_ROOT_DEFAULT_SIZE, err) < 0)
            return -1;
    }
    return st_bump_gen(qfd, err);
}

/* After publishing a new volume set: its root image mounted on root/. A failure here
 * leaves a complete volume set; the next start mounts it (st_root_ensure). */
static void mount_published_root(struct bh_pool *p, const char *name)
{
    bh_error e;
    _cleanup_close_ int qfd = st_qube_dir(p, name, &e);
    if (qfd < 0 || st_root_mount(qfd, false, &e) < 0)
        bh_warn("storage: root of %s not mounted yet: %s", name, e.msg);
}

/* A TemplateVM built by qvm-template waits in the pool, unclaimed, until the daemon
 * creates the qube of that name: then it is adopted instead of being an error. */
static int adopt_built_template(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err)
{
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    if (bh_fs_exists(qfd, "origin") != 1 || bh_fs_exists(qfd, "claimed") != 0)
        return bh_fail(err, EEXIST, "volumes of qube %s already exist", q->name);
    return bh_fs_write_atomic_at(qfd, "claimed", "1\n", 2, 0600, err);
}

int bh_volumes_create(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err)
{
    if (st_validate(q, err) < 0)
        return -1;
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    int ex = bh_fs_exists(p->qubes_fd, q->name);
    if (ex < 0)
        return bh_fail_errno(err, "stat %s", q->name);
    if (ex == 1) {
        if (!strcmp(q->klass, "TemplateVM"))
            return adopt_built_template(p, q, err);
        return bh_fail(err, EEXIST, "volumes of qube %s already exist", q->name);
    }
    _cleanup_close_ int tfd = -1;
    if (q->template_name) {
        tfd = st_qube_dir(p, q->template_name, err);
        if (tfd < 0)
            return bh_prefix(err, "template");
        if (!st_root_is_image(tfd) && !bh_fs_is_dir(tfd, "root"))
            return bh_fail(err, EINVAL, "%s has no root volume of its own", q->template_name);
    }
    if (!strcmp(q->klass, "DispVM")) {
        _cleanup_close_ int dfd = st_qube_dir(p, q->dispvm_template, err);
        if (dfd < 0)
            return bh_prefix(err, "disposable template");
        if (bh_fs_exists(dfd, "private.img") != 1)
            return bh_fail(err, EINVAL, "%s has no private volume", q->dispvm_template);
    }
    char tmp[64];
    _cleanup_close_ int qfd = st_new_tmpdir(p, q->name, tmp, sizeof tmp, err);
    if (qfd < 0)
        return -1;
    /* A disposable's private is copied from its disposable template at each start. */
    if (strcmp(q->klass, "DispVM") &&
        st_image_create(qfd, "private.img", q->private_size ? q->private_size : BH_PRIVATE_DEFAULT_SIZE, err) < 0)
        goto fail;
    if (st_own_root(q->klass) && make_own_root(tfd, qfd, err) < 0)
        goto fail;
    st_failpoint("create-before-rename");
    if (st_publish_tmpdir(p, qfd, tmp, q->name, err) < 0)
        goto fail;
    if (st_own_root(q->klass))
        mount_published_root(p, q->name);
    return 0;
fail:
    {
        bh_error e2;
        st_qube_tree_remove(p->qubes_fd, tmp, &e2);
    }
    return bh_prefix(err, "create volumes of %s", q->name);
}

/* Removes qubes/<name> with the pool lock held. */
static int remove_locked(struct bh_pool *p, const char *name, bh_error *err)
{
    bh_error local;
    _cleanup_close_ int qfd = st_qube_dir(p, name, &local);
    if (qfd < 0) {
        if (local.errnum == ENOENT)
            return 0; /* nothing to remove */
        if (err)
            *err = local;
        return -1;
    }
    if (st_private_in_use(qfd))
        return bh_fail(err, EBUSY, "private volume of %s is in use", name);
    char trash[64];
    st_tmpname(trash, sizeof trash, "trash", name);
    /* Gone from view in one step; the slow delete comes after (and is finished by the
     * sweep at the next pool open if we crash meanwhile). */
    if (renameat2(p->qubes_fd, name, p->qubes_fd, trash, RENAME_NOREPLACE) < 0)
        return bh_fail_errno(err, "remove volumes of %s", name);
    fsync(p->qubes_fd);
    st_failpoint("remove-after-rename");
    return st_qube_tree_remove(p->qubes_fd, trash, err);
}

int bh_volumes_remove(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err)
{
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    return remove_locked(p, q->name, err);
}

/* One orphan: a built template loses its claim, anything else goes. 1 if collected. */
static int collect_one(struct bh_pool *p, const char *name, bh_error *err)
{
    _cleanup_close_ int qfd = st_qube_dir(p, name, err);
    if (qfd < 0)
        return -1;
    if (bh_fs_exists(qfd, "origin") == 1) {
        if (bh_fs_exists(qfd, "claimed") != 1)
            return 0; /* built by qvm-template, waiting for its qube: not an orphan */
        if (unlinkat(qfd, "claimed", 0) < 0)
            return bh_fail_errno(err, "unclaim %s", name);
        bh_fs_fsync_dir(qfd);
        return 1;
    }
    if (st_private_in_use(qfd))
        return 0;
    return remove_locked(p, name, err) < 0 ? -1 : 1;
}

int bh_volumes_collect_orphans(struct bh_pool *p, bool (*known)(const char *name, void *ctx), void *ctx,
                               bh_error *err)
{
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    /* Names first, changes after: renaming while readdir walks the directory could skip
     * or repeat entries. */
    int dup = openat(p->qubes_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0)
        return bh_fail_errno(err, "open qubes of pool %s", p->name);
    _cleanup_closedir_ DIR *d = fdopendir(dup);
    if (!d) {
        close(dup);
        return bh_fail_errno(err, "read qubes of pool %s", p->name);
    }
    char(*names)[64] = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!bh_qube_name_valid(e->d_name, NULL) || strlen(e->d_name) >= sizeof *names || known(e->d_name, ctx))
            continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 8;
            void *nn = realloc(names, cap * sizeof *names);
            if (!nn) {
                free(names);
                return bh_fail(err, ENOMEM, "out of memory");
            }
            names = nn;
        }
        snprintf(names[n++], sizeof *names, "%s", e->d_name);
    }
    int collected = 0, rc = 0;
    for (size_t i = 0; i < n; i++) {
        bh_error one = { 0 };
        int r = collect_one(p, names[i], &one);
        if (r < 0) {
            bh_warn("storage: orphaned volumes of %s: %s", names[i], one.msg);
            if (err)
                *err = one;
            rc = -1;
        } else if (r > 0) {
            bh_info("storage: collected the volumes of %s, a qube the store does not know", names[i]);
            collected++;
        }
    }
    free(names);
    return rc < 0 ? -1 : collected;
}

int bh_volumes_clone(struct bh_pool *p, const struct bh_storage_qube *src, const struct bh_storage_qube *dst,
                     bh_error *err)
{
    if (st_validate(dst, err) < 0)
        return -1;
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    _cleanup_close_ int sfd = st_qube_dir(p, src->name, err);
    if (sfd < 0)
        return -1;
    if (bh_fs_exists(p->qubes_fd, dst->name) != 0)
        return bh_fail(err, EEXIST, "volumes of qube %s already exist", dst->name);
    _cleanup_close_ int tfd = -1;
    if (st_own_root(dst->klass) && !st_root_is_image(sfd) && !bh_fs_is_dir(sfd, "root")) {
        /* An app qube cloned into a standalone gets a copy of its template's root. */
        const char *t = src->template_name ? src->template_name : dst->template_name;
        if (!t)
            return bh_fail(err, EINVAL, "%s has no root to copy", src->name);
        tfd = st_qube_dir(p, t, err);
        if (tfd < 0)
            return bh_prefix(err, "template");
    }
    char tmp[64];
    _cleanup_close_ int qfd = st_new_tmpdir(p, dst->name, tmp, sizeof tmp, err);
    if (qfd < 0)
        return -1;
    if (bh_fs_exists(sfd, "private.img") == 1) {
        if (bh_fs_copy_file_at(sfd, "private.img", qfd, "private.img", 0600, err) < 0)
            goto fail;
    } else if (strcmp(dst->klass, "DispVM") &&
               st_image_create(qfd, "private.img", BH_PRIVATE_DEFAULT_SIZE, err) < 0) {
        goto fail;
    }
    if (st_own_root(dst->klass) && make_own_root(tfd >= 0 ? tfd : sfd, qfd, err) < 0)
        goto fail;
    st_failpoint("clone-before-rename");
    if (st_publish_tmpdir(p, qfd, tmp, dst->name, err) < 0)
        goto fail;
    if (st_own_root(dst->klass))
        mount_published_root(p, dst->name);
    return 0;
fail:
    {
        bh_error e2;
        st_qube_tree_remove(p->qubes_fd, tmp, &e2);
    }
    return bh_prefix(err, "clone %s to %s", src->name, dst->name);
}

static void set_str(char *dst, size_t n, const char *fmt, const char *a, const char *b)
{
    snprintf(dst, n, fmt, a, b);
}

int bh_volume_info(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, struct bh_volume_info *out,
                   bh_error *err)
{
    if (st_validate(q, err) < 0)
        return -1;
    memset(out, 0, sizeof *out);
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    snprintf(out->pool, sizeof out->pool, "%s", p->name);
    if (!strcmp(vol, "root")) {
        set_str(out->vid, sizeof out->vid, "qubes/%s/%s", q->name, "root");
        out->rw = true;
        if (st_own_root(q->klass)) {
            if (read_u64(qfd, "root.size", &out->size) < 0)
                out->size = BH_ROOT_DEFAULT_SIZE;
            /* An image: what it takes on the host's disk (as private); a tree left by
             * an earlier version: du. */
            if (bh_fs_usage_at(qfd, st_root_is_image(qfd) ? "root.img" : "root", &out->usage, err) < 0)
                return -1;
            out->save_on_stop = true;
            out->revisions_to_keep = q->revisions_to_keep;
        } else {
            _cleanup_close_ int tfd = st_qube_dir(p, q->template_name, err);
            if (tfd < 0)
                return bh_prefix(err, "template");
            if (read_u64(tfd, "root.size", &out->size) < 0)
                out->size = BH_ROOT_DEFAULT_SIZE;
            set_str(out->source, sizeof out->source, "qubes/%s/%s", q->template_name, "root");
            out->snap_on_start = true;
            /* Outdated: running on a template root that has changed since it started. */
            _cleanup_free_ char *seen = bh_fs_read_small_at(qfd, "running", 64);
            _cleanup_free_ char *now = bh_fs_read_small_at(tfd, "root.gen", 64);
            out->is_outdated = seen && now && strcmp(seen, now) != 0;
        }
    } else if (!strcmp(vol, "private")) {
        set_str(out->vid, sizeof out->vid, "qubes/%s/%s", q->name, "private");
        out->rw = true;
        struct stat st;
        bool have = fstatat(qfd, "private.img", &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISREG(st.st_mode);
        if (!strcmp(q->klass, "DispVM")) {
            set_str(out->source, sizeof out->source, "qubes/%s/%s", q->dispvm_template, "private");
            out->snap_on_start = true;
            if (!have) {
                _cleanup_close_ int dfd = st_qube_dir(p, q->dispvm_template, err);
                if (dfd >= 0 && fstatat(dfd, "private.img", &st, AT_SYMLINK_NOFOLLOW) == 0)
                    out->size = (uint64_t)st.st_size;
            }
        } else {
            out->save_on_stop = true;
            out->revisions_to_keep = q->revisions_to_keep;
            if (!have)
                return bh_fail(err, ENOENT, "private volume of %s is missing", q->name);
        }
        if (have) {
            out->size = (uint64_t)st.st_size;
            out->usage = (uint64_t)st.st_blocks * 512;
            uint64_t pending;
            if (read_u64(qfd, "private.resize", &pending) == 0 && pending > out->size)
                out->size = pending;
        }
    } else if (!strcmp(vol, "volatile")) {
        set_str(out->vid, sizeof out->vid, "qubes/%s/%s", q->name, "volatile");
        if (read_u64(qfd, "volatile.size", &out->size) < 0)
            out->size = BH_VOLATILE_DEFAULT_SIZE;
        out->rw = true;
        out->ephemeral = true;
    } else if (!strcmp(vol, "kernel")) {
        /* The ns engine runs the host's kernel: an empty, read-only volume. */
        snprintf(out->pool, sizeof out->pool, "linux-kernel");
    } else {
        return bh_fail(err, EINVAL, "no such volume: %s", vol);
    }
    return 0;
}

/* Grows private.img on a copy and swaps it in: resize2fs is not atomic, a rename is. */
static int grow_private_offline(int qfd, uint64_t size, bh_error *err)
{
    char tmp[64];
    st_tmpname(tmp, sizeof tmp, "tmp", "private.img");
    unlinkat(qfd, tmp, 0);
    if (bh_fs_copy_file_at(qfd, "private.img", qfd, tmp, 0600, err) < 0 || st_image_grow(qfd, tmp, size, err) < 0) {
        unlinkat(qfd, tmp, 0);
        return -1;
    }
    st_failpoint("resize-before-rename");
    if (renameat(qfd, tmp, qfd, "private.img") < 0) {
        unlinkat(qfd, tmp, 0);
        return bh_fail_errno(err, "replace private");
    }
    fsync(qfd);
    unlinkat(qfd, "private.resize", 0);
    return 0;
}

/* A resize asked for while the qube ran and that could not happen online. */
static int finish_pending_resize(int qfd, bh_error *err)
{
    uint64_t want;
    if (read_u64(qfd, "private.resize", &want) < 0)
        return 0;
    if (st_private_in_use(qfd))
        return 0; /* still running */
    struct stat st;
    if (fstatat(qfd, "private.img", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
        return bh_fail(err, ENOENT, "private volume missing");
    if (want < (uint64_t)st.st_size)
        want = (uint64_t)st.st_size;
    return grow_private_offline(qfd, want, err) < 0 ? bh_prefix(err, "finish resize of private") : 0;
}

int bh_volume_resize(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, uint64_t size,
                     bh_error *err)
{
    if (st_validate(q, err) < 0)
        return -1;
    if (size < BH_VOLUME_MIN_SIZE || size > BH_VOLUME_MAX_SIZE)
        return bh_fail(err, EINVAL, "size %" PRIu64 " out of range", size);
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    if (!strcmp(vol, "private")) {
        if (!strcmp(q->klass, "DispVM"))
            return bh_fail(err, EINVAL, "a disposable's private follows its disposable template");
        struct stat st;
        if (fstatat(qfd, "private.img", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(st.st_mode))
            return bh_fail(err, ENOENT, "private volume of %s is missing", q->name);
        uint64_t cur = (uint64_t)st.st_size, pending;
        if (read_u64(qfd, "private.resize", &pending) == 0 && pending > cur)
            cur = pending;
        if (size < cur)
            return bh_fail(err, EINVAL, "For your own safety, shrinking of private is disabled");
        if (size == cur)
            return 0;
        if (st_private_in_use(qfd)) {
            /* The qube runs: grow in place, online (as qvm-volume extend on Qubes). */
            bh_error online;
            if (st_image_grow_online(qfd, "private.img", size, &online) == 0)
                return 0;
            /* Online growth needs CAP_SYS_RESOURCE and a loop device we can find.
             * Without them: the file is longer (harmless) or not; record the wish, and
             * the filesystem grows offline when the qube has stopped. */
            bh_warn("online resize of %s:private failed (%s); it completes when the qube stops", q->name,
                    online.msg);
            return write_u64(qfd, "private.resize", size, err);
        }
        return grow_private_offline(qfd, size, err) < 0 ? bh_prefix(err, "resize private of %s", q->name) : 0;
    }
    if (!strcmp(vol, "root")) {
        if (!st_own_root(q->klass))
            return bh_fail(err, EINVAL, "the root of %s is its template's; resize the template's", q->name);
        uint64_t cur = BH_ROOT_DEFAULT_SIZE;
        read_u64(qfd, "root.size", &cur);
        if (size < cur)
            return bh_fail(err, EINVAL, "For your own safety, shrinking of root is disabled");
        if (size == cur)
            return 0;
        if (!st_root_is_image(qfd))
            return write_u64(qfd, "root.size", size, err); /* converted at its next start */
        /* The wish first (durable), then the image: a crash in between grows it later. */
        if (write_u64(qfd, "root.resize", size, err) < 0 || write_u64(qfd, "root.size", size, err) < 0)
            return -1;
        bh_error now;
        if (st_root_grow_pending(qfd, &now) < 0)
            bh_warn("resize of %s:root: %s; it completes when the qube next starts or stops", q->name, now.msg);
        else if (bh_fs_exists(qfd, "root.resize") == 1)
            bh_info("resize of %s:root waits until no qube uses it (next start or stop)", q->name);
        return 0;
    }
    if (!strcmp(vol, "volatile"))
        return write_u64(qfd, "volatile.size", size, err); /* throwaway: any size is safe */
    if (!strcmp(vol, "kernel"))
        return bh_fail(err, EINVAL, "the kernel volume cannot be resized");
    return bh_fail(err, EINVAL, "no such volume: %s", vol);
}

static char *join(const char *a, const char *b, const char *c)
{
    char *s;
    if (asprintf(&s, "%s/%s%s", a, b, c) < 0)
        return NULL;
    return s;
}

void bh_volume_layout_free(struct bh_volume_layout *l)
{
    free((char *)l->root_lower);
    free((char *)l->root_rw);
    free((char *)l->private_img);
    free((char *)l->private_dir);
    free((char *)l->host_usr);
    memset(l, 0, sizeof *l);
}

int bh_volumes_prepare(struct bh_pool *p, const struct bh_storage_qube *q, struct bh_volume_layout *out,
                       bh_error *err)
{
    memset(out, 0, sizeof *out);
    if (st_validate(q, err) < 0)
        return -1;
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    char qdir[512];
    snprintf(qdir, sizeof qdir, "%s/qubes/%s", p->path, q->name);
    bool host_usr;
    _cleanup_free_ char *gen = NULL;
    if (st_own_root(q->klass)) {
        if (st_root_ensure(qfd, err) < 0 || st_root_grow_pending(qfd, err) < 0)
            return bh_prefix(err, "root volume of %s", q->name);
        out->root_rw = join(qdir, "root", "");
        host_usr = has_origin_host(qfd);
        gen = strdup("own");
    } else {
        _cleanup_close_ int tfd = st_qube_dir(p, q->template_name, err);
        if (tfd < 0)
            return bh_prefix(err, "template");
        if (st_root_ensure(tfd, err) < 0)
            return bh_prefix(err, "root volume of template %s", q->template_name);
        char tdir[512];
        snprintf(tdir, sizeof tdir, "%s/qubes/%s", p->path, q->template_name);
        out->root_lower = join(tdir, "root", "");
        out->root_throwaway = true;
        host_usr = has_origin_host(tfd);
        gen = bh_fs_read_small_at(tfd, "root.gen", 64);
    }
    bool layered = false;
    if (!strcmp(q->klass, "DispVM") && q->private_layer) {
        /* The template's private as a shared read-only base, under a throwaway layer
         * of this disposable's own (dispbase.c); nothing is copied per disposable. */
        _cleanup_close_ int dfd = st_qube_dir(p, q->dispvm_template, err);
        if (dfd < 0 || st_dispbase_prepare(dfd, q->dispvm_template, &layered, err) < 0)
            goto fail;
        if (layered) {
            char ddir[512];
            snprintf(ddir, sizeof ddir, "%s/qubes/%s", p->path, q->dispvm_template);
            out->private_img = join(ddir, "dispvm-base.img", "");
            out->private_throwaway = true;
            unlinkat(qfd, "private.img", 0); /* a copy left by an older start */
        }
    }
    if (layered) {
        /* private_img set above */
    } else if (!strcmp(q->klass, "DispVM")) {
        /* A fresh copy of the disposable template's private at every start. */
        _cleanup_close_ int dfd = st_qube_dir(p, q->dispvm_template, err);
        if (dfd < 0)
            goto fail;
        /* While the disposable template runs, its private is being written: a copy
         * could be torn. Its newest revision is a consistent state; without one, wait. */
        _cleanup_close_ int srcdir = -1;
        char srcname[32] = "private.img";
        if (st_private_in_use(dfd)) {
            if (st_revisions_open_newest(dfd, "private", &srcdir, srcname, sizeof srcname) < 0) {
                bh_fail(err, EBUSY, "disposable template %s is running and has no revision to copy",
                        q->dispvm_template);
                goto fail;
            }
        } else {
            srcdir = dup(dfd);
        }
        char tmp[64];
        st_tmpname(tmp, sizeof tmp, "tmp", "private.img");
        unlinkat(qfd, tmp, 0);
        /* No fsync: nothing of a disposable's private survives it, and a start after a
         * crash copies it again (this branch), so no torn copy is ever used. */
        if (srcdir < 0 || bh_fs_copy_file_throwaway_at(srcdir, srcname, qfd, tmp, 0600, err) < 0)
            goto fail;
        if (renameat(qfd, tmp, qfd, "private.img") < 0) {
            unlinkat(qfd, tmp, 0);
            bh_fail_errno(err, "install private copy");
            goto fail;
        }
    } else if (bh_fs_exists(qfd, "private.img") != 1) {
        bh_fail(err, ENOENT, "private volume of %s is missing", q->name);
        goto fail;
    } else if (finish_pending_resize(qfd, err) < 0) {
        goto fail;
    } else if (!st_private_in_use(qfd)) {
        /* As Qubes: a revision is the volume as it was before this session, so that
         * `qvm-volume revert` (newest revision) undoes the last session. */
        if (st_revisions_take(qfd, "private", q->revisions_to_keep, err) < 0 ||
            (st_own_root(q->klass) && st_revisions_take(qfd, "root", q->revisions_to_keep, err) < 0))
            goto fail;
    }
    /* The engine mounts over this path: it must be our real directory, not a symlink. */
    if ((mkdirat(qfd, "private-mnt", 0700) < 0 && errno != EEXIST) || !bh_fs_is_dir(qfd, "private-mnt")) {
        bh_fail(err, EINVAL, "private mount point of %s is not a directory", q->name);
        goto fail;
    }
    struct stat pst;
    if (!layered && (fstatat(qfd, "private.img", &pst, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISREG(pst.st_mode))) {
        bh_fail(err, EINVAL, "private volume of %s is not a regular file", q->name);
        goto fail;
    }
    if (!layered)
        out->private_img = join(qdir, "private.img", "");
    out->private_dir = join(qdir, "private-mnt", "");
    if (read_u64(qfd, "volatile.size", &out->volatile_bytes) < 0)
        out->volatile_bytes = BH_VOLATILE_DEFAULT_SIZE;
    if (host_usr)
        out->host_usr = strdup("/usr");
    if (!out->private_img || !out->private_dir || (!out->root_rw && !out->root_lower) || (host_usr && !out->host_usr)) {
        bh_fail(err, ENOMEM, "out of memory");
        goto fail;
    }
    const char *g = gen ? gen : "none";
    /* Which template root this run uses (for is_outdated): only meaningful while the
     * qube runs, and a power loss ends every run, so it is not fsynced. */
    if (bh_fs_write_runtime_at(qfd, "running", g, strlen(g), 0600, err) < 0)
        goto fail;
    return 0;
fail:
    bh_volume_layout_free(out);
    return bh_prefix(err, "prepare volumes of %s", q->name);
}

int bh_volumes_stopped(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err)
{
    if (st_validate(q, err) < 0)
        return -1;
    _cleanup_close_ int lock = st_lock(p, err);
    if (lock < 0)
        return -1;
    _cleanup_close_ int qfd = st_qube_dir(p, q->name, err);
    if (qfd < 0)
        return -1;
    unlinkat(qfd, "running", 0);
    /* The engine's mount goes with the qube's last process, and its loop device
     * (autoclear) right after: give that a moment. A revision is never copied from an
     * image that something still has. */
    bool free_now = st_private_wait_free(qfd, 3000);
    if (!free_now) {
        bh_warn("%s: private volume still in use after stop: no revision taken", q->name);
        return 0;
    }
    if (strcmp(q->klass, "DispVM") && finish_pending_resize(qfd, err) < 0)
        return bh_prefix(err, "%s", q->name);
    if (!strcmp(q->klass, "DispVM")) {
        /* Its private was a throwaway copy: destroyed after use. */
        if (unlinkat(qfd, "private.img", 0) < 0 && errno != ENOENT)
            return bh_fail_errno(err, "drop private of %s", q->name);
        fsync(qfd);
        return 0;
    }
    /* Revisions are taken at start (the state before a session); here only a lowered
     * revisions_to_keep drops the surplus. */
    if (st_revisions_prune(qfd, "private", q->revisions_to_keep < 0 ? 0 : q->revisions_to_keep, err) < 0)
        return bh_prefix(err, "%s", q->name);
    if (st_own_root(q->klass)) {
        bh_error grow;
        if (st_root_is_image(qfd) && st_root_grow_pending(qfd, &grow) < 0)
            bh_warn("%s: %s", q->name, grow.msg);
        if (st_revisions_prune(qfd, "root", q->revisions_to_keep < 0 ? 0 : q->revisions_to_keep, err) < 0)
            return bh_prefix(err, "%s", q->name);
        if (st_bump_gen(qfd, err) < 0)
            return -1;
    }
    return 0;
}
