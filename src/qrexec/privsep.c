/* Dropping privileges and the allowlist seccomp filter of qrexec-daemon's unprivileged
 * processes (see privsep.h). The list was taken from strace of the daemon serving
 * qvm-run, qube-to-qube calls, file copies and disposable calls; each entry says why. */
#include "privsep.h"
#include "confine.h"
#include <errno.h>
#include <grp.h>
#include <sched.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

uid_t bh_qx_unpriv_id(uint32_t qid)
{
    return (uid_t)(BH_QX_UNPRIV_ID_BASE + (qid & 0xffff));
}

uid_t bh_qx_call_uid(uint32_t qid)
{
    return (uid_t)(BH_QX_CALL_ID_BASE + (qid & 0xffff));
}

int bh_qx_drop_privileges(uid_t id, bh_error *err)
{
    return bh_qx_drop_to(id, (gid_t)id, err);
}

int bh_qx_drop_to(uid_t id, gid_t gid, bh_error *err)
{
    return bh_qx_drop_to_keeping(id, gid, id, err);
}

/* bh_confine_ids, but with `later` left as the saved UID and GID. */
static int ids_keeping(uid_t id, gid_t gid, uid_t later, bh_error *err)
{
    if (later == id && (gid_t)later == gid)
        return bh_confine_ids(id, gid, err);
    if (setgroups(0, NULL) < 0)
        return bh_fail_errno(err, "setgroups");
    if (setresgid(gid, gid, (gid_t)later) < 0)
        return bh_fail_errno(err, "setresgid %u", (unsigned)gid);
    if (setresuid(id, id, later) < 0)
        return bh_fail_errno(err, "setresuid %u", (unsigned)id);
    if (getgroups(0, NULL) != 0)
        return bh_fail(err, EPERM, "supplementary groups left after dropping to %u", (unsigned)id);
    return bh_confine_ids_are(id, gid, later, (gid_t)later, err);
}

int bh_qx_drop_to_keeping(uid_t id, gid_t gid, uid_t later, bh_error *err)
{
    if (geteuid() == 0) {
        /* the bounding set too: nothing exec'd later can regain a capability */
        if (bh_confine_bounding_set(err) < 0)
            return -1;
        /* all three UIDs non-zero: the kernel clears every capability set */
        if (ids_keeping(id, gid, later, err) < 0)
            return -1;
        if (!bh_confine_caps_empty())
            return bh_fail(err, EPERM, "capabilities left after dropping to %u", (unsigned)id);
        /* the ambient set needs the permitted one, which is now empty */
    } else {
        /* Not root: a parent that dropped with bh_qx_drop_to_keeping(..., id) left us
         * id as the saved UID and GID; becoming it sheds the parent's identity (a call
         * process's relay gives up the call identity and its group). Anything else is
         * refused, not run as whoever we are: a relay that stayed the call identity
         * would keep its reach (bulkheadd's socket) while moving the qube's bytes. */
        uid_t ru, eu, su;
        gid_t rg, eg, sg;
        if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
            return bh_fail_errno(err, "reading the IDs");
        if (su != id || sg != gid)
            return bh_fail(err, EPERM, "cannot become %u: the saved IDs are uid %u gid %u", (unsigned)id,
                           (unsigned)su, (unsigned)sg);
        if (setresgid(gid, gid, gid) < 0)
            return bh_fail_errno(err, "setresgid %u", (unsigned)gid);
        if (setresuid(id, id, id) < 0)
            return bh_fail_errno(err, "setresuid %u", (unsigned)id);
        if (bh_confine_ids_are(id, gid, id, gid, err) < 0)
            return -1;
    }
    if (bh_confine_no_new_privs(err) < 0)
        return -1;
    /* not dumpable: no ptrace or /proc/PID/mem even by the same UID */
    return bh_confine_undumpable(err);
}

static const char *const allowed[] = {
    /* moving bytes over the fds the process was given */
    "read", "write", "readv", "writev", "recvfrom", "recvmsg", "sendto", "sendmsg",
    "poll", "ppoll", "close", "shutdown",
    "accept4", "accept",     /* dom0 clients on the inherited listening socket */
    "setsockopt",            /* send/receive timeouts of an accepted client */
    "getsockopt",
    "fcntl",                 /* O_NONBLOCK on fds of the data stream */
    "pipe2", "pipe", "splice", /* the qube-to-qube relay (relay.c) splices through a pipe */
    /* memory (malloc) */
    "brk", "munmap", "mremap", "madvise", /* mmap and mprotect too, never executable (confine.h) */
    /* signals: the handlers are set before the filter; TERM ends the loop */
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "restart_syscall",
    /* time (vDSO normally; the syscalls when it is missing) */
    "clock_gettime", "gettimeofday", "time", "clock_nanosleep", "nanosleep",
    /* identity queries glibc makes, harmless */
    "getpid", "gettid", "getuid", "geteuid", "getgid", "getegid",
    "fstat", "newfstatat", "lseek",
    "futex", "sched_yield", "getrandom",
    "exit", "exit_group",
};

/* An allowlist filter (default action def): the names, plus what both allowlists share:
 * mmap/mprotect that make nothing executable (confine.h: no code can be brought in),
 * ioctl FIONREAD only (the data stream sizes a chunk by it), and with unix_socket,
 * socket(AF_UNIX). */
/* What clone() may be asked for where a process only forks: the exit signal, the
 * TID bookkeeping glibc's fork() uses and the CLONE_VM|CLONE_VFORK of posix_spawn; never
 * a namespace (a user namespace would give its creator every capability in it and the
 * kernel code behind them) or shared fs/files/threads. */
