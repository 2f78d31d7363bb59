/* Built templates: the offline `host` template and Debian templates from debootstrap.
 * A template is built without holding the pool lock (debootstrap takes minutes) in a
 * temporary directory of its own, then published by one rename under the lock. */
#include "internal.h"
#include "cleanup.h"
#include "names.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int st_template_create(struct bh_pool *p, const char *name, const char *origin, uint64_t root_size, bool build_exec,
                       int (*fill)(int rootfd, const char *rootpath, void *ctx, bh_error *err), void *ctx,
                       bh_error *err)
{
    const char *why;
    if (!bh_qube_name_valid(name, &why))
        return bh_fail(err, EINVAL, "invalid template name: %s", why);
    if (!root_size)
        root_size = BH_ROOT_DEFAULT_SIZE;
    if (root_size < BH_VOLUME_MIN_SIZE || root_size > BH_VOLUME_MAX_SIZE)
        return bh_fail(err, EINVAL, "root size %" PRIu64 " out of range", root_size);
    if (bh_fs_exists(p->qubes_fd, name) != 0)
        return bh_fail(err, EEXIST, "volumes of qube %s already exist", name);
    char tmp[64];
    _cleanup_close_ int qfd = st_new_tmpdir(p, name, tmp, sizeof tmp, err);
    if (qfd < 0)
        return -1;
    _cleanup_free_ char *rootpath = NULL;
    _cleanup_close_ int rootfd = -1;
    if (asprintf(&rootpath, "%s/qubes/%s/root", p->path, tmp) < 0) {
        rootpath = NULL;
        bh_fail(err, ENOMEM, "out of memory");
        goto fail;
    }
    /* The tree is built inside its image (mounted on root/ of the temporary set), so
     * the build itself is bounded by the root's size. */
    if (st_root_image_create(qfd, root_size, err) < 0 || st_root_mount(qfd, build_exec, err) < 0)
        goto fail;
    rootfd = bh_fs_open_dir(qfd, "root", err);
    if (rootfd < 0)
        goto fail;
    if (fill(rootfd, rootpath, ctx, err) < 0)
        goto fail;
    if (syncfs(rootfd) < 0) {
        bh_fail_errno(err, "sync the root image");
        goto fail;
    }
    if (build_exec && st_root_seal(qfd, err) < 0)
        goto fail;
    char sz[32];
    int n = snprintf(sz, sizeof sz, "%" PRIu64 "\n", root_size);
    if (st_image_create(qfd, "private.img", BH_PRIVATE_DEFAULT_SIZE, err) < 0 ||
        bh_fs_write_atomic_at(qfd, "root.size", sz, (size_t)n, 0600, err) < 0 ||
        bh_fs_write_atomic_at(qfd, "origin", origin, strlen(origin), 0600, err) < 0 || st_bump_gen(qfd, err) < 0)
        goto fail;
    {
        _cleanup_close_ int lock = st_lock(p, err);
        if (lock < 0)
            goto fail;
        st_failpoint("template-before-rename");
        /* The mount on root/ moves with its directory. */
        if (st_publish_tmpdir(p, qfd, tmp, name, err) < 0)
            goto fail;
    }
    return 0;
fail:
    {
        bh_error e2;
        if (rootfd >= 0)
            close(rootfd);
        rootfd = -1;
        st_qube_tree_remove(p->qubes_fd, tmp, &e2);
    }
    return bh_prefix(err, "build template %s", name);
}

static int fill_host(int rootfd, const char *rootpath, void *ctx, bh_error *err)
{
    return st_build_host_tree(rootfd, err);
}

int bh_template_build_host(struct bh_pool *p, const char *name, uint64_t root_size, bh_error *err)
{
    return st_template_create(p, name, "host", root_size, false, fill_host, NULL, err);
}

