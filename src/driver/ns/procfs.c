/* The qube's computed /proc files (uptime, stat, softirqs, interrupts; vmstat,
 * schedstat and pressure/{cpu,io,memory} as zeros in the kernel's layout): host-wide CPU
 * accounting counts from the host's boot, so the real files show the host's uptime
 * however the time namespace shifts the clocks. A per-qube FUSE server
 * (src/procfs/main.c, bulkhead-procfs) computes them from the qube's own age and CPU
 * use; here the engine starts it, mounts its filesystem and binds its files.
 *
 *   daemon (bh_ns_spawn_begin): opens /dev/fuse and a go pipe; forks twice so that the
 *       server is nobody's child to reap (it outlives bulkheadd, like the qube); the
 *       server joins the qube's CPU accounting and execs, still root, opens its inputs
 *       and drops to its own host UID before it reads a request;
 *   stage 1 (host root, its private mount ns): mounts the FUSE filesystem on
 *       <staging>/procfs with that fd, then tells the server through the pipe;
 *   PID 1 (inside.c, before pivot_root): binds each file over /proc/<name>.
 * The server's mount namespace is the daemon's, which never holds the mount: once the
 * qube's last process is gone, so is its mount, the kernel ends the connection and
 * the server exits. */
#include "ns.h"
#include "cleanup.h"
#include "log.h"
#include "sanitized.h"
#include "selfpath.h"
#include "stack.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* Under /proc; the server names each with '-' for '/' (pressure/cpu: pressure-cpu). */
const char *const bh_procfs_files[] = { "uptime", "stat", "softirqs", "interrupts", "vmstat", "schedstat",
                                        "pressure/cpu", "pressure/io", "pressure/memory", NULL };

uid_t bh_procfs_id(uint32_t qid)
{
    return (uid_t)(BH_PROCFS_ID_BASE + (qid & 0xffff));
}

/* Beside the in-qube programs (installed: lib/bulkhead), else near the running binary
 * (the build tree, or a $BULKHEAD_LIBEXEC that holds only what qubes run). */
static int find_server(const char *libexec, char *out, size_t n)
{
    snprintf(out, n, "%s/bulkhead-procfs", libexec);
    if (access(out, X_OK) == 0)
        return 0;
    static const char *const rels[] = { ".", "../procfs", "../../procfs", "../lib/bulkhead", "../libexec/bulkhead", NULL };
    return bh_find_near_self(rels, "bulkhead-procfs", X_OK, out, n);
}