#define FORK_CLONE_FLAGS \
    (0xffull /* CSIGNAL */ | CLONE_CHILD_SETTID | CLONE_CHILD_CLEARTID | CLONE_PARENT_SETTID | CLONE_VM | CLONE_VFORK)
/* The namespaces clone() can make (CLONE_NEWTIME only through clone3). */
static const unsigned long clone_new_flags[] = { CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
                                                 CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET };

/* clone3's flags are in memory, out of the filter's sight: it fails with ENOSYS, so
 * glibc (fork, posix_spawn, pthread_create) falls back to clone(), which is checked. */
static int clone3_unsupported(scmp_filter_ctx ctx)
{
    int nr = seccomp_syscall_resolve_name("clone3");
    return nr == __NR_SCMP_ERROR ? 0 : seccomp_rule_add(ctx, SCMP_ACT_ERRNO(ENOSYS), nr, 0);
}

static int load_allowlist(uint32_t def, const char *const *names, size_t n, bool unix_socket, bh_error *err)
{
    scmp_filter_ctx ctx = bh_allowlist_new(def, names, n, err);
    if (!ctx)
        return -1;
    int rc = 0;
    if (unix_socket)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(socket), 1, SCMP_A0(SCMP_CMP_EQ, AF_UNIX));
    if (!rc && unix_socket) /* the call process forks its relay */
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, ~(scmp_datum_t)FORK_CLONE_FLAGS, 0));
    if (!rc && unix_socket)
        rc = clone3_unsupported(ctx);
    if (!rc)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(ioctl), 1, SCMP_A1(SCMP_CMP_EQ, FIONREAD));
    return bh_seccomp_load(ctx, rc, err);
}

int bh_qx_seccomp_unpriv(bh_error *err)
{
    /* logs instead of killing in sanitizer builds (ASan/LSan use clone, ptrace, /proc
     * reads at exit) */
    return load_allowlist(bh_allowlist_default(), allowed, sizeof allowed / sizeof *allowed, false, err);
}

/* A call process once its target is a qube (not dom0: no dom0 program runs), and the
 * relay it forks (which then adds the stricter unprivileged filter). From the kernel's
 * audit log of the call processes over the qrexec, disposable and attack tests. */
static const char *const allowed_call[] = {
    "read", "write", "readv", "writev", "recvfrom", "recvmsg", "sendto", "sendmsg",
    "poll", "ppoll", "close", "shutdown",
    /* bulkheadd (start, disposables), the target's daemon, the vchan dirs; socket() is
     * limited to AF_UNIX below */
    "connect", "bind", "listen", "accept4", "accept", "getsockopt", "setsockopt",
    /* the target's runtime dir (its lock), statvfs of its vchan dir, the target monitor's
     * /proc files, unlinking the call's name there */
    "openat", "open", "fstat", "newfstatat", "statfs", "fstatfs", "flock", "unlink", "unlinkat",
    "umask", "lseek", "fcntl",
    /* the relay child and its filter (clone: fork's flags only, clone3: ENOSYS, below) */
    "fork", "wait4", "prctl", "seccomp", "pipe2", "pipe", "splice",
    "brk", "munmap", "mremap", "madvise",
    "rt_sigreturn", "rt_sigprocmask", "rt_sigaction", "restart_syscall",
    "clock_gettime", "gettimeofday", "time", "clock_nanosleep", "nanosleep",
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid",
    /* the relay sheds the call identity for the saved one (bh_qx_drop_to_keeping) */
    "getresuid", "getresgid", "setresuid", "setresgid",
    "futex", "sched_yield", "getrandom", "set_robust_list", "rseq",
    "exit", "exit_group",
};

int bh_qx_seccomp_call(bh_error *err)
{
    uint32_t def = getenv("BULKHEAD_QREXEC_CALL_FILTER_LOG") ? SCMP_ACT_LOG : bh_allowlist_default();
    return load_allowlist(def, allowed_call, sizeof allowed_call / sizeof *allowed_call, true, err);
}

/* What the root side and the call processes never do (see privsep.h). */
static const char *const denied_root[] = {
    /* the mount table and namespaces: host root's, shared by every qube */
    "mount", "umount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen", "fsmount",
    "fsconfig", "fspick", "mount_setattr", "unshare", "setns",
    /* other processes' memory and file descriptors */
    "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    /* the kernel itself */
    "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "bpf", "perf_event_open",
    "userfaultfd", "iopl", "ioperm", "syslog", "reboot", "swapon", "swapoff", "acct", "quotactl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    /* the kernel keyrings (shared by every root process) and file handles that bypass paths */
    "keyctl", "add_key", "request_key", "open_by_handle_at", "name_to_handle_at",
    "io_uring_setup", "io_uring_enter", "io_uring_register", "fanotify_init", "uselib", "vhangup",
};

int bh_qx_seccomp_root(bh_error *err)
{
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return bh_fail(err, ENOMEM, "seccomp_init");
    int rc = bh_seccomp_add_names(ctx, SCMP_ACT_ERRNO(EPERM), denied_root, sizeof denied_root / sizeof *denied_root);
    /* no namespace through clone() either (unshare and setns are denied above) */
    for (size_t i = 0; !rc && i < sizeof clone_new_flags / sizeof *clone_new_flags; i++)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
                              SCMP_A0(SCMP_CMP_MASKED_EQ, clone_new_flags[i], clone_new_flags[i]));
    if (!rc)
        rc = clone3_unsupported(ctx);
#ifndef BH_SANITIZED /* LeakSanitizer stops the process's threads with ptrace at exit */
    if (!rc)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ptrace), 0);
#endif
    return bh_seccomp_load(ctx, rc, err);
}