int bh_template_ensure_host(struct bh_pool *p, bool *created, bh_error *err)
{
    *created = false;
    int ex = bh_fs_exists(p->qubes_fd, "host");
    if (ex < 0)
        return bh_fail_errno(err, "look for the host template");
    if (ex == 1) {
        _cleanup_close_ int q = st_qube_dir(p, "host", err);
        if (q < 0)
            return -1;
        if (!st_root_is_image(q) && !bh_fs_is_dir(q, "root"))
            return bh_fail(err, EEXIST, "a qube named host exists but has no root of its own");
        return 0;
    }
    if (bh_template_build_host(p, "host", 0, err) < 0) {
        /* Someone else built it meanwhile: as good. */
        if (err && err->errnum == EEXIST)
            return 0;
        return -1;
    }
    *created = true;
    return 0;
}

struct debian_ctx {
    const char *suite, *mirror;
    void (*progress)(const char *line, void *ctx);
    void *pctx;
};

/* Runs argv with stdout+stderr to progress, line by line. */
static int run_with_progress(const char *const argv[], struct debian_ctx *c, bh_error *err)
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
        if (devnull < 0 || dup2(devnull, 0) < 0 || dup2(pfd[1], 1) < 0 || dup2(pfd[1], 2) < 0)
            _exit(127);
        /* debootstrap mounts proc and sys inside the target: in a mount namespace of its
         * own they vanish with it, even if it or we are killed. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(126);
        char *const envp[] = { "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive",
                               NULL };
        bh_fs_exec_system(argv, envp);
        _exit(127);
    }
    close(pfd[1]);
    _cleanup_fclose_ FILE *f = fdopen(pfd[0], "r");
    if (!f) {
        close(pfd[0]);
    } else {
        char line[1024], last[1024] = "";
        while (fgets(line, sizeof line, f)) {
            line[strcspn(line, "\n")] = '\0';
            if (c->progress)
                c->progress(line, c->pctx);
            if (line[0])
                snprintf(last, sizeof last, "%s", line);
        }
        bh_fail(err, EIO, "%s", last);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return bh_fail_errno(err, "wait %s", argv[0]);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return bh_prefix(err, "%s exited with %d", argv[0], WEXITSTATUS(status));
    return bh_prefix(err, "%s killed by signal %d", argv[0], WIFSIGNALED(status) ? WTERMSIG(status) : 0);
}

int st_remove_device_nodes(int rootfd, bh_error *err)
{
    /* "/proc/self/fd/N/." : find (-P) does not descend a symlink given as start, and the
     * fd's magic link is one; "/." goes through it. */
    char top[64];
    bh_fs_fd_path(top, sizeof top, rootfd, ".");
    const char *find[] = { "find", top, "-xdev", "(", "-type", "b", "-o", "-type", "c", ")", "-delete", NULL };
    const int keep[] = { rootfd, -1 };
    if (bh_fs_run(find, keep, -1, err) < 0)
        return bh_prefix(err, "remove device nodes");
    return 0;
}

/* debootstrap mounts proc and sys in the target; after a failure they may stay. */
static void unmount_below(const char *rootpath)
{
    static const char *const subs[] = { "proc", "sys", "dev/pts", "dev", NULL };
    for (int i = 0; subs[i]; i++) {
        char path[600];
        snprintf(path, sizeof path, "%s/%s", rootpath, subs[i]);
        umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW);
    }
}