/* In the grandchild: never returns. */
static __attribute__((noreturn)) void exec_server(const struct bh_qube_spec *spec, const char *bin,
                                                  const struct bh_procfs *pf, int go_read)
{
    char tag[64], cpu[4200], id[24], owner[24], off[32], pidfile[4200], pid[24];
    bh_cgroup_tag(spec, tag, sizeof tag);
    bh_error e;
    /* its reads are the qube's work (the qube's CPU share; not its freezer or pids) */
    if (bh_cgroup_ops()->charge_cpu(tag, spec->name, getpid(), &e) < 0)
        bh_warn("%s: bulkhead-procfs not charged to the qube: %s", spec->name, e.msg);
    /* and its memory (v1: its buffers count against the qube's limit) */
    if (bh_cgroup_ops()->charge_memory(tag, spec->name, getpid(), &e) < 0)
        bh_warn("%s: bulkhead-procfs's memory not charged to the qube: %s", spec->name, e.msg);
    bh_path_join(pidfile, sizeof pidfile, spec->runtime_dir, "procfs.pid");
    int pfd = open(pidfile, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (pfd >= 0) {
        int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
        (void)!write(pfd, pid, (size_t)n);
        close(pfd);
    }
    bh_cgroup_ops()->cpu_usage_file(tag, spec->name, cpu, sizeof cpu);
    snprintf(id, sizeof id, "%u", (unsigned)pf->id);
    snprintf(owner, sizeof owner, "%u", (unsigned)spec->uid_base);
    snprintf(off, sizeof off, "%lld", pf->boot_offset);
    /* fds 3 and 4 as the server expects them (moved above 4 first: either may be 3 or 4) */
    int f = fcntl(pf->fuse, F_DUPFD, 10), g = fcntl(go_read, F_DUPFD, 10);
    int null = open("/dev/null", O_RDWR);
    /* stdio: nothing of the daemon's (a pipe held open would outlive it); with debug,
     * stderr stays the daemon's, as init's does */
    if (f < 0 || g < 0 || null < 0 || dup2(f, 3) < 0 || dup2(g, 4) < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 ||
        (!spec->debug && dup2(null, 2) < 0))
        _exit(127);
    (void)syscall(SYS_close_range, 5, ~0U, 0);
    char *argv[] = { "bulkhead-procfs", "--id", id, "--owner", owner, "--boot-offset", off,
                     cpu[0] ? "--cpu" : NULL, cpu, NULL };
    char *envp[] = { NULL };
    execve(bin, argv, envp);
    _exit(127);
}

/* The launch without copies of the daemon: a detaching child and the server's own
 * process each share the daemon's memory (CLONE_VM | CLONE_VFORK: each parent waits until
 * its child has exec'd or exited, as after vfork) instead of getting a copy of it; two
 * copies of the daemon's page tables, their teardown and the wait for it, per start,
 * saved. Both run host root's code of ours until the exec, as the forked ones did; the
 * server drops to its own ID itself. Each has its own stack with a guard below it (an
 * overflow faults instead of writing into the daemon's memory). */
struct launch {
    const struct bh_qube_spec *spec;
    const char *bin;
    const struct bh_procfs *pf;
    int go[2];
    struct bh_stack server_stack;
};

static int server_entry(void *arg)
{
    const struct launch *l = arg;
    close(l->go[1]); /* its own fd table (no CLONE_FILES) */
    exec_server(l->spec, l->bin, l->pf, l->go[0]);
}

/* setsid and the server's start, then exit: the server is then nobody's child but
 * init's (or the subreaper's), as with the double fork, and in a session of its own. */
static int detach_entry(void *arg)
{
    struct launch *l = arg;
    (void)setsid();
    pid_t b = clone(server_entry, bh_stack_top(&l->server_stack), CLONE_VM | CLONE_VFORK | SIGCHLD, l);
    _exit(b < 0);
}

static pid_t launch_shared(struct launch *l)
{
    if (!BH_SHARED_LAUNCH_OK) { /* sanitizer builds: the double fork (sanitized.h) */
        (void)l;
        errno = ENOSYS;
        return -1;
    }
    struct bh_stack detach_stack;
    if (bh_stack_alloc(&detach_stack, 64 * 1024) < 0)
        return -1;
    if (bh_stack_alloc(&l->server_stack, 256 * 1024) < 0) {
        bh_stack_free(&detach_stack);
        return -1;
    }
    pid_t a = clone(detach_entry, bh_stack_top(&detach_stack), CLONE_VM | CLONE_VFORK | SIGCHLD, l);
    bh_stack_free(&detach_stack);
    bh_stack_free(&l->server_stack);
    return a;
}

int bh_procfs_start(const struct bh_qube_spec *spec, const char *libexec, long long boot_offset,
                    struct bh_procfs *pf, bh_error *err)
{
    *pf = (struct bh_procfs){ .fuse = -1, .go = -1, .id = bh_procfs_id(spec->qid), .boot_offset = boot_offset };
    char bin[4200];
    if (find_server(libexec, bin, sizeof bin) < 0)
        return bh_fail(err, ENOENT, "bulkhead-procfs not found near %s", libexec);
    pf->fuse = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (pf->fuse < 0) {
        /* a host without FUSE: the qube starts, and shows the host's CPU totals */
        if (errno == ENOENT || errno == ENODEV || errno == ENXIO) {
            bh_warn("%s: no /dev/fuse: /proc/uptime and /proc/stat show the host's CPU totals", spec->name);
            return 0;
        }
        return bh_fail_errno(err, "open /dev/fuse");
    }
    struct launch l = { .spec = spec, .bin = bin, .pf = pf };
    if (pipe2(l.go, O_CLOEXEC) < 0) {
        bh_procfs_close(pf);
        return bh_fail_errno(err, "pipe");
    }
    pid_t a = launch_shared(&l);
    if (a < 0) {
        /* a kernel that refuses (or no memory for the stacks): the double fork */
        a = fork();
        if (a == 0) {
            (void)setsid();
            pid_t b = fork();
            if (b == 0) {
                close(l.go[1]);
                exec_server(spec, bin, pf, l.go[0]);
            }
            _exit(b < 0);
        }
    }
    close(l.go[0]);
    pf->go = l.go[1];
    int st = 1;
    while (a > 0 && waitpid(a, &st, 0) < 0 && errno == EINTR)
        ;
    if (a < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        bh_procfs_close(pf);
        return bh_fail(err, ECHILD, "starting bulkhead-procfs");
    }
    return 0;
}

void bh_procfs_close(struct bh_procfs *pf)
{
    if (pf->fuse >= 0)
        close(pf->fuse);
    if (pf->go >= 0)
        close(pf->go);
    pf->fuse = pf->go = -1;
}

int bh_procfs_mount(struct bh_procfs *pf, bh_error *err)
{
    if (pf->fuse < 0)
        return 0;
    /* in the staging tmpfs (our cwd), which only stage 1 and the qube's init see */
    if (mkdir("procfs", 0755) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir procfs");
    char opts[160];
    snprintf(opts, sizeof opts, "fd=%d,rootmode=40555,user_id=%u,group_id=%u,allow_other,default_permissions", pf->fuse,
             (unsigned)pf->id, (unsigned)pf->id);
    if (mount("bulkhead-procfs", "procfs", "fuse", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
        return bh_fail_errno(err, "mount the qube's procfs");
    if (write(pf->go, "M", 1) != 1)
        return bh_fail_errno(err, "waking bulkhead-procfs");
    bh_procfs_close(pf);
    return 0;
}

int bh_procfs_bind(int rootfd, bh_error *err)
{
    for (size_t i = 0; bh_procfs_files[i]; i++) {
        char dst_rel[64], src[64], dst[64];
        snprintf(dst_rel, sizeof dst_rel, "proc/%s", bh_procfs_files[i]);
        _cleanup_close_ int d = bh_open_beneath(rootfd, dst_rel, false);
        if (d < 0)
            continue; /* this kernel has no such file */
        char rel[64];
        snprintf(rel, sizeof rel, "procfs/%s", bh_procfs_files[i]);
        for (char *c = rel + 7; *c; c++)
            if (*c == '/')
                *c = '-';
        _cleanup_close_ int s = open(rel, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (s < 0)
            return bh_fail_errno(err, "the qube's computed /%s", dst_rel);
        bh_fd_path(s, src, sizeof src);
        bh_fd_path(d, dst, sizeof dst);
        if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
            return bh_fail_errno(err, "bind the computed /%s", dst_rel);
    }
    return 0;
}
