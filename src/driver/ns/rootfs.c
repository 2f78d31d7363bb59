/* Stage 1 (host root, in a private copy of the host's mount namespace): assembles the
 * qube's tree under <runtime_dir>/mnt/root from spec->vol. Nothing here is visible on
 * the host (the namespace is made private first) and everything read-only here ends up
 * locked read-only in the qube (see ns.h). */
#include "ns.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#define JOIN(buf, a, b) bh_path_join(buf, sizeof buf, a, b)

/* Makes a directory the qube will see as its root's. `raw` is a host path where a new
 * directory is stored with on-disk ID 0 (an idmapped persistent root); otherwise the
 * directory is made through the assembled tree and chowned to the qube's root. */
static int ensure_dir(const char *root, const char *raw, const char *rel, uid_t qroot, bh_error *err)
{
    char path[4096];
    JOIN(path, root, rel);
    struct stat st;
    if (lstat(path, &st) == 0) {
        if (!S_ISDIR(st.st_mode))
            return bh_fail(err, ENOTDIR, "%s is not a directory in the qube's root", rel);
        return 0;
    }
    if (raw) {
        char rp[4096];
        JOIN(rp, raw, rel);
        if (mkdir(rp, 0755) < 0 && errno != EEXIST)
            return bh_fail_errno(err, "mkdir %s", rp);
        return 0;
    }
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s (is the template's root missing it?)", path);
    if (chown(path, qroot, qroot) < 0)
        return bh_fail_errno(err, "chown %s", path);
    return 0;
}

static int mount_tmpfs(const char *path, const char *opts, unsigned long flags, bh_error *err)
{
    if (mount("tmpfs", path, "tmpfs", flags, opts) < 0)
        return bh_fail_errno(err, "mount tmpfs on %s", path);
    return 0;
}

static int bind_file(const char *src, const char *dst, unsigned long extra, bh_error *err)
{
    _cleanup_close_ int fd = open(dst, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return bh_fail_errno(err, "create %s", dst);
    if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
        return bh_fail_errno(err, "bind %s", src);
    if (extra && mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | extra, NULL) < 0)
        return bh_fail_errno(err, "remount %s", dst);
    return 0;
}

static bool overlay_safe(const char *s)
{
    return !strpbrk(s, ",:\\");
}

/* Root: an overlay of the idmapped template root with a throwaway or persistent upper,
 * or the idmapped persistent root itself. */
static int assemble_root(const struct bh_qube_spec *spec, const struct bh_ns_paths *p,
                         int userns_fd, bh_error *err)
{
    const struct bh_volume_layout *v = &spec->vol;
    char lower[4096], upper[4096], work[4096], opts[12400];
    if (!v->root_lower && !v->root_rw)
        return bh_fail(err, EINVAL, "no root volume");
    if (!v->root_lower) {
        _cleanup_close_ int fd = bh_idmapped_tree(v->root_rw, userns_fd, MOUNT_ATTR_NODEV, false, err);
        if (fd < 0 || bh_attach(fd, p->root, err) < 0)
            return bh_prefix(err, "root");
        return 0;
    }
    JOIN(lower, p->staging, "lower");
    if (mkdir(lower, 0700) < 0)
        return bh_fail_errno(err, "mkdir %s", lower);
    _cleanup_close_ int lfd = bh_idmapped_tree(v->root_lower, userns_fd,
                                               MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, false, err);
    if (lfd < 0)
        return bh_prefix(err, "template root");
    if (!v->root_throwaway && !v->root_rw) /* a read-only root: no upper layer at all */
        return bh_attach(lfd, p->root, err);
    if (bh_attach(lfd, lower, err) < 0)
        return -1;
    struct stat lst;
    if (stat(lower, &lst) < 0)
        return bh_fail_errno(err, "stat %s", lower);
    if (v->root_throwaway) {
        char vol[4096], o[128];
        JOIN(vol, p->staging, "vol");
        uint64_t size = v->volatile_bytes ? v->volatile_bytes : (1ull << 30);
        snprintf(o, sizeof o, "mode=0700,size=%llu", (unsigned long long)size);
        if (mkdir(vol, 0700) < 0 || mount_tmpfs(vol, o, MS_NOSUID | MS_NODEV, err) < 0)
            return bh_prefix(err, "throwaway root layer");
        JOIN(upper, vol, "upper");
        JOIN(work, vol, "work");
        if (mkdir(upper, lst.st_mode & 07777) < 0 || mkdir(work, 0700) < 0)
            return bh_fail_errno(err, "mkdir in %s", vol);
        /* The upper's top directory is the qube's "/": it must belong to the qube's root
         * (lower files keep their idmapped owners when copied up). */
        if (chown(upper, lst.st_uid, lst.st_gid) < 0)
            return bh_fail_errno(err, "chown %s", upper);
    } else {
        /* A persistent upper on top of a template root (not used by the default
         * layouts): kept as <root_rw>/upper with on-disk 0-based IDs, idmapped. */
        char rwl[4096], raw[4096];
        JOIN(rwl, p->staging, "rwl");
        JOIN(raw, v->root_rw, "upper");
        (void)mkdir(raw, 0755);
        JOIN(raw, v->root_rw, "work");
        (void)mkdir(raw, 0700);
        _cleanup_close_ int rfd = bh_idmapped_tree(v->root_rw, userns_fd, MOUNT_ATTR_NODEV, false, err);
        if (rfd < 0 || mkdir(rwl, 0700) < 0 || bh_attach(rfd, rwl, err) < 0)
            return bh_prefix(err, "persistent root layer");
        JOIN(upper, rwl, "upper");
        JOIN(work, rwl, "work");
    }
    if (!overlay_safe(lower) || !overlay_safe(upper) || !overlay_safe(work))
        return bh_fail(err, EINVAL, "runtime path unusable for overlayfs: %s", p->staging);
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work);
    if (mount("overlay", p->root, "overlay", MS_NODEV, opts) < 0)
        return bh_fail_errno(err, "mount overlay root");
    return 0;
}

