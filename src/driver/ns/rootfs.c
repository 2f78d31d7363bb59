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
#include <sys/sysmacros.h>
#include <unistd.h>

#define JOIN(buf, a, b) bh_path_join(buf, sizeof buf, a, b)

/* Makes sure `rel` is a real directory (no symlink on the way) in the qube's tree.
 * rawfd >= 0: a host dir where a new directory is stored with on-disk ID 0 (an idmapped
 * persistent root); otherwise it is made through the tree and given to the qube's root. */
static int ensure_dir(int rootfd, int rawfd, const char *rel, uid_t qroot, bh_error *err)
{
    int fd = bh_open_beneath(rootfd, rel, true);
    if (fd >= 0) {
        close(fd);
        return 0;
    }
    if (errno != ENOENT)
        return bh_fail_errno(err, "/%s in the qube's root is not a plain directory", rel);
    bool raw = rawfd >= 0;
    if (bh_mkdir_beneath(raw ? rawfd : rootfd, rel, 0755, qroot, !raw, NULL) < 0)
        return bh_fail_errno(err, "mkdir /%s in the qube's root", rel);
    return 0;
}

/* Opens a mount point in the qube's tree and gives its /proc/self/fd path. */
static int target(int rootfd, const char *rel, char *path, size_t n, bh_error *err)
{
    int fd = bh_open_beneath(rootfd, rel, true);
    if (fd < 0)
        return bh_fail_errno(err, "/%s in the qube's root", rel);
    bh_fd_path(fd, path, n);
    return fd;
}

static int mount_tmpfs(const char *path, const char *opts, unsigned long flags, bh_error *err)
{
    if (mount("tmpfs", path, "tmpfs", flags, opts) < 0)
        return bh_fail_errno(err, "mount tmpfs on %s", path);
    return 0;
}

static int attach_at(int mfd, int rootfd, const char *rel, bh_error *err)
{
    _cleanup_close_ int t = bh_open_beneath(rootfd, rel, true);
    if (t < 0)
        return bh_fail_errno(err, "/%s in the qube's root", rel);
    if (move_mount(mfd, "", t, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        return bh_fail_errno(err, "mount on /%s", rel);
    return 0;
}

/* One of the fixed /dev nodes, made in the qube's /dev tmpfs by us (host root, on a
 * tmpfs of the host's user namespace, so the node works). It is the same device as the
 * host's node (the devices cgroup, or v2's device program, allows exactly these), owned
 * by the host's root: the qube can open it, not chmod or chown it, and cannot make one
 * itself (no CAP_MKNOD). One mknod where a bind of the host's node took a bind and a
 * remount (12 mount calls per start for six nodes). */
static int make_node(int devfd, const char *name, unsigned major, unsigned minor, bh_error *err)
{
    if (mknodat(devfd, name, S_IFCHR | 0666, makedev(major, minor)) < 0)
        return bh_fail_errno(err, "mknod /dev/%s", name);
    /* mknod applies the umask: the mode is set explicitly */
    if (fchmodat(devfd, name, 0666, 0) < 0)
        return bh_fail_errno(err, "chmod /dev/%s", name);
    return 0;
}

/* path below p->staging, relative to it (the cwd of stage 1 while it assembles). */
static const char *rel_to_staging(const struct bh_ns_paths *p, const char *path)
{
    size_t n = strlen(p->staging);
    return strncmp(path, p->staging, n) == 0 && path[n] == '/' ? path + n + 1 : path;
}

static bool overlay_safe(const char *s)
{
    return !strpbrk(s, ",:\\");
}

/* A template's root is mounted on the host noexec (the host never runs what a template
 * qube wrote there; storage.md): the qube's own clone of that mount lets it run its
 * programs. Our clone, made as host root in our own mount namespace, is not locked. */
static int root_clone(const char *path, int userns_fd, uint64_t attrs, bh_error *err)
{
    int fd = bh_idmapped_tree(path, userns_fd, attrs, false, err);
    if (fd < 0)
        return -1;
    struct mount_attr a = { .attr_clr = MOUNT_ATTR_NOEXEC };
    if (mount_setattr(fd, "", AT_EMPTY_PATH, &a, sizeof a) < 0) {
        close(fd);
        return bh_fail_errno(err, "allow exec on %s", path);
    }
    return fd;
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
    /* nosuid on every root layer: a template's root is written in place on a host
     * filesystem, and a setuid file it makes must not work from that mount (inside the
     * qube no_new_privs already stops setuid; this holds without it too, and the flag is
     * locked in the qube's mount namespace). The pool directory is 0700 root, so no
     * unprivileged host user can reach such a file either. */
    if (!v->root_lower) {
        _cleanup_close_ int fd = root_clone(v->root_rw, userns_fd, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err);
        if (fd < 0 || bh_attach(fd, p->root, err) < 0)
            return bh_prefix(err, "root");
        return 0;
    }
    JOIN(lower, p->staging, "lower");
    if (mkdir(lower, 0700) < 0)
        return bh_fail_errno(err, "mkdir %s", lower);
    _cleanup_close_ int lfd = root_clone(v->root_lower, userns_fd,
                                         MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err);
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
        _cleanup_close_ int rfd = root_clone(v->root_rw, userns_fd, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID, err);
        if (rfd < 0 || mkdir(rwl, 0700) < 0 || bh_attach(rfd, rwl, err) < 0)
            return bh_prefix(err, "persistent root layer");
        JOIN(upper, rwl, "upper");
        JOIN(work, rwl, "work");
    }
    if (!overlay_safe(lower) || !overlay_safe(upper) || !overlay_safe(work))
        return bh_fail(err, EINVAL, "runtime path unusable for overlayfs: %s", p->staging);
    /* Paths relative to the staging dir (our cwd): overlayfs shows its options in the
     * qube's /proc/self/mountinfo, and the host's runtime path is none of its business. */
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", rel_to_staging(p, lower),
             rel_to_staging(p, upper), rel_to_staging(p, work));
    if (mount("overlay", p->root, "overlay", MS_NODEV | MS_NOSUID, opts) < 0)
        return bh_fail_errno(err, "mount overlay root");
    return 0;
}

