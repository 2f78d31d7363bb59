/* bulkhead-fuse-broker: makes FUSE mounts, and only those, for an ns qube's root.
 *
 * Why: a qube cannot mount anything (its Landlock domain refuses every mount call, so
 * the kernel's filesystem-mount code stays closed to it), and the host kernel must
 * never parse a filesystem a qube controls (an attached disk). A FUSE mount lets the
 * qube read such a disk with a filesystem in user space (fuse2fs) running inside the
 * qube: the host kernel only relays FUSE messages. The mount itself needs someone
 * outside Landlock; this broker is that someone, with no more rights than an
 * unprivileged user namespace root has for FUSE (FS_USERNS_MOUNT).
 *
 * How it runs: bulkheadd forks, joins the qube's cgroup and execs this program on the
 * host (its memory image then belongs to the host's user namespace: the qube's root
 * cannot ptrace it or read its memory, as for `bulkhead-ns exec`), with the qube init's
 * pidfd as fd 3. It joins the qube's namespaces, becomes the qube's root, forks into the
 * qube's PID namespace (so it dies with the qube: it holds the qube's mount namespace,
 * and with it the private volume's mount, only while the qube lives) and serves the
 * abstract socket BH_FUSEMOUNT_SOCKET of the qube's network namespace under a seccomp
 * allowlist. A second broker finds the name taken and exits: one per qube.
 *
 * What it does per request (fusemount.h): checks the peer is the qube's root, the
 * descriptor is /dev/fuse, the mount point a directory that is neither the qube's "/"
 * nor on its /dev, /dev/shm, /dev/pts (bulkheadd's block attach makes nodes in /dev)
 * or /proc (the broker unmounts through it); then fsopen("fuse")
 * with the qube's root as owner, nosuid and nodev always, and move_mount onto the
 * mount point. Unmount: only a mount this broker made, by the root of that mount.
 * Nothing here reads from a FUSE file system: statx with AT_STATX_DONT_SYNC never asks
 * the FUSE server, so a stuck server cannot stall the broker. Host processes never
 * touch a qube's FUSE mount either: the kernel refuses every process outside the
 * qube's user namespace access to it (fuse_allow_current_process) without asking the
 * server. */
#include "fusemount.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/mount.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <linux/magic.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_MOUNTS 64

static uint64_t made[MAX_MOUNTS]; /* mount ids of the FUSE mounts made here */
static size_t nmade;
static dev_t root_dev, proc_dev, dev_devs[3]; /* /dev, /dev/shm, /dev/pts */
static ino_t root_ino;

static int sys_fsopen(const char *fs, unsigned flags) { return (int)syscall(SYS_fsopen, fs, flags); }
static int sys_fsconfig(int fd, unsigned cmd, const char *key, const void *val, int aux)
{
    return (int)syscall(SYS_fsconfig, fd, cmd, key, val, aux);
}
static int sys_fsmount(int fd, unsigned flags, unsigned attr) { return (int)syscall(SYS_fsmount, fd, flags, attr); }
static int sys_move_mount(int from, const char *fp, int to, const char *tp, unsigned flags)
{
    return (int)syscall(SYS_move_mount, from, fp, to, tp, flags);
}

/* statx that never asks a FUSE server (cached attributes only). */
static int quick_statx(int fd, unsigned mask, struct statx *stx)
{
    return statx(fd, "", AT_EMPTY_PATH | AT_STATX_DONT_SYNC, mask, stx);
}

