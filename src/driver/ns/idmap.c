/* The qube's user namespace and idmapped mounts.
 *
 * Each qube owns a disjoint range of host UIDs/GIDs (spec->uid_base, uid_count): its
 * root is host UID uid_base, which owns nothing on the host. Files of a template or a
 * private image are stored on disk with plain 0-based IDs; an idmapped mount through
 * the qube's user namespace makes them appear as the qube's own IDs, so one template
 * tree serves qubes with different ranges and never needs a recursive chown. */
#include "ns.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int write_map(pid_t pid, const char *file, uid_t inner, uid_t base, uint32_t count, bh_error *err)
{
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int n = snprintf(line, sizeof line, "%u %u %u\n", (unsigned)inner, (unsigned)base, count);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, line, (size_t)n) != n)
        return bh_fail_errno(err, "writing %s", path);
    return 0;
}

/* Kernel objects a qube's root may create, counted for the whole qube (all its UIDs and
 * nested namespaces) by the kernel's per-user-namespace ucounts. */
static const struct { const char *sysctl; const char *env; long def; } limits[] = {
    { "max_user_namespaces", "BULKHEAD_NS_MAX_USER_NAMESPACES", BH_NS_MAX_USER_NS },
    { "max_net_namespaces", "BULKHEAD_NS_MAX_NAMESPACES", BH_NS_MAX_NS },
    { "max_mnt_namespaces", "BULKHEAD_NS_MAX_NAMESPACES", BH_NS_MAX_NS },
    { "max_pid_namespaces", "BULKHEAD_NS_MAX_NAMESPACES", BH_NS_MAX_NS },
    { "max_ipc_namespaces", "BULKHEAD_NS_MAX_NAMESPACES", BH_NS_MAX_NS },
    { "max_uts_namespaces", "BULKHEAD_NS_MAX_NAMESPACES", BH_NS_MAX_NS },
    { "max_cgroup_namespaces", "BULKHEAD_NS_MAX_NAMESPACES", BH_NS_MAX_NS },
    { "max_time_namespaces", "BULKHEAD_NS_MAX_NAMESPACES", BH_NS_MAX_NS },
    { "max_inotify_instances", "BULKHEAD_NS_MAX_INOTIFY_INSTANCES", BH_NS_MAX_INOTIFY_INSTANCES },
    { "max_inotify_watches", "BULKHEAD_NS_MAX_INOTIFY_WATCHES", BH_NS_MAX_INOTIFY_WATCHES },
    { "max_fanotify_groups", "BULKHEAD_NS_MAX_FANOTIFY_GROUPS", BH_NS_MAX_FANOTIFY_GROUPS },
};

static long limit_value(size_t i)
{
    const char *e = getenv(limits[i].env);
    char *end;
    long v = e && *e ? strtol(e, &end, 10) : -1;
    if (v < 0 || v > 0x7fffffffL || (e && *end))
        v = limits[i].def;
    /* The qube's own namespaces (made by stage 1) count too. */
    return i <= 7 ? v + 1 : v;
}

/* The holder, in its outer namespace: sets the limits (the sysctls of /proc/sys/user
 * are those of the writer's user namespace; its creator has CAP_SYS_RESOURCE there). */
static int set_limits(void)
{
    for (size_t i = 0; i < BH_ARRAY_SIZE(limits); i++) {
        char path[96], val[32];
        snprintf(path, sizeof path, "/proc/sys/user/%s", limits[i].sysctl);
        int n = snprintf(val, sizeof val, "%ld\n", limit_value(i));
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0) {
            if (errno == ENOENT) /* an older kernel without this counter */
                continue;
            return -1;
        }
        ssize_t w = write(fd, val, (size_t)n);
        close(fd);
        if (w != n)
            return -1;
    }
    return 0;
}

/* The qube's namespace is made by a child of the holder that shares the holder's memory
 * (clone(CLONE_VM | CLONE_NEWUSER), its own small stack): the holder stays in the outer
 * namespace, the parent of the child's, where it may write the child's maps (the kernel
 * takes them only from a process in that namespace or its parent, holding CAP_SETUID in
 * the parent), then joins the child's namespace itself. It used to be the other way round
 * (the holder unshared, a forked helper in the outer namespace wrote its maps): a fork of
 * the holder, itself a copy of bulkheadd, with its page tables copied and torn down again
 * at every start. The child shares only the holder's memory (already a copy of the
 * daemon's, and the holder is as exposed as before); it makes no library calls: raw
 * system calls on its own stack, no errno, no TLS of its own. */
struct inner_child {
    int go[2]; /* the child reads go[0]: EOF releases it */
};