/* host_usr bound read-only at /usr, idmapped so that the host's root-owned files
 * appear root-owned in the qube (setuid programs behave as in a VM, within the qube),
 * under a tiny read-only overlay layer of ours: the lib/bulkhead mount point when the
 * host's /usr has none, and the names mount(8), umount(8) and libfuse run for a mount
 * in the qube (mount.ext4 & co., umount.fuse, fusermount), linked to our
 * bulkhead-fusermount, which mounts through the qube's FUSE broker (docs/devices.md).
 * They shadow the host's own names in the qube only (a real fusermount cannot mount
 * in a qube; Debian ships no mount.ext4). */
static const char *const usr_links[] = { "bin/fusermount", "sbin/mount.ext2", "sbin/mount.ext3", "sbin/mount.ext4",
                                         "sbin/umount.fuse" };

static int assemble_usr(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int userns_fd,
                        int rootfd, int rawfd, bh_error *err)
{
    const char *usr = spec->vol.host_usr;
    char path[4096];
    if (ensure_dir(rootfd, rawfd, "usr", spec->uid_base, err) < 0)
        return -1;
    _cleanup_close_ int fd = bh_idmapped_tree(usr, userns_fd, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NODEV, true, err);
    if (fd < 0)
        return bh_prefix(err, "host_usr");
    char ulow[4096], stub[4096], opts[9000], dst[64];
    JOIN(ulow, p->staging, "usr");
    JOIN(stub, p->staging, "usrstub/lib/bulkhead");
    if (mkdir(ulow, 0700) < 0 || bh_attach(fd, ulow, err) < 0 || bh_mkdir_p(stub, 0755) < 0)
        return bh_fail_errno(err, "usr stub");
    JOIN(path, p->staging, "usrstub/bin");
    if (mkdir(path, 0755) < 0)
        return bh_fail_errno(err, "usr stub");
    JOIN(path, p->staging, "usrstub/sbin");
    if (mkdir(path, 0755) < 0)
        return bh_fail_errno(err, "usr stub");
    /* Stub dirs shadow /usr, /usr/lib, /usr/bin and /usr/sbin's attributes: give them the
     * qube root's IDs (what the host's root-owned dirs show through the idmap). */
    const char *rels[] = { "usrstub", "usrstub/lib", "usrstub/lib/bulkhead", "usrstub/bin", "usrstub/sbin" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(rels); i++) {
        JOIN(path, p->staging, rels[i]);
        if (chown(path, spec->uid_base, spec->uid_base) < 0 || chmod(path, 0755) < 0)
            return bh_fail_errno(err, "chown %s", path);
    }
    for (size_t i = 0; i < BH_ARRAY_SIZE(usr_links); i++) {
        char rel[256];
        snprintf(rel, sizeof rel, "usrstub/%s", usr_links[i]);
        JOIN(path, p->staging, rel);
        if (symlink("/usr/lib/bulkhead/bulkhead-fusermount", path) < 0 ||
            lchown(path, spec->uid_base, spec->uid_base) < 0)
            return bh_fail_errno(err, "link %s", path);
    }
    JOIN(stub, p->staging, "usrstub");
    if (!overlay_safe(stub) || !overlay_safe(ulow))
        return bh_fail(err, EINVAL, "runtime path unusable for overlayfs");
    snprintf(opts, sizeof opts, "lowerdir=%s:%s", rel_to_staging(p, stub), rel_to_staging(p, ulow));
    _cleanup_close_ int t = target(rootfd, "usr", dst, sizeof dst, err);
    if (t < 0)
        return -1;
    if (mount("overlay", dst, "overlay", MS_RDONLY | MS_NODEV, opts) < 0)
        return bh_fail_errno(err, "mount /usr overlay");
    return 0;
}