static int do_mount(const struct bh_fusemount_req *r, int fuse, int target)
{
    struct stat fst;
    if (fstat(fuse, &fst) < 0 || !S_ISCHR(fst.st_mode) || fst.st_rdev != makedev(10, 229))
        return EBADF;
    struct statx t;
    if (quick_statx(target, STATX_TYPE | STATX_MODE | STATX_INO, &t) < 0)
        return errno;
    if (!S_ISDIR(t.stx_mode))
        return ENOTDIR;
    dev_t tdev = makedev(t.stx_dev_major, t.stx_dev_minor);
    if ((tdev == root_dev && t.stx_ino == root_ino) || tdev == proc_dev || tdev == dev_devs[0] ||
        tdev == dev_devs[1] || tdev == dev_devs[2])
        return EPERM;
    if (nmade == MAX_MOUNTS)
        return EMFILE;
    int fs = sys_fsopen("fuse", FSOPEN_CLOEXEC);
    if (fs < 0)
        return errno;
    char fdnum[16], rootmode[16];
    snprintf(fdnum, sizeof fdnum, "%d", fuse);
    snprintf(rootmode, sizeof rootmode, "%o", (unsigned)(t.stx_mode & S_IFMT));
    int e = 0;
    if (sys_fsconfig(fs, FSCONFIG_SET_STRING, "source", r->source, 0) < 0 ||
        sys_fsconfig(fs, FSCONFIG_SET_STRING, "fd", fdnum, 0) < 0 ||
        sys_fsconfig(fs, FSCONFIG_SET_STRING, "rootmode", rootmode, 0) < 0 ||
        sys_fsconfig(fs, FSCONFIG_SET_STRING, "user_id", "0", 0) < 0 ||
        sys_fsconfig(fs, FSCONFIG_SET_STRING, "group_id", "0", 0) < 0 ||
        (r->subtype[0] && sys_fsconfig(fs, FSCONFIG_SET_STRING, "subtype", r->subtype, 0) < 0) ||
        ((r->flags & BH_FUSEMOUNT_ALLOW_OTHER) && sys_fsconfig(fs, FSCONFIG_SET_FLAG, "allow_other", NULL, 0) < 0) ||
        ((r->flags & BH_FUSEMOUNT_DEFAULT_PERMISSIONS) &&
         sys_fsconfig(fs, FSCONFIG_SET_FLAG, "default_permissions", NULL, 0) < 0) ||
        ((r->flags & BH_FUSEMOUNT_RDONLY) && sys_fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0) ||
        sys_fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        e = errno;
    unsigned attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | ((r->flags & BH_FUSEMOUNT_RDONLY) ? MOUNT_ATTR_RDONLY : 0) |
                    ((r->flags & BH_FUSEMOUNT_NOEXEC) ? MOUNT_ATTR_NOEXEC : 0);
    int m = e ? -1 : sys_fsmount(fs, FSMOUNT_CLOEXEC, attr);
    if (!e && m < 0)
        e = errno;
    close(fs);
    if (e)
        return e;
    struct statx ms;
    if (quick_statx(m, STATX_MNT_ID, &ms) < 0 || !(ms.stx_mask & STATX_MNT_ID) ||
        sys_move_mount(m, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) < 0)
        e = errno ? errno : EIO;
    close(m);
    if (!e)
        made[nmade++] = ms.stx_mnt_id;
    return e;
}

/* The unmount goes by the mount's root reached through /proc/self/fd (a path walk
 * through procfs: no permission check on the FUSE root, so no FUSE_ACCESS request that a
 * stuck server would never answer, as fchdir into it would send). */
static int do_umount(int target, int procfd)
{
    struct statx t;
    if (quick_statx(target, STATX_MNT_ID, &t) < 0)
        return errno;
    if (!(t.stx_mask & STATX_MNT_ID) || !(t.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) ||
        !(t.stx_attributes & STATX_ATTR_MOUNT_ROOT))
        return EINVAL;
    size_t i = 0;
    while (i < nmade && made[i] != t.stx_mnt_id)
        i++;
    if (i == nmade)
        return EPERM; /* not a mount this broker made: the qube's other mounts stay */
    char rel[32];
    snprintf(rel, sizeof rel, "self/fd/%d", target);
    int e = 0;
    if (fchdir(procfd) < 0 || syscall(SYS_umount2, rel, 2 /* MNT_DETACH */) < 0)
        e = errno;
    if (!e)
        made[i] = made[--nmade];
    return e;
}

static void serve_one(int c, int procfd)
{
    struct timeval tv = { 2, 0 }; /* a client that never sends holds the broker 2 s */
    (void)setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    char buf[sizeof(struct bh_fusemount_req) + 1];
    union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } ctl;
    struct iovec iov = { buf, sizeof buf };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    ssize_t n = recvmsg(c, &mh, MSG_CMSG_CLOEXEC);
    int fds[2] = { -1, -1 }, nfds = 0;
    for (struct cmsghdr *h = n < 0 ? NULL : CMSG_FIRSTHDR(&mh); h; h = CMSG_NXTHDR(&mh, h))
        if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
            size_t k = (h->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (size_t j = 0; j < k; j++) {
                int fd;
                memcpy(&fd, CMSG_DATA(h) + j * sizeof(int), sizeof fd);
                if (nfds < 2)
                    fds[nfds++] = fd;
                else
                    close(fd);
            }
        }
    int32_t answer = EINVAL;
    struct bh_fusemount_req r;
    struct ucred uc;
    socklen_t ul = sizeof uc;
    if (n < 0 || (mh.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || bh_fusemount_req_check(buf, (size_t)n, &r) < 0)
        answer = EINVAL;
    else if (getsockopt(c, SOL_SOCKET, SO_PEERCRED, &uc, &ul) < 0 || uc.uid != 0)
        answer = EPERM; /* mounting is root's, as outside a qube */
    else if (r.op == 'M' && nfds == 2)
        answer = do_mount(&r, fds[0], fds[1]);
    else if (r.op == 'U' && nfds == 1)
        answer = do_umount(fds[0], procfd);
    for (int i = 0; i < nfds; i++)
        close(fds[i]);
    (void)send(c, &answer, sizeof answer, MSG_NOSIGNAL);
}

/* After setup: only what serving requests takes; anything else ends the broker. */
static int allowlist(void)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
    if (!ctx)
        return -1;
    static const char *const ok[] = {
        "accept4", "recvmsg", "sendto", "sendmsg", "setsockopt", "getsockopt", "close", "fstat", "newfstatat",
        "statx", "fsopen", "fsconfig", "fsmount", "move_mount", "fchdir", "umount2", "exit", "exit_group",
        "rt_sigreturn", "write",
    };
    int r = 0;
    for (size_t i = 0; i < sizeof ok / sizeof ok[0] && r == 0; i++) {
        int nr = seccomp_syscall_resolve_name(ok[i]);
        r = nr == __NR_SCMP_ERROR ? -1 : seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
    }
    if (r == 0)
        r = seccomp_load(ctx);
    seccomp_release(ctx);
    return r;
}

