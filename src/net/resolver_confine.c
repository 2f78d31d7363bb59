/* The resolver helper's confinement (see resolver.h): what it parses comes from the
 * network, so once it has joined the uplink's namespace it keeps only what resolving
 * needs — an empty, read-only root holding the uplink's resolv.conf (libresolv reads it
 * for its options; the servers themselves are passed in memory), no root, no
 * capabilities, and a seccomp allowlist of the calls a DNS query makes. */
#include "resolver.h"
#include "confine.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

/* A new mount namespace whose root is a small read-only tmpfs with /etc/resolv.conf
 * (bound read-only from resolv_conf, if given) and nothing else. */
static int empty_root(const char *resolv_conf, bh_error *err)
{
    const char *nr = "/tmp"; /* any directory: the tmpfs on it is private to us */
    if (unshare(CLONE_NEWNS) < 0)
        return bh_fail_errno(err, "unshare mount namespace");
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return bh_fail_errno(err, "make mounts private");
    if (mount("bulkhead-resolver", nr, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=64k,nr_inodes=16,mode=0755") < 0)
        return bh_fail_errno(err, "tmpfs");
    if (mkdir("/tmp/etc", 0755) < 0 || mkdir("/tmp/old", 0700) < 0)
        return bh_fail_errno(err, "mkdir");
    if (resolv_conf) {
        int fd = open("/tmp/etc/resolv.conf", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0)
            return bh_fail_errno(err, "resolv.conf");
        close(fd);
        /* a missing file is fine: libresolv then uses its defaults */
        if (mount(resolv_conf, "/tmp/etc/resolv.conf", NULL, MS_BIND, NULL) == 0 &&
            mount(NULL, "/tmp/etc/resolv.conf", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC,
                  NULL) < 0)
            return bh_fail_errno(err, "read-only resolv.conf");
    }
    if (syscall(SYS_pivot_root, nr, "/tmp/old") < 0)
        return bh_fail_errno(err, "pivot_root");
    if (chdir("/") < 0 || umount2("/old", MNT_DETACH) < 0 || rmdir("/old") < 0)
        return bh_fail_errno(err, "leaving the old root");
    if (mount(NULL, "/", NULL, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return bh_fail_errno(err, "read-only root");
    return 0;
}

static int drop_root(bh_error *err)
{
    /* nobody/nogroup, no capabilities left, nothing regained by exec */
    if (bh_confine_ids(65534, 65534, err) < 0)
        return bh_prefix(err, "drop to nobody");
    if (bh_confine_clear_caps(err) < 0 || bh_confine_no_new_privs(err) < 0)
        return -1;
    return 0;
}

static const char *const allowed[] = {
    /* the daemon's socket and the DNS sockets (UDP, TCP for long answers) */
    "recvfrom", "recvmsg", "sendto", "sendmsg", "sendmmsg", "read", "write", "readv", "writev",
    "poll", "ppoll", "close", "connect", "setsockopt", "getsockopt", "getsockname", "fcntl",
    /* libresolv reads resolv.conf and host.conf (read-only opens: see below) */
    "newfstatat", "fstat", "lseek", "uname",
    /* memory (malloc); mmap and mprotect too, never executable (confine.h) */
    "brk", "munmap", "mremap", "madvise",
    "rt_sigreturn", "rt_sigprocmask", "restart_syscall",
    "clock_gettime", "gettimeofday", "time", "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
    "getrandom", "futex",
    "exit", "exit_group",
};

static int filter(bh_error *err)
{
    /* ASan and UBSan need more at a report: logged there, not killed (confine.h) */
    scmp_filter_ctx ctx = bh_allowlist_new(bh_allowlist_default(), allowed, sizeof allowed / sizeof *allowed, err);
    if (!ctx)
        return -1;
    /* sockets: IPv4 and IPv6 only (no packet, netlink or Unix socket) */
    int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_INET, 0));
    if (!rc)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_INET6, 0));
    /* files: read-only opens (the root holds resolv.conf and nothing else anyway) */
    if (!rc)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(openat), 1,
                              SCMP_A2(SCMP_CMP_MASKED_EQ, O_ACCMODE | O_CREAT | O_TRUNC, O_RDONLY));
    return bh_seccomp_load(ctx, rc, err);
}

int bh_resolver_confine(const char *resolv_conf, bh_error *err)
{
    if (empty_root(resolv_conf, err) < 0 || drop_root(err) < 0)
        return -1;
    return filter(err);
}
