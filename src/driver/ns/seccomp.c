/* The seccomp-bpf filter every qube process runs under (libseccomp). Default: allow;
 * we deny the kernel surfaces a qube never needs. A qube shares the host kernel, so
 * each entry removes code that a compromised qube root could otherwise reach. Calls
 * are denied with an errno (never by killing) so programs degrade, not crash.
 * Only the native ABI is allowed: i386/x32 entry points would bypass argument checks
 * written for x86_64, so libseccomp's default bad-arch action (kill) stays.
 *
 * Deliberately allowed:
 *  - ptrace, process_vm_*, kcmp, pidfd_*: every process a qube can see is its own (PID
 *    and user namespaces), debugging inside a qube is normal, and a host process that
 *    joins a qube (`bulkhead-ns exec`) stays undumpable with a host-owned memory image
 *    until it execs.
 *  - setns, unshare, clone with namespace flags, nested user namespaces included: only
 *    the qube's own namespaces are reachable and it owns them; a nested user namespace
 *    gives nothing the qube's root does not already hold in its own, and browsers'
 *    sandboxes (Chromium, Firefox) are built on user + PID + network namespaces. How
 *    many the qube may create is bounded from outside (idmap.c: ucount limits of the
 *    qube's outer user namespace), which bounds the kernel memory they cost.
 *  - bind/move/remount mount(2) calls: they only rearrange the qube's own (locked) tree;
 *    Landlock forbids them anyway where the kernel has it. */
#include "ns.h"
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/socket.h>

struct denied { const char *name; int err; const char *why; };

static const struct denied denied[] = {
    /* Kernel code loading: host-wide by definition. */
    { "init_module", EPERM, "module loading" },
    { "finit_module", EPERM, "module loading" },
    { "delete_module", EPERM, "module unloading" },
    { "kexec_load", EPERM, "replacing the running kernel" },
    { "kexec_file_load", EPERM, "replacing the running kernel" },
    /* eBPF and perf: large, frequently exploited verifier/PMU code; no qube needs them. */
    { "bpf", EPERM, "eBPF" },
    { "perf_event_open", EPERM, "perf events (side channels, PMU bugs)" },
    /* Keyrings are not fully namespaced and are a classic source of kernel bugs. */
    { "add_key", EPERM, "keyrings" },
    { "request_key", EPERM, "keyrings" },
    { "keyctl", EPERM, "keyrings" },
    /* userfaultfd stretches kernel race windows at will: an exploitation tool. */
    { "userfaultfd", EPERM, "userfaultfd" },
    /* File handles bypass the mount tree (the "shocker" container escape). */
    { "open_by_handle_at", EPERM, "open by file handle" },
    { "name_to_handle_at", EPERM, "file handles of host filesystems" },
    /* io_uring runs syscalls that seccomp never sees; ENOSYS makes libraries fall back. */
    { "io_uring_setup", ENOSYS, "io_uring" },
    { "io_uring_enter", ENOSYS, "io_uring" },
    { "io_uring_register", ENOSYS, "io_uring" },
    /* The clock is the host's; the time namespace only offsets monotonic/boottime. */
    { "clock_settime", EPERM, "setting the host clock" },
    { "clock_adjtime", EPERM, "adjusting the host clock" },
    { "adjtimex", EPERM, "adjusting the host clock" },
    { "settimeofday", EPERM, "setting the host clock" },
    /* Host-wide resources and state. */
    { "swapon", EPERM, "host swap" },
    { "swapoff", EPERM, "host swap" },
    { "reboot", EPERM, "reboot (the host shuts a qube down)" },
    { "acct", EPERM, "process accounting" },
    { "syslog", EPERM, "kernel log (host addresses, other qubes' messages)" },
    { "quotactl", EPERM, "host filesystem quotas" },
    { "quotactl_fd", EPERM, "host filesystem quotas" },
    { "uselib", EPERM, "obsolete loader call" },
    { "iopl", EPERM, "I/O ports" },
    { "ioperm", EPERM, "I/O ports" },
    { "lookup_dcookie", EPERM, "profiling internals" },
    /* New filesystem instances: filesystem code is the usual path from a user namespace
     * root to the host kernel (overlayfs and fsconfig CVEs). Our mounts are made before
     * init starts; Landlock already forbids mounting, this is the belt to its braces. */
    { "fsopen", EPERM, "new filesystem" },
    { "fsconfig", EPERM, "new filesystem" },
    { "fsmount", EPERM, "new filesystem" },
    { "fspick", EPERM, "filesystem reconfiguration" },
    { "mount_setattr", EPERM, "mount attributes/idmaps" },
    /* clone3 passes flags in memory that seccomp cannot read; libc falls back to clone,
     * whose flags a filter can check should a namespace type ever need denying. */
    { "clone3", ENOSYS, "unfilterable clone flags" },
};

