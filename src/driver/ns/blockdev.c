/* Block devices handed to a running ns qube (Qubes' `qvm-block attach`).
 *
 * Two things let a qube use a host block device, and both are needed:
 *  - the qube's device filter must allow major:minor (cgroup v1: devices.allow; v2: the
 *    BPF device program, devbpf.c) ("r" for a read-only attach:
 *    the kernel then refuses every open for writing, whatever the node's mode);
 *  - a node must exist in its /dev. The qube's root cannot mknod (user namespace), so
 *    a short-lived child of bulkheadd joins the qube's mount namespace as host root
 *    and makes the node in /dev, owned by the qube's root.
 * Detach denies the device first, then removes the node. A file descriptor the qube
 * opened before the detach stays usable until it is closed (the ns engine cannot
 * revoke an open block device; see docs/devices.md). */
#include "ns.h"
#include "cleanup.h"
#include "log.h"
#include <linux/close_range.h>
#include <signal.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

/* A node name is one path component: lower-case letters and digits only. */
static bool node_ok(const char *node)
{
    size_t n = strlen(node);
    if (n == 0 || n > 31)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((node[i] >= 'a' && node[i] <= 'z') || (node[i] >= '0' && node[i] <= '9')))
            return false;
    return true;
}

enum { MAKE_NODE, REMOVE_NODE };

/* In a child: join the qube's mount namespace, then make or remove /dev/<node>. The
 * qube owns its /dev: every path is resolved without following its symlinks, and the
 * node is created exclusively (an existing name is an error, never reused). */