static int inner_child_main(void *arg)
{
    const struct inner_child *a = arg;
    char c;
    /* its own copy of the fd table (no CLONE_FILES): drop the write end, or no EOF */
    (void)syscall(SYS_close, a->go[1]);
    (void)syscall(SYS_read, a->go[0], &c, 1);
    syscall(SYS_exit, 0);
    return 0;
}

static _Alignas(16) char inner_stack[16384];

static int make_inner(uid_t base, uint32_t count, char *step)
{
    int go[2];
    *step = 'p';
    if (pipe2(go, O_CLOEXEC) < 0)
        return -1;
    struct inner_child a = { .go = { go[0], go[1] } };
    *step = 'n';
    pid_t child = clone(inner_child_main, inner_stack + sizeof inner_stack, CLONE_VM | CLONE_NEWUSER | SIGCHLD, &a);
    if (child < 0) {
        close(go[0]), close(go[1]);
        return -1;
    }
    close(go[0]);
    *step = 'm';
    int r = -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)child);
    if (write_map(child, "uid_map", 0, base, count, NULL) == 0 &&
        write_map(child, "gid_map", 0, base, count, NULL) == 0) {
        int ns = open(path, O_RDONLY | O_CLOEXEC);
        *step = 'n';
        if (ns >= 0 && setns(ns, CLONE_NEWUSER) == 0)
            r = 0;
        if (ns >= 0)
            close(ns);
    }
    close(go[1]); /* EOF: the child exits */
    while (waitpid(child, NULL, __WALL) < 0 && errno == EINTR)
        ;
    return r;
}

static __attribute__((noreturn)) void holder(uid_t base, uint32_t count, int up, int down)
{
    char c;
    /* Owner of the outer namespace: the qube's first host UID, not host root, so that
     * the kernel's host-wide per-user counters (inotify instances, namespaces, ...) of
     * this qube are its own and never host root's (which bulkheadd itself needs).
     * CAP_SYS_ADMIN is kept across the UID change: some kernels allow creating user
     * namespaces to privileged callers only. */
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2] = { { 0 } };
    c = 'e';
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresgid(base, base, base) < 0 ||
        setresuid(base, base, base) < 0)
        goto out;
    d[0].permitted = d[0].effective = 1u << CAP_SYS_ADMIN;
    if (syscall(SYS_capset, &h, d) < 0)
        goto out;
    /* The UID change made us undumpable, which gives our /proc files to host root; we
     * (UID base, no host capability) open our child's uid_map, and bulkheadd writes ours.
     * No qube process can see this one (PID namespaces). */
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0 || unshare(CLONE_NEWUSER) < 0)
        goto out;
    c = 'o';
    if (write(up, &c, 1) != 1 || read(down, &c, 1) != 1 || c != 'g')
        _exit(1);
    c = 'e';
    if (set_limits() == 0 && make_inner(base, count, &c) == 0)
        c = 'u';
out:
    if (write(up, &c, 1) != 1)
        _exit(1);
    (void)!read(down, &c, 1);
    _exit(0);
}

/* The short-lived child both creators below use, and its pipes: up (child to caller)
 * and down (caller to child; its EOF releases the child). Returns the child's pid in
 * the caller, which keeps up[0] and down[1]; 0 in the child, which keeps up[1] and
 * down[0]; -1 (nothing left open) on failure. */