static int add(scmp_filter_ctx ctx, int err, const char *name, unsigned n, const struct scmp_arg_cmp *cmp)
{
    int nr = seccomp_syscall_resolve_name(name);
    if (nr == __NR_SCMP_ERROR)
        return 0; /* unknown to this libseccomp/arch: nothing to deny */
    return seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO((unsigned)err), nr, n, cmp);
}

/* The rules, into a fresh libseccomp context. */
static int build(scmp_filter_ctx ctx, const struct bh_confine_opts *o)
{
    int r = 0;
    for (size_t i = 0; r == 0 && i < sizeof denied / sizeof denied[0]; i++)
        r = add(ctx, denied[i].err, denied[i].name, 0, NULL);

    /* mount(2) of a new filesystem (no bind/remount/move/propagation flag). */
    const uint64_t rearrange = MS_BIND | MS_REMOUNT | MS_MOVE | MS_PRIVATE | MS_SLAVE | MS_SHARED | MS_UNBINDABLE;
    struct scmp_arg_cmp newfs = SCMP_A3(SCMP_CMP_MASKED_EQ, rearrange, 0);
    if (r == 0) r = add(ctx, EPERM, "mount", 1, &newfs);

    /* TIOCSTI pushes bytes into a terminal's input: from a qube, keystrokes typed into
     * whatever terminal it was handed. TIOCLINUX can do the same on a VT. The kernel
     * reads the command as 32 bits, so compare only those (high-bit bypass). */
    const unsigned long ttycmds[] = { TIOCSTI, TIOCLINUX };
    for (size_t i = 0; r == 0 && i < 2; i++) {
        struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFFFFu, ttycmds[i]);
        r = add(ctx, EPERM, "ioctl", 1, &c);
    }

    /* Loop-device ioctls (type 'L'): a qube may be handed a block device that is a
     * loop device of dom0's (qvm-block attach dom0:loopN), and LOOP_CLR_FD,
     * LOOP_CHANGE_FD or LOOP_SET_FD need no capability, only an open descriptor. A
     * qube never configures loop devices (it has no loop-control), so all of them go. */
    if (r == 0) {
        struct scmp_arg_cmp c = SCMP_A1(SCMP_CMP_MASKED_EQ, 0xFFFFFF00u, 0x4C00u);
        r = add(ctx, EPERM, "ioctl", 1, &c);
    }

    /* READ_IMPLIES_EXEC makes every readable mapping executable (W^X gone for the
     * process and what it execs); no current program needs it. The kernel reads the
     * persona as 32 bits, and 0xffffffff (all bits, READ_IMPLIES_EXEC included) only
     * queries: deny every value with that bit and at least one other bit clear, one
     * rule per other bit (libseccomp takes one comparison per argument and rule). */
    for (int bit = 0; r == 0 && bit < 32; bit++) {
        if ((1u << bit) == READ_IMPLIES_EXEC)
            continue;
        struct scmp_arg_cmp c = SCMP_A0(SCMP_CMP_MASKED_EQ, READ_IMPLIES_EXEC | (1u << bit), READ_IMPLIES_EXEC);
        r = add(ctx, EPERM, "personality", 1, &c);
    }

    /* Socket families: a qube gets Unix, IP and netlink sockets, and a netvm
     * (provides_network) packet sockets. Others load rarely-used protocol modules into
     * the host kernel on first use (DCCP, X.25, AF_ALG, vsock... a long CVE list). The
     * kernel reads the family as 32 bits; any high bit makes the value >= AF_PACKET+1
     * and so denied. */
    struct scmp_arg_cmp hi = { .arg = 0, .op = SCMP_CMP_GE, .datum_a = AF_PACKET + 1, .datum_b = 0 };
    if (r == 0) r = add(ctx, EAFNOSUPPORT, "socket", 1, &hi);
    for (int fam = 0; r == 0 && fam <= AF_PACKET; fam++) {
        if (fam == AF_UNIX || fam == AF_INET || fam == AF_INET6 || fam == AF_NETLINK || (fam == AF_PACKET && o->raw_net))
            continue;
        struct scmp_arg_cmp c = { .arg = 0, .op = SCMP_CMP_EQ, .datum_a = (uint64_t)fam, .datum_b = 0 };
        r = add(ctx, EAFNOSUPPORT, "socket", 1, &c);
    }
    /* Raw IP sockets (SOCK_RAW, and the obsolete SOCK_PACKET) outside a netvm: they
     * forge any packet and see every packet of the qube's interfaces, and no software
     * in an app qube needs them (ping falls back to ICMP datagram sockets). The type
     * carries SOCK_NONBLOCK/SOCK_CLOEXEC in its high bits: compare the low 4 bits only
     * (the kernel's SOCK_TYPE_MASK). Only for IP: netlink sockets are SOCK_RAW too
     * (iproute2), and the family was checked on 32 bits above. */
    static const int rawtypes[] = { SOCK_RAW, SOCK_PACKET };
    static const int ipfams[] = { AF_INET, AF_INET6 };
    for (size_t i = 0; r == 0 && !o->raw_net && i < 4; i++) {
        struct scmp_arg_cmp c[2] = { SCMP_A0(SCMP_CMP_EQ, (uint64_t)ipfams[i / 2], 0),
                                     SCMP_A1(SCMP_CMP_MASKED_EQ, 0xf, (uint64_t)rawtypes[i % 2]) };
        r = add(ctx, EPERM, "socket", 2, c);
    }
    return r;
}