int main(void)
{
    /* fd 3: pidfd of the qube's init. Everything else was closed by bulkheadd. */
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                CLONE_NEWCGROUP | CLONE_NEWTIME;
    if (setns(3, flags) < 0) {
        perror("bulkhead-fuse-broker: setns");
        return 1;
    }
    close(3);
    if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0 || chdir("/") < 0) {
        perror("bulkhead-fuse-broker: becoming the qube's root");
        return 1;
    }
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0); /* a credential change may have reset it */
    pid_t pid = fork();                  /* into the qube's PID namespace */
    if (pid < 0)
        return 1;
    if (pid > 0)
        _exit(0); /* not exit(): nothing to flush, and no atexit work (a sanitizer's leak
                   * check at exit cannot trace this undumpable process and spins) */
    (void)setsid();
    signal(SIGPIPE, SIG_IGN);
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    memcpy(a.sun_path + 1, BH_FUSEMOUNT_SOCKET, strlen(BH_FUSEMOUNT_SOCKET));
    socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(BH_FUSEMOUNT_SOCKET));
    if (s < 0 || bind(s, (struct sockaddr *)&a, al) < 0)
        _exit(errno == EADDRINUSE ? 0 : 1); /* a broker serves this qube already */
    if (listen(s, 8) < 0)
        _exit(1);
    int rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    struct stat rst;
    if (rootfd < 0 || fstat(rootfd, &rst) < 0)
        _exit(1);
    close(rootfd);
    static const char *const devs[] = { "/dev", "/dev/shm", "/dev/pts" };
    for (size_t i = 0; i < 3; i++) {
        struct stat dst;
        if (stat(devs[i], &dst) < 0)
            _exit(1);
        dev_devs[i] = dst.st_dev;
    }
    /* The qube's procfs, kept from the start (before this broker made any mount). */
    int procfd = open("/proc", O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    struct statfs pfs;
    struct stat pst;
    if (procfd < 0 || fstatfs(procfd, &pfs) < 0 || pfs.f_type != PROC_SUPER_MAGIC || fstat(procfd, &pst) < 0)
        _exit(1);
    proc_dev = pst.st_dev;
    root_dev = rst.st_dev, root_ino = rst.st_ino;
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || dup2(null, 2) < 0)
        _exit(1);
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 || allowlist() < 0)
        _exit(1);
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0 && (errno == EINTR || errno == ECONNABORTED))
            continue;
        if (c < 0)
            _exit(1); /* never spin: the next block attach starts a new broker */
        serve_one(c, procfd);
        close(c);
    }
}