static int in_qube_dev(const struct bh_qube_spec *spec, int pidfd, int what, dev_t dev, bool rw, const char *node,
                       bh_error *err)
{
    pid_t pid = fork();
    if (pid < 0)
        return bh_fail_errno(err, "fork");
    if (pid == 0) {
        if (setns(pidfd, CLONE_NEWNS) < 0)
            _exit(100);
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int devdir = root < 0 ? -1 : bh_open_beneath(root, "dev", true);
        if (devdir < 0)
            _exit(101);
        if (what == REMOVE_NODE) {
            if (unlinkat(devdir, node, 0) < 0 && errno != ENOENT)
                _exit(102);
            _exit(0);
        }
        if (mknodat(devdir, node, S_IFBLK | (rw ? 0660 : 0440), dev) < 0)
            _exit(errno == EEXIST ? 103 : 104);
        /* The owner is set through a handle on the node just made, never by name: the
         * qube's root could put a mount over the name in between (a bind of a host
         * device node in its /dev), and a chown by name would follow it. The handle
         * must be our block node, on the qube's own /dev. */
        struct stat dst, nst;
        int nfd = openat(devdir, node, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (nfd < 0 || fstat(nfd, &nst) < 0 || fstat(devdir, &dst) < 0 || !S_ISBLK(nst.st_mode) ||
            nst.st_rdev != dev || nst.st_dev != dst.st_dev ||
            fchownat(nfd, "", spec->uid_base, spec->uid_base, AT_EMPTY_PATH) < 0) {
            (void)unlinkat(devdir, node, 0);
            _exit(105);
        }
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return bh_fail_errno(err, "waitpid");
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0)
        return 0;
    int code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
    if (code == 103)
        return bh_fail(err, EEXIST, "/dev/%s already exists in qube %s", node, spec->name);
    return bh_fail(err, EIO, "%s /dev/%s in qube %s failed (step %d)", what == MAKE_NODE ? "creating" : "removing",
                   node, spec->name, code);
}

/* The qube's FUSE mount broker (fusebroker.c), so that it can mount what it was
 * given: started at each attach, it exits at once when one already serves the qube
 * (the abstract socket name is taken). A short-lived child of ours joins the qube's
 * cgroup and execs the broker on the host side (its memory image is the host's, not
 * the qube's to ptrace); the broker joins the qube's namespaces and forks into its PID
 * namespace, and this child's wait ends when the broker's first process has. A failure
 * is logged: the device is attached all the same, only mounting it will not work. */
static void start_fuse_broker(const struct bh_qube_spec *spec, int pidfd)
{
    char dir[4096], path[4200], tag[64];
    if (bh_ns_libexec_dir(dir, sizeof dir) < 0) {
        bh_warn("qube %s: no bulkhead-fuse-broker (our programs' directory is unknown)", spec->name);
        return;
    }
    snprintf(path, sizeof path, "%s/bulkhead-fuse-broker", dir);
    bh_cgroup_tag(spec, tag, sizeof tag);
    pid_t pid = fork();
    if (pid < 0)
        return;
    if (pid == 0) {
        bh_error e = { 0 };
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
            _exit(120);
        if ((pidfd == 3 ? fcntl(3, F_SETFD, 0) : dup2(pidfd, 3)) < 0 || close_range(4, ~0U, 0) < 0)
            _exit(121);
        if (bh_cgroup_ops()->attach_self(tag, spec->name, &e) < 0)
            _exit(122);
        char *const argv[] = { "bulkhead-fuse-broker", NULL }, *const envp[] = { NULL };
        execve(path, argv, envp);
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        bh_warn("qube %s: the FUSE mount broker did not start (status %d)", spec->name,
                WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

int bh_ns_block_attach(const struct bh_qube_spec *spec, unsigned major, unsigned minor, const char *node, bool rw,
                       bh_error *err)
{
    if (!node_ok(node))
        return bh_fail(err, EINVAL, "invalid device node name");
    struct bh_init_id id;
    _cleanup_close_ int pidfd = bh_init_open_verified(spec, &id);
    if (pidfd < 0)
        return bh_fail(err, ESRCH, "qube %s is not running", spec->name);
    char tag[64];
    bh_cgroup_tag(spec, tag, sizeof tag);
    const struct bh_cgroup_ops *cg = bh_cgroup_ops();
    if (cg->device_access(tag, spec->name, major, minor, rw ? "rw" : "r", err) < 0)
        return -1;
    if (in_qube_dev(spec, pidfd, MAKE_NODE, makedev(major, minor), rw, node, err) < 0) {
        bh_error ignored;
        (void)cg->device_access(tag, spec->name, major, minor, NULL, &ignored);
        return -1;
    }
    /* A paused qube's cgroup would freeze the broker's helper before its exec, and this
     * wait with it (and unpausing needs bulkheadd): the broker comes with the next attach
     * to the running qube instead. */
    if (cg->frozen(tag, spec->name) == 1)
        bh_warn("qube %s is paused: its FUSE mount broker starts at the next attach after unpause", spec->name);
    else
        start_fuse_broker(spec, pidfd);
    return 0;
}

int bh_ns_block_detach(const struct bh_qube_spec *spec, unsigned major, unsigned minor, const char *node,
                       bh_error *err)
{
    if (!node_ok(node))
        return bh_fail(err, EINVAL, "invalid device node name");
    char tag[64];
    bh_cgroup_tag(spec, tag, sizeof tag);
    /* Access goes first: from here on no new open succeeds, node or not. */
    if (bh_cgroup_ops()->device_access(tag, spec->name, major, minor, NULL, err) < 0)
        return -1;
    struct bh_init_id id;
    _cleanup_close_ int pidfd = bh_init_open_verified(spec, &id);
    if (pidfd < 0)
        return 0; /* halted meanwhile: its /dev is gone with it */
    return in_qube_dev(spec, pidfd, REMOVE_NODE, 0, false, node, err);
}

/* Adoption by a restarted bulkheadd: the qube's cgroup no longer lets it open any block
 * device (revoke_blocks); its nodes go too, so that the names are free for the new
 * daemon's attachments. Only block nodes directly in /dev are made by attach. */
void bh_ns_block_forget_nodes(const struct bh_qube_spec *spec)
{
    struct bh_init_id id;
    _cleanup_close_ int pidfd = bh_init_open_verified(spec, &id);
    if (pidfd < 0)
        return;
    pid_t pid = fork();
    if (pid < 0)
        return;
    if (pid == 0) {
        if (setns(pidfd, CLONE_NEWNS) < 0)
            _exit(100);
        int root = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        int devdir = root < 0 ? -1 : bh_open_beneath(root, "dev", true);
        int fd = devdir < 0 ? -1 : openat(devdir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        DIR *d = fd < 0 ? NULL : fdopendir(fd);
        if (!d)
            _exit(101);
        struct dirent *e;
        while ((e = readdir(d))) {
            struct stat st;
            if (node_ok(e->d_name) && fstatat(devdir, e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISBLK(st.st_mode))
                (void)unlinkat(devdir, e->d_name, 0);
        }
        _exit(0);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
}