/* Compiled once per profile (the filter depends only on raw_net), in the process that
 * starts qubes, before it forks them: every qube then loads the same BPF program (the
 * kernel makes each load a filter of that task's own), instead of every init
 * compiling it anew with libseccomp (~40 rules, 32 personality comparisons). */
static struct compiled {
    struct sock_filter *insns; /* NULL: not compiled yet */
    unsigned short len;
} compiled[2];

int bh_seccomp_prepare(const struct bh_confine_opts *o, bh_error *err)
{
    struct compiled *c = &compiled[o->raw_net ? 1 : 0];
    if (c->insns)
        return 0;
    scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_ALLOW);
    if (!ctx)
        return bh_fail(err, ENOMEM, "seccomp_init");
    int r = build(ctx, o);
    /* libseccomp 2.5.4 exports to an fd only (seccomp_export_bpf_mem came later). */
    int fd = r == 0 ? memfd_create("bulkhead-seccomp", MFD_CLOEXEC) : -1;
    if (r == 0 && fd < 0)
        r = -errno;
    if (r == 0)
        r = seccomp_export_bpf(ctx, fd);
    seccomp_release(ctx);
    if (r < 0) {
        if (fd >= 0)
            close(fd);
        return bh_fail(err, -r, "seccomp filter: %s", strerror(-r));
    }
    struct stat st;
    size_t max = BPF_MAXINSNS * sizeof(struct sock_filter);
    struct sock_filter *insns = NULL;
    errno = 0;
    if (fstat(fd, &st) < 0 || st.st_size <= 0 || (size_t)st.st_size > max || st.st_size % sizeof *insns ||
        !(insns = malloc((size_t)st.st_size)) || pread(fd, insns, (size_t)st.st_size, 0) != st.st_size) {
        int e = errno ? errno : EINVAL;
        free(insns);
        close(fd);
        return bh_fail(err, e, "seccomp filter: exporting the program failed");
    }
    close(fd);
    c->insns = insns;
    c->len = (unsigned short)(st.st_size / (off_t)sizeof *insns);
    return 0;
}

int bh_seccomp_apply(const struct bh_confine_opts *o, bh_error *err)
{
    if (bh_seccomp_prepare(o, err) < 0)
        return -1;
    const struct compiled *c = &compiled[o->raw_net ? 1 : 0];
    struct sock_fprog prog = { .len = c->len, .filter = c->insns };
    /* As libseccomp's seccomp_load with its default attributes: no flags (no TSYNC, no
     * LOG, no SPEC_ALLOW); no_new_privs is set by bh_confine first. */
    if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
        return bh_fail_errno(err, "seccomp filter");
    return 0;
}