static int fill_debian(int rootfd, const char *rootpath, void *vctx, bh_error *err)
{
    struct debian_ctx *c = vctx;
    const char *argv[] = { "debootstrap", "--variant=minbase", "--include=ca-certificates,sudo,passwd",
                           c->suite, rootpath, c->mirror, NULL };
    int r = run_with_progress(argv, c, err);
    if (r < 0) {
        unmount_below(rootpath);
        return r;
    }
    unmount_below(rootpath);
    /* debootstrap made device nodes in dev/ (null, zero, tty, console...). The engine
     * gives every qube its own minimal /dev; a template's tree on the host disk holds
     * no device node at all. */
    if (st_remove_device_nodes(rootfd, err) < 0)
        return -1;
    static const char resolv[] = "nameserver 10.139.1.1\nnameserver 10.139.1.2\n";
    static const char hosts[] = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    _cleanup_close_ int etc = bh_fs_open_dir(rootfd, "etc", err);
    if (etc < 0)
        return -1;
    /* resolv.conf may be a symlink left by a package: replace it, never write through. */
    unlinkat(etc, "resolv.conf", 0);
    if (bh_fs_write_atomic_at(etc, "resolv.conf", resolv, sizeof resolv - 1, 0644, err) < 0 ||
        bh_fs_write_atomic_at(etc, "hosts", hosts, sizeof hosts - 1, 0644, err) < 0 ||
        bh_fs_write_atomic_at(etc, "hostname", "localhost\n", 10, 0644, err) < 0 ||
        bh_fs_write_atomic_at(etc, "bulkhead-template", "debian\n", 7, 0644, err) < 0)
        return -1;
    /* The `user` account, as in Qubes' templates: uid 1000, in group sudo. */
    const char *ua[] = { "chroot", rootpath, "useradd", "-m", "-u", "1000", "-U", "-G", "sudo", "-s", "/bin/bash",
                         "user", NULL };
    if (bh_fs_run(ua, NULL, -1, err) < 0)
        return bh_prefix(err, "add user");
    return syncfs(rootfd) < 0 ? bh_fail_errno(err, "sync") : 0;
}

static bool suite_valid(const char *s)
{
    return bh_ident_valid(s, 32) && s[0] != '-' && s[0] != '.';
}

static bool mirror_valid(const char *m)
{
    if (strncmp(m, "http://", 7) && strncmp(m, "https://", 8) && strncmp(m, "file:///", 8))
        return false;
    for (const char *s = m; *s; s++)
        if (*s <= ' ' || *s == 0x7f)
            return false;
    return strlen(m) < 512;
}

int bh_template_build_debian(struct bh_pool *p, const char *name, const char *suite, const char *mirror,
                             uint64_t root_size, void (*progress)(const char *line, void *ctx), void *ctx, bh_error *err)
{
    if (!suite)
        suite = "bookworm";
    if (!mirror)
        mirror = "http://deb.debian.org/debian";
    if (!suite_valid(suite))
        return bh_fail(err, EINVAL, "invalid suite name");
    if (!mirror_valid(mirror))
        return bh_fail(err, EINVAL, "invalid mirror URL (http://, https:// or file:///)");
    struct debian_ctx c = { suite, mirror, progress, ctx };
    char origin[64];
    snprintf(origin, sizeof origin, "debian %s", suite);
    return st_template_create(p, name, origin, root_size, true, fill_debian, &c, err);
}

int bh_template_list(struct bh_pool *p, char **out, bh_error *err)
{
    *out = NULL;
    int dup = openat(p->qubes_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dup < 0)
        return bh_fail_errno(err, "open pool");
    _cleanup_closedir_ DIR *d = fdopendir(dup);
    if (!d) {
        close(dup);
        return bh_fail_errno(err, "read pool");
    }
    char *buf = NULL;
    size_t len = 0;
    _cleanup_fclose_ FILE *f = open_memstream(&buf, &len);
    if (!f)
        return bh_fail_errno(err, "memstream");
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!bh_qube_name_valid(e->d_name, NULL))
            continue;
        _cleanup_close_ int q = bh_fs_open_dir(p->qubes_fd, e->d_name, NULL);
        if (q < 0)
            continue;
        _cleanup_free_ char *origin = bh_fs_read_small_at(q, "origin", 256);
        if (!origin)
            continue;
        for (char *s = origin; *s; s++)
            if (*s == ' ')
                *s = '-';
        uint64_t usage = 0;
        bh_error e2;
        bh_fs_usage_at(q, st_root_is_image(q) ? "root.img" : "root", &usage, &e2);
        fprintf(f, "%s %s %s %" PRIu64 "\n", e->d_name, origin, bh_fs_exists(q, "claimed") == 1 ? "adopted" : "unclaimed",
                usage);
    }
    fclose(f);
    f = NULL;
    *out = buf;
    return 0;
}