/* host_usr bound read-only at /usr, idmapped so that the host's root-owned files
 * appear root-owned in the qube (setuid programs behave as in a VM, within the qube).
 * When the host's /usr has no lib/bulkhead directory to mount our programs on, a tiny
 * read-only overlay adds that mount point above it. */
static int assemble_usr(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int userns_fd,
                        const char *raw, bh_error *err)
{
    const char *usr = spec->vol.host_usr;
    char path[4096], dst[4096];
    if (ensure_dir(p->root, raw, "usr", spec->uid_base, err) < 0)
        return -1;
    JOIN(dst, p->root, "usr");
    _cleanup_close_ int fd = bh_idmapped_tree(usr, userns_fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, true, err);
    if (fd < 0)
        return bh_prefix(err, "host_usr");
    JOIN(path, usr, "lib/bulkhead");
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
        return bh_attach(fd, dst, err);
    char ulow[4096], stub[4096], opts[9000];
    JOIN(ulow, p->staging, "usr");
    JOIN(stub, p->staging, "usrstub/lib/bulkhead");
    if (mkdir(ulow, 0700) < 0 || bh_attach(fd, ulow, err) < 0 || bh_mkdir_p(stub, 0755) < 0)
        return bh_fail_errno(err, "usr stub");
    /* Stub dirs shadow /usr and /usr/lib's attributes: give them the qube root's IDs. */
    const char *rels[] = { "usrstub", "usrstub/lib", "usrstub/lib/bulkhead" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(rels); i++) {
        JOIN(path, p->staging, rels[i]);
        if (chown(path, spec->uid_base, spec->uid_base) < 0)
            return bh_fail_errno(err, "chown %s", path);
    }
    JOIN(stub, p->staging, "usrstub");
    if (!overlay_safe(stub) || !overlay_safe(ulow))
        return bh_fail(err, EINVAL, "runtime path unusable for overlayfs");
    snprintf(opts, sizeof opts, "lowerdir=%s:%s", stub, ulow);
    if (mount("overlay", dst, "overlay", MS_RDONLY | MS_NODEV, opts) < 0)
        return bh_fail_errno(err, "mount /usr overlay");
    return 0;
}