static int assemble_dev(const struct bh_qube_spec *spec, int rootfd, int rawfd, bh_error *err)
{
    static const struct { const char *name; unsigned major, minor; } nodes[] = {
        { "null", 1, 3 }, { "zero", 1, 5 }, { "full", 1, 7 }, { "random", 1, 8 }, { "urandom", 1, 9 }, { "tty", 5, 0 },
        { "fuse", 10, 229 }, /* FUSE servers in the qube; mounts through its broker (fusebroker.c) */
    };
    char dst[64], o[128];
    if (ensure_dir(rootfd, rawfd, "dev", spec->uid_base, err) < 0)
        return -1;
    {
        _cleanup_close_ int t = target(rootfd, "dev", dst, sizeof dst, err);
        snprintf(o, sizeof o, "mode=0755,size=64k,nr_inodes=256,uid=%u,gid=%u", (unsigned)spec->uid_base, (unsigned)spec->uid_base);
        if (t < 0 || mount_tmpfs(dst, o, MS_NOSUID | MS_NOEXEC, err) < 0)
            return -1;
    }
    /* From here on /dev is our tmpfs: reopen it to get the new mount. */
    _cleanup_close_ int dev = bh_open_beneath(rootfd, "dev", true);
    _cleanup_close_ int devdir = dev < 0 ? -1 : openat(dev, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (devdir < 0)
        return bh_fail_errno(err, "open /dev");
    for (size_t i = 0; i < BH_ARRAY_SIZE(nodes); i++)
        if (make_node(devdir, nodes[i].name, nodes[i].major, nodes[i].minor, err) < 0)
            return -1;
    static const char *links[][2] = {
        { "ptmx", "pts/ptmx" }, { "fd", "/proc/self/fd" }, { "stdin", "/proc/self/fd/0" },
        { "stdout", "/proc/self/fd/1" }, { "stderr", "/proc/self/fd/2" },
    };
    for (size_t i = 0; i < BH_ARRAY_SIZE(links); i++)
        if (symlinkat(links[i][1], devdir, links[i][0]) < 0 ||
            fchownat(devdir, links[i][0], spec->uid_base, spec->uid_base, AT_SYMLINK_NOFOLLOW) < 0)
            return bh_fail_errno(err, "symlink /dev/%s", links[i][0]);
    if (mkdirat(devdir, "pts", 0755) < 0 || mkdirat(devdir, "shm", 0755) < 0)
        return bh_fail_errno(err, "mkdir in /dev");
    _cleanup_close_ int t = target(devdir, "shm", dst, sizeof dst, err);
    snprintf(o, sizeof o, "mode=1777,uid=%u,gid=%u", (unsigned)spec->uid_base, (unsigned)spec->uid_base);
    if (t < 0 || mount_tmpfs(dst, o, MS_NOSUID | MS_NODEV, err) < 0)
        return -1;
    return 0;
}

static int assemble_run(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int rootfd, int rawfd, bh_error *err)
{
    char dst[64], o[128];
    static const char *const tmpfs[][2] = { { "tmp", "mode=1777" }, { "run", "mode=0755" } };
    for (size_t i = 0; i < BH_ARRAY_SIZE(tmpfs); i++) {
        if (ensure_dir(rootfd, rawfd, tmpfs[i][0], spec->uid_base, err) < 0)
            return -1;
        _cleanup_close_ int t = target(rootfd, tmpfs[i][0], dst, sizeof dst, err);
        snprintf(o, sizeof o, "%s,uid=%u,gid=%u", tmpfs[i][1], (unsigned)spec->uid_base, (unsigned)spec->uid_base);
        if (t < 0 || mount_tmpfs(dst, o, MS_NOSUID | MS_NODEV, err) < 0)
            return -1;
    }
    /* /run is ours now. */
    const char *rels[] = { "run/qubes", "run/qubes/vchan" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(rels); i++)
        if (ensure_dir(rootfd, -1, rels[i], spec->uid_base, err) < 0)
            return -1;
    /* The qube's libvchan-socket directory, shared with the host side of qrexec. */
    _cleanup_close_ int t = target(rootfd, "run/qubes/vchan", dst, sizeof dst, err);
    if (t < 0)
        return -1;
    if (mount(p->vchan, dst, NULL, MS_BIND, NULL) < 0)
        return bh_fail_errno(err, "bind %s", p->vchan);
    _cleanup_close_ int top = target(rootfd, "run/qubes/vchan", dst, sizeof dst, err);
    if (top < 0 || mount(NULL, dst, NULL, MS_BIND | MS_REMOUNT | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return bh_fail_errno(err, "remount %s", p->vchan);
    return 0;
}

int bh_rootfs_assemble(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int userns_fd, bh_error *err)
{
    const struct bh_volume_layout *v = &spec->vol;
    /* Nothing we mount from here on may propagate back to the host. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return bh_fail_errno(err, "make / private");
    if (mount_tmpfs(p->staging, "mode=0711,size=1m", MS_NOSUID | MS_NODEV, err) < 0)
        return -1;
    if (chdir(p->staging) < 0) /* overlay options are given relative to it */
        return bh_fail_errno(err, "chdir %s", p->staging);
    if (mkdir(p->root, 0755) < 0)
        return bh_fail_errno(err, "mkdir %s", p->root);
    if (assemble_root(spec, p, userns_fd, err) < 0)
        return -1;
    _cleanup_close_ int rootfd = open(p->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return bh_fail_errno(err, "open %s", p->root);
    /* Missing mount points go into the raw persistent root when there is one. */
    _cleanup_close_ int rawfd = -1;
    if (!v->root_lower && v->root_rw && (rawfd = open(v->root_rw, O_PATH | O_DIRECTORY | O_CLOEXEC)) < 0)
        return bh_fail_errno(err, "open %s", v->root_rw);
    if (v->host_usr && assemble_usr(spec, p, userns_fd, rootfd, rawfd, err) < 0)
        return -1;
    if (v->private_img &&
        (ensure_dir(rootfd, rawfd, "rw", spec->uid_base, err) < 0 || ensure_dir(rootfd, rawfd, "home", spec->uid_base, err) < 0))
        return -1;
    if (ensure_dir(rootfd, rawfd, "proc", spec->uid_base, err) < 0 || ensure_dir(rootfd, rawfd, "sys", spec->uid_base, err) < 0)
        return -1;
    if (assemble_dev(spec, rootfd, rawfd, err) < 0 || assemble_run(spec, p, rootfd, rawfd, err) < 0)
        return -1;
    /* Our in-qube programs, read-only and not idmapped: host-owned, so no one in the
     * qube (not even its root) can write them. */
    if (!v->host_usr)
        for (const char *const *r = (const char *const[]){ "usr", "usr/lib", "usr/lib/bulkhead", NULL }; *r; r++)
            if (ensure_dir(rootfd, rawfd, *r, spec->uid_base, err) < 0)
                return -1;
    /* Through a read-only overlay whose only layer is given as an fd: a bind would
     * show the host's path of the programs (a build tree, a prefix) in the qube's
     * /proc/self/mountinfo; this shows "lowerdir=/proc/self/fd/N". */
    char opts[64], dst[64];
    _cleanup_close_ int lib = open(p->libexec, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (lib < 0)
        return bh_fail_errno(err, "bulkhead programs: open %s", p->libexec);
    /* Without an upper layer overlayfs wants two lower ones: an empty one below. */
    if (mkdir("libempty", 0755) < 0)
        return bh_fail_errno(err, "mkdir %s/libempty", p->staging);
    snprintf(opts, sizeof opts, "lowerdir=/proc/self/fd/%d:libempty", lib);
    _cleanup_close_ int t = target(rootfd, "usr/lib/bulkhead", dst, sizeof dst, err);
    if (t < 0)
        return -1;
    if (mount("bulkhead", dst, "overlay", MS_RDONLY | MS_NODEV | MS_NOSUID, opts) < 0)
        return bh_fail_errno(err, "mount the bulkhead programs");
    return 0;
}

/* A disposable's /rw: the shared read-only base (private_fd, idmapped) as the lower
 * layer of an overlay whose upper is a tmpfs of this qube's own, charged to its memory
 * cgroup and gone with its mount namespace. Its writes never reach the base, and no
 * other qube sees them (each disposable has its own upper). */
static int attach_private_layered(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int private_fd,
                                  int rootfd, bh_error *err)
{
    char lower[4096], vol[4096], upper[4096], work[4096], o[160], opts[12400], dst[64];
    JOIN(lower, p->staging, "plower");
    JOIN(vol, p->staging, "pvol");
    if (mkdir(lower, 0700) < 0 || bh_attach(private_fd, lower, err) < 0)
        return bh_prefix(err, "private base");
    struct stat lst;
    if (stat(lower, &lst) < 0)
        return bh_fail_errno(err, "stat %s", lower);
    struct stat bst;
    uint64_t size = spec->vol.private_img && stat(spec->vol.private_img, &bst) == 0 && bst.st_size > 0
                        ? (uint64_t)bst.st_size
                        : (2ull << 30);
    snprintf(o, sizeof o, "mode=0700,size=%llu", (unsigned long long)size);
    if (mkdir(vol, 0700) < 0 || mount_tmpfs(vol, o, MS_NOSUID | MS_NODEV, err) < 0)
        return bh_prefix(err, "throwaway private layer");
    JOIN(upper, vol, "upper");
    JOIN(work, vol, "work");
    if (mkdir(upper, lst.st_mode & 07777) < 0 || mkdir(work, 0700) < 0)
        return bh_fail_errno(err, "mkdir in %s", vol);
    /* The upper's top is /rw: it keeps the base's (idmapped) owner. */
    if (chown(upper, lst.st_uid, lst.st_gid) < 0)
        return bh_fail_errno(err, "chown %s", upper);
    if (!overlay_safe(lower) || !overlay_safe(upper) || !overlay_safe(work))
        return bh_fail(err, EINVAL, "runtime path unusable for overlayfs: %s", p->staging);
    snprintf(opts, sizeof opts, "lowerdir=%s,upperdir=%s,workdir=%s", rel_to_staging(p, lower),
             rel_to_staging(p, upper), rel_to_staging(p, work));
    _cleanup_close_ int t = target(rootfd, "rw", dst, sizeof dst, err);
    if (t < 0)
        return -1;
    if (mount("overlay", dst, "overlay", MS_NODEV | MS_NOSUID, opts) < 0)
        return bh_fail_errno(err, "mount the disposable's private layer");
    return 0;
}

int bh_rootfs_attach_private(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int private_fd,
                             bh_error *err)
{
    _cleanup_close_ int rootfd = open(p->root, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return bh_fail_errno(err, "open %s", p->root);
    if (spec->vol.private_throwaway)
        return attach_private_layered(spec, p, private_fd, rootfd, err);
    return attach_at(private_fd, rootfd, "rw", err);
}