static pid_t helper_fork(uid_t base, uint32_t count, int up[2], int down[2], bh_error *err)
{
    if (base == 0 || count == 0 || (uint64_t)base + count > 0xFFFFFFFFull)
        return bh_fail(err, EINVAL, "bad UID range %u+%u", (unsigned)base, count);
    if (pipe2(up, O_CLOEXEC) < 0)
        return bh_fail_errno(err, "pipe");
    if (pipe2(down, O_CLOEXEC) < 0) {
        close(up[0]), close(up[1]);
        return bh_fail_errno(err, "pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(up[0]), close(up[1]), close(down[0]), close(down[1]);
        return bh_fail_errno(err, "fork");
    }
    close(pid == 0 ? up[0] : up[1]);
    close(pid == 0 ? down[1] : down[0]);
    return pid;
}

/* The caller's end of helper_fork: its pipe ends closed (EOF releases the child), the
 * child killed and reaped. */
static void helper_end(pid_t pid, int up0, int down1)
{
    close(up0);
    close(down1);
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

int bh_userns_create(uid_t base, uint32_t count, bh_error *err)
{
    int up[2], down[2];
    pid_t pid = helper_fork(base, count, up, down, err);
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* The holder runs as the qube's first host UID and is dumpable: it keeps its two
         * pipe ends and stdio, none of the caller's fds (bulkheadd's socket, store,
         * claims; close-on-exec does nothing here, the holder never execs). Its stdio
         * cannot hold a caller's pipe open past the caller: it lives only within this
         * call (killed and reaped before it returns) and, should the caller die first,
         * ends on EOF of down. */
        int lo = up[1] < down[0] ? up[1] : down[0], hi = up[1] < down[0] ? down[0] : up[1];
        if ((lo > 3 && close_range(3, (unsigned)lo - 1, 0) < 0) ||
            (hi > lo + 1 && close_range((unsigned)lo + 1, (unsigned)hi - 1, 0) < 0) ||
            close_range((unsigned)hi + 1, ~0U, 0) < 0) {
            /* said to the caller, or its message would blame the namespace: 'c', errno */
            char m[2] = { 'c', (char)errno }; /* every errno is below 256 */
            (void)!write(up[1], m, sizeof m);
            _exit(1);
        }
        holder(base, count, up[1], down[0]);
    }
    int ret = -1;
    char c = 0;
    /* Outer namespace: the qube's range mapped to itself, limits set inside it by the
     * holder; the qube's root has no capability there, so it cannot raise them. */
    if (read(up[0], &c, 1) != 1 || c != 'o') {
        unsigned char e = 0;
        if (c == 'c' && read(up[0], &e, 1) == 1)
            bh_fail(err, e, "the user namespace holder could not close the caller's fds (close_range: %s)",
                    strerror(e));
        else
            bh_fail(err, EPERM, "creating the qube's outer user namespace failed");
        goto out;
    }
    if (write_map(pid, "uid_map", base, base, count, err) < 0 || write_map(pid, "gid_map", base, base, count, err) < 0) {
        bh_prefix(err, "the qube's outer user namespace");
        goto out;
    }
    c = 'g';
    if (write(down[1], &c, 1) != 1 || read(up[0], &c, 1) != 1 || c != 'u') {
        bh_fail(err, EPERM, "creating the qube's user namespace failed (%s)",
                c == 'e' ? "limits" : c == 'm' ? "maps" : c == 'p' ? "pipe" : "namespace");
        goto out;
    }
    /* The qube's namespace (made by the holder's child, mapped by the holder, joined by
     * the holder): its 0..count-1 are the outer (= host) base..base+count-1. */
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    ret = open(path, O_RDONLY | O_CLOEXEC);
    if (ret < 0)
        bh_fail_errno(err, "open %s", path);
out:
    helper_end(pid, up[0], down[1]); /* EOF releases the holder */
    return ret;
}

int bh_userns_create_rooted(uid_t base, uint32_t count, bh_error *err)
{
    int up[2], down[2];
    pid_t pid = helper_fork(base, count, up, down, err);
    if (pid < 0)
        return -1;
    if (pid == 0) {
        /* lives only within this call (killed and reaped before it returns; EOF on
         * down if the caller dies first) and never execs */
        char c = unshare(CLONE_NEWUSER) == 0 ? 'o' : 'e';
        if (write(up[1], &c, 1) != 1)
            _exit(1);
        (void)!read(down[0], &c, 1);
        _exit(0);
    }
    int ret = -1;
    char c = 0;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    if (read(up[0], &c, 1) != 1 || c != 'o')
        bh_fail(err, EPERM, "creating a user namespace failed");
    else if (write_map(pid, "uid_map", 0, base, count, err) == 0 && write_map(pid, "gid_map", 0, base, count, err) == 0 &&
             (ret = open(path, O_RDONLY | O_CLOEXEC)) < 0)
        bh_fail_errno(err, "open %s", path);
    helper_end(pid, up[0], down[1]);
    return ret;
}

int bh_mount_setattr_fd(int mfd, int userns_fd, uint64_t attr_set, bh_error *err)
{
    struct mount_attr attr = { .attr_set = attr_set };
    if (userns_fd >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
    }
    if (attr.attr_set == 0)
        return 0;
    if (mount_setattr(mfd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return bh_fail_errno(err, "mount_setattr");
    return 0;
}

int bh_idmapped_tree(const char *path, int userns_fd, uint64_t attr_set, bool rec, bh_error *err)
{
    _cleanup_close_ int fd = open_tree(AT_FDCWD, path,
                                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0));
    if (fd < 0)
        return bh_fail_errno(err, "open_tree %s", path);
    if (bh_mount_setattr_fd(fd, userns_fd, attr_set, err) < 0)
        return bh_prefix(err, "%s", path);
    return steal_fd(&fd);
}

int bh_attach(int mfd, const char *path, bh_error *err)
{
    if (move_mount(mfd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return bh_fail_errno(err, "move_mount to %s", path);
    return 0;
}