static int assemble_dev(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, const char *raw, bh_error *err)
{
    static const char *nodes[] = { "null", "zero", "full", "random", "urandom", "tty" };
    char dev[4096], path[4096], src[64], o[128];
    if (ensure_dir(p->root, raw, "dev", spec->uid_base, err) < 0)
        return -1;
    JOIN(dev, p->root, "dev");
    snprintf(o, sizeof o, "mode=0755,size=64k,nr_inodes=256,uid=%u,gid=%u", (unsigned)spec->uid_base, (unsigned)spec->uid_base);
    if (mount_tmpfs(dev, o, MS_NOSUID | MS_NOEXEC, err) < 0)
        return -1;
    for (size_t i = 0; i < BH_ARRAY_SIZE(nodes); i++) {
        snprintf(src, sizeof src, "/dev/%s", nodes[i]);
        JOIN(path, dev, nodes[i]);
        if (bind_file(src, path, MS_NOSUID | MS_NOEXEC, err) < 0)
            return -1;
    }
    static const char *links[][2] = {
        { "ptmx", "pts/ptmx" }, { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
        { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
    };
    for (size_t i = 0; i < BH_ARRAY_SIZE(links); i++) {
        JOIN(path, dev, links[i][0]);
        if (symlink(links[i][1], path) < 0 || lchown(path, spec->uid_base, spec->uid_base) < 0)
            return bh_fail_errno(err, "symlink %s", path);
    }
    const char *dirs[] = { "pts", "shm" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(dirs); i++) {
        JOIN(path, dev, dirs[i]);
        if (mkdir(path, 0755) < 0)
            return bh_fail_errno(err, "mkdir %s", path);
    }
    JOIN(path, dev, "shm");
    snprintf(o, sizeof o, "mode=1777,uid=%u,gid=%u", (unsigned)spec->uid_base, (unsigned)spec->uid_base);
    return mount_tmpfs(path, o, MS_NOSUID | MS_NODEV, err);
}

static int assemble_run(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, const char *raw, bh_error *err)
{
    char path[4096], o[128];
    if (ensure_dir(p->root, raw, "tmp", spec->uid_base, err) < 0 || ensure_dir(p->root, raw, "run", spec->uid_base, err) < 0)
        return -1;
    JOIN(path, p->root, "tmp");
    snprintf(o, sizeof o, "mode=1777,uid=%u,gid=%u", (unsigned)spec->uid_base, (unsigned)spec->uid_base);
    if (mount_tmpfs(path, o, MS_NOSUID | MS_NODEV, err) < 0)
        return -1;
    JOIN(path, p->root, "run");
    snprintf(o, sizeof o, "mode=0755,uid=%u,gid=%u", (unsigned)spec->uid_base, (unsigned)spec->uid_base);
    if (mount_tmpfs(path, o, MS_NOSUID | MS_NODEV, err) < 0)
        return -1;
    const char *rels[] = { "run/qubes", "run/qubes/vchan" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(rels); i++)
        if (ensure_dir(p->root, NULL, rels[i], spec->uid_base, err) < 0)
            return -1;
    /* The qube's libvchan-socket directory, shared with the host side of qrexec. */
    JOIN(path, p->root, "run/qubes/vchan");
    if (mount(p->vchan, path, NULL, MS_BIND, NULL) < 0 ||
        mount(NULL, path, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return bh_fail_errno(err, "bind %s", p->vchan);
    return 0;
}

int bh_rootfs_assemble(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int userns_fd, int private_fd, bh_error *err)
{
    const struct bh_volume_layout *v = &spec->vol;
    /* Nothing we mount from here on may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return bh_fail_errno(err, "make / private");
    if (mount_tmpfs(p->staging, "mode=0711,size=1m", MS_NOSUID | MS_NODEV, err) < 0)
        return -1;
    if (mkdir(p->root, 0755) < 0)
        return bh_fail_errno(err, "mkdir %s", p->root);
    if (assemble_root(spec, p, userns_fd, err) < 0)
        return -1;
    /* Missing mount points go into the raw persistent root when there is one. */
    const char *raw = (!v->root_lower && v->root_rw) ? v->root_rw : NULL;
    if (v->host_usr && assemble_usr(spec, p, userns_fd, raw, err) < 0)
        return -1;
    if (v->private_img) {
        char rw[4096];
        if (ensure_dir(p->root, raw, "rw", spec->uid_base, err) < 0 || ensure_dir(p->root, raw, "home", spec->uid_base, err) < 0)
            return -1;
        JOIN(rw, p->root, "rw");
        if (bh_attach(private_fd, rw, err) < 0)
            return -1;
    }
    if (ensure_dir(p->root, raw, "proc", spec->uid_base, err) < 0 || ensure_dir(p->root, raw, "sys", spec->uid_base, err) < 0)
        return -1;
    if (assemble_dev(spec, p, raw, err) < 0 || assemble_run(spec, p, raw, err) < 0)
        return -1;
    /* Our in-qube programs, read-only and not idmapped: host-owned, so no one in the
     * qube (not even its root) can write them. */
    char lib[4096];
    if (!v->host_usr)
        for (const char *const *r = (const char *const[]){ "usr", "usr/lib", "usr/lib/bulkhead", NULL }; *r; r++)
            if (ensure_dir(p->root, raw, *r, spec->uid_base, err) < 0)
                return -1;
    JOIN(lib, p->root, "usr/lib/bulkhead");
    struct stat st;
    if (stat(lib, &st) < 0 || !S_ISDIR(st.st_mode))
        return bh_fail(err, ENOENT, "no /usr/lib/bulkhead mount point in the qube's root");
    _cleanup_close_ int lfd = bh_idmapped_tree(p->libexec, -1, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, false, err);
    if (lfd < 0 || bh_attach(lfd, lib, err) < 0)
        return bh_prefix(err, "bulkhead programs");
    return 0;
}
