/* The start sequence (see ns.h for the process shape).
 *
 * Handshake over one SOCK_SEQPACKET pair, every message a struct spawn_msg:
 *   daemon -> stage1  'G'  go on (with a private volume: one byte carrying its mount
 *                          fd instead, made by the daemon while stage 1 assembles)
 *   stage1 -> daemon  'P'  pid = host PID of the qube's init
 *   any    -> daemon  'E'  err = why the start failed (then the sender exits)
 *   init   -> daemon  'R'  (one byte) the qube is ready: agent socket up, or no agent
 * EOF before 'R' means init died. */
#include "ns.h"
#include "cleanup.h"
#include "selfpath.h"
#include "stack.h"
#include "io.h"
#include "late_reap.h"
#include "log.h"
#include "sanitized.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct spawn_msg {
    char kind;
    int32_t pid;
    bh_error err;
};

static int find_libexec(char *out, size_t n)
{
    const char *env = getenv("BULKHEAD_LIBEXEC");
    if (env && *env) {
        snprintf(out, n, "%s", env);
        return 0;
    }
    /* next to us (installed together), the build tree, or the installed layout */
    static const char *const rels[] = { ".", "../agent", "../../agent", "../lib/bulkhead", "../libexec/bulkhead", NULL };
    if (bh_find_near_self(rels, "bulkhead-init", X_OK, out, n) < 0)
        return -1;
    char *slash = strrchr(out, '/');
    if (!slash)
        return -1;
    *slash = '\0'; /* the directory that holds bulkhead-init */
    return 0;
}

int bh_ns_libexec_dir(char *out, size_t n)
{
    return find_libexec(out, n);
}

int bh_ns_paths_fill(const struct bh_qube_spec *spec, struct bh_ns_paths *p, bh_error *err)
{
    if (!spec->runtime_dir || spec->runtime_dir[0] != '/')
        return bh_fail(err, EINVAL, "runtime_dir must be an absolute path");
    if (strlen(spec->runtime_dir) > 3000)
        return bh_fail(err, ENAMETOOLONG, "runtime_dir too long");
    bh_path_join(p->staging, sizeof p->staging, spec->runtime_dir, "mnt");
    bh_path_join(p->root, sizeof p->root, p->staging, "root");
    bh_path_join(p->vchan, sizeof p->vchan, spec->runtime_dir, "vchan");
    bh_path_join(p->pidfile, sizeof p->pidfile, spec->runtime_dir, "init.pid");
    bh_path_join(p->shutdown_mark, sizeof p->shutdown_mark, spec->runtime_dir, "shutdown-requested");
    p->libexec[0] = '\0'; /* looked up by bh_ns_spawn only */
    return 0;
}

static void send_err(int sock, const bh_error *e)
{
    struct spawn_msg m = { .kind = 'E' };
    m.err = *e;
    (void)!send(sock, &m, sizeof m, MSG_NOSIGNAL);
}

/* PID 1 of the qube, before it becomes bulkhead-init. */
static __attribute__((noreturn)) void init_stage(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int sock)
{
    bh_error e = { 0 };
    char qid[16], ready[16];
    struct bh_confine_opts co = { .raw_net = spec->provides_network };
    if (bh_inside_setup(spec, p, &e) < 0 || bh_confine(&co, &e) < 0)
        goto fail;
    /* The daemon's stdio must not reach the qube (and must not be held open by it);
     * with debug, init's stderr stays the daemon's for diagnosis. */
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0 || dup2(null, 0) < 0 || dup2(null, 1) < 0 || (!spec->debug && dup2(null, 2) < 0)) {
        bh_fail_errno(&e, "stdio");
        goto fail;
    }
    /* The handshake socket becomes init's readiness fd (3); every other descriptor
     * inherited from the daemon is close-on-exec. */
    if (sock == 3 ? fcntl(3, F_SETFD, 0) < 0 : dup2(sock, 3) < 0) { /* dup2(3, 3) keeps CLOEXEC */
        bh_fail_errno(&e, "dup2");
        goto fail;
    }
    snprintf(qid, sizeof qid, "%u", spec->qid);
    snprintf(ready, sizeof ready, "%d", 3);
    char name_env[64], user_env[80], qid_env[40], ready_env[40], dom_env[40];
    snprintf(name_env, sizeof name_env, "BULKHEAD_QUBE=%s", spec->name);
    snprintf(user_env, sizeof user_env, "BULKHEAD_USER=%s", spec->default_user ? spec->default_user : "user");
    snprintf(qid_env, sizeof qid_env, "BULKHEAD_QID=%s", qid);
    snprintf(ready_env, sizeof ready_env, "BULKHEAD_READY_FD=%s", ready);
    snprintf(dom_env, sizeof dom_env, "VCHAN_DOMAIN=%s", qid); /* the agent's own domain id */
    /* /usr/lib/bulkhead last: qvm-copy, qrexec-client-vm & co. without shadowing the
     * template's own programs. */
    /* The qube's resolvers (Qubes' virtual DNS servers), written to /etc/resolv.conf by
     * init, as Qubes' agent does at boot; none for a qube without network. */
    char dns_env[96] = "BULKHEAD_DNS=";
    if (spec->net.enabled && spec->net.dns1)
        snprintf(dns_env, sizeof dns_env, "BULKHEAD_DNS=%s %s", spec->net.dns1, spec->net.dns2 ? spec->net.dns2 : "");
    char *envp[16] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/bulkhead", "HOME=/root",
                       "VCHAN_SOCKET_DIR=" BH_NS_VCHAN_IN_QUBE, dom_env, name_env, user_env, qid_env, ready_env,
                       spec->debug ? "BULKHEAD_LOG=debug" : "BULKHEAD_LOG=info", dns_env };
    size_t nenv = 10;
    /* a template has no network: its updates go over qrexec (init) */
    if (spec->klass && !strcmp(spec->klass, "TemplateVM") && !spec->net.enabled)
        envp[nenv++] = "BULKHEAD_UPDATES_PROXY=1";
    /* the agent forks a disposable's call handler ahead of its call (qrexec-agent.c) */
    if (spec->klass && !strcmp(spec->klass, "DispVM"))
        envp[nenv++] = "BULKHEAD_DISPOSABLE=1";
    envp[nenv] = NULL;
    char *argv[] = { "bulkhead-init", NULL };
    execve(BH_NS_INIT_PATH, argv, envp);
    bh_fail_errno(&e, "exec %s", BH_NS_INIT_PATH);
fail:
    send_err(sock, &e);
    _exit(127);
}

struct init_args {
    const struct bh_qube_spec *spec;
    const struct bh_ns_paths *p;
    int sock;
};

/* Init's first function when it shares stage 1's memory (clone(2)'s fn: own stack). */
static int init_entry(void *arg)
{
    const struct init_args *a = arg;
    init_stage(a->spec, a->p, a->sock);
}

/* Stage 1: host root in a private mount namespace (see ns.h). */
static __attribute__((noreturn)) void stage1(const struct bh_qube_spec *spec, const struct bh_ns_paths *p,
                                             int userns_fd, int netns_fd, int sock, struct bh_procfs *pf)
{
    bh_error e = { 0 };
    struct spawn_msg m;
    /* Whatever the daemon had open must not reach the qube. */
    (void)syscall(SYS_close_range, 3, ~0U, CLOSE_RANGE_CLOEXEC);
    bh_ns_fusectl_forget_inherited(); /* not even until init's exec */
    (void)setsid(); /* no controlling terminal, no signals from the daemon's session */
    char tag[64];
    bh_cgroup_tag(spec, tag, sizeof tag);
    if (bh_cgroup_ops()->attach_self(tag, spec->name, &e) < 0)
        goto fail;
    if (unshare(CLONE_NEWNS) < 0) {
        bh_fail_errno(&e, "unshare mount ns");
        goto fail;
    }
    /* Assembly overlaps with the daemon mounting the private volume. */
    if (bh_rootfs_assemble(spec, p, userns_fd, &e) < 0)
        goto fail;
    if (spec->vol.private_img) {
        int priv = bh_recv_fd(sock);
        if (priv < 0)
            _exit(1);
        if (bh_rootfs_attach_private(spec, p, priv, &e) < 0)
            goto fail;
        close(priv);
    } else if (recv(sock, &m, sizeof m, 0) < 1 || m.kind != 'G') {
        _exit(1);
    }
    /* A network prepared by src/net is owned by the host's user namespace: the qube
     * uses it but cannot reconfigure it. */
    if (chdir(p->staging) < 0) { /* carried into the copied namespace, see inside.c */
        bh_fail_errno(&e, "chdir %s", p->staging);
        goto fail;
    }
    if (bh_procfs_mount(pf, &e) < 0)
        goto fail;
    if (netns_fd >= 0 && setns(netns_fd, CLONE_NEWNET) < 0) {
        bh_fail_errno(&e, "join network namespace");
        goto fail;
    }
    if (setns(userns_fd, CLONE_NEWUSER) < 0) {
        bh_fail_errno(&e, "join the qube's user namespace");
        goto fail;
    }
    /* From here on we are the qube's root (host uid_base), no longer host root. */
    if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0) {
        bh_fail_errno(&e, "becoming the qube's root");
        goto fail;
    }
    int flags = CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_NEWTIME;
    if (netns_fd < 0)
        flags |= CLONE_NEWNET;
    if (unshare(flags) < 0) {
        bh_fail_errno(&e, "unshare the qube's namespaces");
        goto fail;
    }
    /* The qube's monotonic and boot clocks start near zero, as a fresh machine's do, and
     * do not reveal the host's uptime (the boot offset was chosen by the daemon, which
     * gave the same to bulkhead-procfs). Offsets can only be set before the first
     * process enters the time namespace; cosmetic, so a failure is not fatal. */
    struct timespec mono;
    if (clock_gettime(CLOCK_MONOTONIC, &mono) == 0) {
        char offs[96];
        int n = snprintf(offs, sizeof offs, "monotonic %lld 0\nboottime %lld 0\n",
                         -(long long)(mono.tv_sec > 1 ? mono.tv_sec - 1 : 0), pf->boot_offset);
        /* The UID change left us undumpable, so /proc/self belongs to the host's root;
         * our memory image stays the host's, which no qube process can ptrace. */
        prctl(PR_SET_DUMPABLE, 1, 0, 0, 0);
        int fd = open("/proc/self/timens_offsets", O_WRONLY | O_CLOEXEC);
        if (fd >= 0) {
            (void)!write(fd, offs, (size_t)n);
            close(fd);
        }
        prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    }
    /* Init shares our memory until it execs (CLONE_VM | CLONE_VFORK: we wait, as after
     * vfork), instead of getting a copy of it: a copy of this process (the daemon's
     * image) and its teardown at the exec, ~1.3 ms on this guest, saved. A task may
     * share its memory only with tasks of its own time namespace (the vDSO's time
     * page differs), so we enter the one made above first: its offsets are set, and we
     * are the first to enter it, as the kernel requires. On a kernel that refuses, init
     * gets a copy as before. CLONE_PARENT: init becomes the daemon's child (it can
     * wait for it), not ours. */
    pid_t pid = -1;
    int tns = open("/proc/self/ns/time_for_children", O_RDONLY | O_CLOEXEC);
    if (BH_SHARED_LAUNCH_OK && tns >= 0 && setns(tns, CLONE_NEWTIME) == 0) {
        /* with a guard below it: an overflow faults instead of writing into our
         * memory (which init shares) below the stack */
        struct bh_stack stack;
        struct init_args a = { spec, p, sock };
        if (bh_stack_alloc(&stack, 1u << 20) == 0)
            pid = clone(init_entry, bh_stack_top(&stack), CLONE_VM | CLONE_VFORK | CLONE_PARENT | SIGCHLD, &a);
    }
    if (tns >= 0)
        close(tns);
    if (pid < 0) {
        pid = (pid_t)syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, NULL, NULL, 0);
        if (pid == 0)
            init_stage(spec, p, sock);
    }
    if (pid < 0) {
        bh_fail_errno(&e, "clone init");
        goto fail;
    }
    memset(&m, 0, sizeof m);
    m.kind = 'P';
    m.pid = pid;
    _exit(send(sock, &m, sizeof m, MSG_NOSIGNAL) < 0);
fail:
    send_err(sock, &e);
    _exit(1);
}

/* Stage 1 may fail before it needs the go-ahead: its message explains better than our
 * failing send or cgroup write. */
static void take_stage_error(int sock, bh_error *err)
{
    struct spawn_msg m;
    memset(&m, 0, sizeof m);
    struct pollfd p = { .fd = sock, .events = POLLIN };
    if (poll(&p, 1, 1000) != 1)
        return;
    ssize_t n = recv(sock, &m, sizeof m, MSG_DONTWAIT);
    if (n < 0 && errno == ECONNRESET) /* reported once, ahead of the queued 'E' (see below) */
        n = recv(sock, &m, sizeof m, MSG_DONTWAIT);
    if (n == (ssize_t)sizeof m && m.kind == 'E' && err) {
        m.err.msg[sizeof m.err.msg - 1] = '\0';
        *err = m.err;
    }
}

static int prepare_dirs(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, bh_error *err)
{
    if (bh_mkdir_p(spec->runtime_dir, 0755) < 0)
        return bh_fail_errno(err, "mkdir %s", spec->runtime_dir);
    if (mkdir(p->staging, 0700) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", p->staging);
    if (mkdir(p->vchan, 0700) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", p->vchan);
    /* The qube writes into its vchan directory (its agent makes sockets there): a tiny
     * tmpfs of its own, so that the qube cannot fill the host's runtime filesystem.
     * Sticky and world-writable inside the qube: qrexec-client-vm run by the qube's user
     * makes its data sockets here, and cannot remove root's. */
    char opts[128];
    snprintf(opts, sizeof opts, "mode=1777,size=64k,nr_inodes=64,uid=%u,gid=%u", (unsigned)spec->uid_base,
             (unsigned)spec->uid_base);
    if (mount("bulkhead-vchan", p->vchan, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
        return bh_fail_errno(err, "mount tmpfs on %s", p->vchan);
    return 0;
}

/* A start in progress: what bh_ns_spawn_finish needs between the event loop's calls.
 * One per qube (keyed by its runtime dir), in the daemon only. */
struct pending {
    char key[4096];  /* the qube's runtime dir; "" = free */
    pid_t s1, init;
    bool ready; /* init's 'R' came before stage 1's 'P' (init runs before stage 1 resumes) */
    int sock, pidfd, ep, tfd;
    char pidfile[4096];
};
#define MAX_PENDING 256
static struct pending pend[MAX_PENDING];

static struct pending *pending_find(const char *key)
{
    for (size_t i = 0; i < MAX_PENDING; i++)
        if (!strcmp(pend[i].key, key))
            return &pend[i];
    return NULL;
}

static void pending_close(struct pending *pd)
{
    if (pd->s1 > 0) {
        kill(pd->s1, SIGKILL);
        while (waitpid(pd->s1, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    int *fds[] = { &pd->sock, &pd->pidfd, &pd->ep, &pd->tfd };
    for (size_t i = 0; i < BH_ARRAY_SIZE(fds); i++)
        if (*fds[i] >= 0)
            close(*fds[i]);
    memset(pd, 0, sizeof *pd);
}

static int cancel_pending(struct pending *pd, const struct bh_qube_spec *spec);

/* Ends a failed start: init (if any, also one stage 1 made but did not report) killed
 * and reaped, everything cleaned up. */
static int pending_fail(struct pending *pd, const struct bh_qube_spec *spec)
{
    int fd = cancel_pending(pd, spec);
    bh_error ignored;
    (void)bh_ns_cleanup(spec, &ignored);
    bh_ns_reap_cancelled(fd);
    return -1;
}

/* A start cancelled while stage 1 waited (vfork) for init's exec: init exists, stage 1's
 * CLONE_PARENT child and so ours, but it was never reported ('P' comes after its exec),
 * and nothing would reap it. Found among our children (a scan of /proc: this kernel may
 * lack /proc/PID/task/TID/children; a rare path) as the one made since stage 1 was (an
 * earlier init of the same qube may still wait for its reap), in a PID namespace of its
 * own (NSpid ends in 1: our qrexec-daemons and helpers are in ours) and in this qube's
 * cgroups, checked again once its pidfd pins it. */

/* The parent and start time (clock ticks since boot) of pid from /proc/PID/stat. */
static bool proc_parent_start(long pid, long *ppid, unsigned long long *start)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    _cleanup_free_ char *st = bh_read_file(path, 4096, NULL);
    uint64_t t = 0;
    if (!st || bh_proc_stat_parse(st, &t, NULL) < 0 || sscanf(strrchr(st, ')'), ") %*c %ld", ppid) != 1)
        return false;
    *start = t;
    return true;
}

static bool is_unreported_init(long pid, unsigned long long since, const char *tag, const char *name)
{
    long ppid = 0;
    unsigned long long start = 0;
    if (!proc_parent_start(pid, &ppid, &start) || ppid != (long)getpid() || start < since)
        return false;
    char path[64];
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    _cleanup_free_ char *st = bh_read_file(path, 8192, NULL);
    const char *ns = st ? strstr(st, "\nNSpid:\t") : NULL;
    const char *nl = ns ? strchr(ns + 1, '\n') : NULL;
    return nl && nl - ns > 3 && !memcmp(nl - 2, "\t1", 2) && bh_cgroup_ops()->contains(tag, name, (pid_t)pid);
}

/* since: stage 1's start time (init cannot be older). */
static int unreported_init(const struct bh_qube_spec *spec, unsigned long long since)
{
    _cleanup_closedir_ DIR *dir = opendir("/proc");
    if (!dir)
        return -1;
    char tag[64];
    bh_cgroup_tag(spec, tag, sizeof tag);
    int found = -1;
    struct dirent *de;
    while (found < 0 && (de = readdir(dir))) {
        char *end;
        long pid = strtol(de->d_name, &end, 10);
        if (*end || pid <= 1 || !is_unreported_init(pid, since, tag, spec->name))
            continue;
        int fd = pidfd_open((pid_t)pid, 0);
        if (fd >= 0 && is_unreported_init(pid, since, tag, spec->name))
            found = fd;
        else if (fd >= 0)
            close(fd);
    }
    return found;
}

/* What unreported_init needs, read before stage 1 is reaped: its start time, or 0 when
 * no unreported init can exist (init reported, or no stage 1). */
static unsigned long long stage1_start(const struct pending *pd)
{
    long ppid = 0;
    unsigned long long start = 0;
    if (pd->init >= 0 || pd->s1 <= 0 || !proc_parent_start(pd->s1, &ppid, &start))
        return 0;
    return start ? start : 1;
}

/* bh_ns_spawn_cancel's work on a found pending start. */
static int cancel_pending(struct pending *pd, const struct bh_qube_spec *spec)
{
    int fd = pd->pidfd;
    unsigned long long s1 = stage1_start(pd);
    pd->pidfd = -1;
    pending_close(pd); /* stage 1 killed and reaped: it makes no init any more */
    if (s1)
        fd = unreported_init(spec, s1);
    if (fd >= 0)
        pidfd_send_signal(fd, SIGKILL, NULL, 0);
    return fd;
}

int bh_ns_spawn_cancel(const struct bh_qube_spec *spec)
{
    struct pending *pd = spec->runtime_dir[0] ? pending_find(spec->runtime_dir) : NULL;
    return pd ? cancel_pending(pd, spec) : -1;
}

void bh_ns_reap_cancelled(int fd)
{
    if (fd < 0)
        return;
    (void)bh_pidfd_wait(fd, 1000);
    (void)bh_late_reap(fd); /* takes fd, or closes it */
}

/* Handles what arrived; 1 = not ready yet, 0 = ready, -1 = failed (cleaned up). */
static int pending_step(struct pending *pd, const struct bh_qube_spec *spec, bh_error *err)
{
    for (;;) {
        struct spawn_msg m;
        memset(&m, 0, sizeof m);
        ssize_t n = recv(pd->sock, &m, sizeof m, MSG_DONTWAIT);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return 1;
        /* A stage that exits with our 'G' unread makes the kernel report ECONNRESET
         * once, ahead of the messages still queued (its 'E' among them): read on. */
        if (n < 0 && errno == ECONNRESET)
            continue;
        if (n <= 0) {
            bh_fail(err, ECHILD, "qube %s: init exited during start", spec->name);
            return pending_fail(pd, spec);
        }
        if (m.kind == 'E' && n == (ssize_t)sizeof m) {
            m.err.msg[sizeof m.err.msg - 1] = '\0';
            if (err)
                *err = m.err;
            return pending_fail(pd, spec);
        } else if (m.kind == 'P' && n == (ssize_t)sizeof m && pd->init < 0) {
            pd->init = m.pid;
            pd->pidfd = pidfd_open(pd->init, 0);
            if (pd->pidfd < 0) {
                bh_fail_errno(err, "pidfd_open init");
                return pending_fail(pd, spec);
            }
            struct bh_init_id id;
            if (bh_init_id_read_proc(pd->init, &id) < 0 || bh_pidfile_write(pd->pidfile, &id, err) < 0) {
                if (!err || !err->msg[0])
                    bh_fail(err, ESRCH, "init vanished");
                return pending_fail(pd, spec);
            }
            while (waitpid(pd->s1, NULL, 0) < 0 && errno == EINTR)
                ;
            pd->s1 = -1;
            if (pd->ready) {
                pending_close(pd);
                return 0;
            }
        } else if (m.kind == 'R' && pd->init > 0) {
            pending_close(pd);
            return 0;
        } else if (m.kind == 'R' && !pd->ready && n == 1) {
            pd->ready = true;
        } else {
            /* seen once in ~1000 starts under load, not reproduced: say what came */
            bh_fail(err, EPROTO, "qube %s: unexpected start message (kind %d, %zd bytes; init %d, ready %d)",
                    spec->name, (int)(unsigned char)m.kind, n, (int)pd->init, (int)pd->ready);
            return pending_fail(pd, spec);
        }
    }
}

int bh_ns_spawn_begin(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_ns_paths p;
    if (bh_ns_paths_fill(spec, &p, err) < 0)
        return -1;
    if (pending_find(spec->runtime_dir))
        return bh_fail(err, EBUSY, "qube %s is already starting", spec->name);
    struct pending *pd = pending_find("");
    if (!pd || strlen(spec->runtime_dir) >= sizeof pd->key)
        return bh_fail(err, EAGAIN, "too many qubes starting at once");
    if (find_libexec(p.libexec, sizeof p.libexec) < 0)
        return bh_fail(err, ENOENT, "bulkhead-init not found (set BULKHEAD_LIBEXEC)");
    struct bh_confine_opts co = { .raw_net = spec->provides_network }; /* as init_stage's */
    if (prepare_dirs(spec, &p, err) < 0 || bh_confine_opts_record(spec, err) < 0 || bh_seccomp_prepare(&co, err) < 0)
        return -1;
    char tag[64];
    bh_cgroup_tag(spec, tag, sizeof tag);
    const struct bh_cgroup_ops *cg = bh_cgroup_ops();
    if (cg->create(tag, spec, err) < 0)
        return bh_prefix(err, "cgroups");
    _cleanup_close_ int userns = bh_userns_create(spec->uid_base, spec->uid_count ? spec->uid_count : 65536, err);
    if (userns < 0)
        return -1;
    _cleanup_close_ int netns = -1;
    if (spec->net.netns_path && (netns = open(spec->net.netns_path, O_RDONLY | O_CLOEXEC)) < 0)
        return bh_fail_errno(err, "open %s", spec->net.netns_path);
    /* The qube's boot clock starts near 0 (stage 1 sets the offset); bulkhead-procfs
     * computes its uptime from the same offset. */
    struct timespec boot;
    long long boot_offset = 0;
    if (clock_gettime(CLOCK_BOOTTIME, &boot) == 0)
        boot_offset = -(long long)(boot.tv_sec > 1 ? boot.tv_sec - 1 : 0);
    struct bh_procfs pf;
    if (bh_procfs_start(spec, p.libexec, boot_offset, &pf, err) < 0)
        return -1;
    p.procfs = pf.fuse >= 0;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        bh_procfs_close(&pf);
        return bh_fail_errno(err, "socketpair");
    }
    pid_t s1 = fork();
    if (s1 < 0) {
        close(sv[0]);
        close(sv[1]);
        bh_procfs_close(&pf);
        return bh_fail_errno(err, "fork");
    }
    if (s1 == 0) {
        close(sv[0]);
        stage1(spec, &p, userns, netns, sv[1], &pf);
    }
    close(sv[1]);
    bh_procfs_close(&pf); /* stage 1 holds them; the server sees EOF if it dies first */
    *pd = (struct pending){ .s1 = s1, .init = -1, .sock = sv[0], .pidfd = -1, .ep = -1, .tfd = -1 };
    snprintf(pd->key, sizeof pd->key, "%s", spec->runtime_dir);
    snprintf(pd->pidfile, sizeof pd->pidfile, "%s", p.pidfile);
    struct spawn_msg m = { .kind = 'G' };
    _cleanup_close_ int priv = -1;
    if (spec->vol.private_img) {
        bool ro = spec->vol.private_throwaway;
        priv = ro ? bh_ext4_image_mount_ro(spec->vol.private_img, err) : bh_ext4_image_mount(spec->vol.private_img, err);
        if (priv < 0 || bh_mount_setattr_fd(priv, userns, ro ? MOUNT_ATTR_RDONLY : 0, err) < 0) {
            bh_prefix(err, "private volume");
            return pending_fail(pd, spec);
        }
    }
    /* Stage 1 makes init only once it has 'G' (or the private volume): what must be in
     * force before the qube runs (its nftables rules) was made meanwhile. */
    if (spec->before_run && spec->before_run(spec->before_run_ctx, err) < 0)
        return pending_fail(pd, spec);
    if (priv >= 0) {
        if (bh_send_fd(pd->sock, priv) < 0) {
            bh_fail_errno(err, "starting stage 1");
            take_stage_error(pd->sock, err);
            return pending_fail(pd, spec);
        }
    } else if (send(pd->sock, &m, sizeof m, MSG_NOSIGNAL) < 0) {
        bh_fail_errno(err, "starting stage 1");
        take_stage_error(pd->sock, err);
        return pending_fail(pd, spec);
    }
    /* One fd for the loop: readable on a message from the stages or at the deadline. */
    pd->ep = epoll_create1(EPOLL_CLOEXEC);
    pd->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    struct itimerspec its = { .it_value = { .tv_sec = BH_NS_START_TIMEOUT_MS / 1000,
                                            .tv_nsec = (BH_NS_START_TIMEOUT_MS % 1000) * 1000000L } };
    struct epoll_event e1 = { .events = EPOLLIN, .data.fd = pd->sock }, e2 = { .events = EPOLLIN, .data.fd = pd->tfd };
    if (pd->ep < 0 || pd->tfd < 0 || timerfd_settime(pd->tfd, 0, &its, NULL) < 0 ||
        epoll_ctl(pd->ep, EPOLL_CTL_ADD, pd->sock, &e1) < 0 || epoll_ctl(pd->ep, EPOLL_CTL_ADD, pd->tfd, &e2) < 0) {
        bh_fail_errno(err, "watching the start");
        return pending_fail(pd, spec);
    }
    return pd->ep;
}

int bh_ns_spawn_finish(const struct bh_qube_spec *spec, bh_error *err)
{
    struct pending *pd = spec->runtime_dir[0] ? pending_find(spec->runtime_dir) : NULL;
    if (!pd)
        return bh_fail(err, ENOENT, "qube %s is not starting", spec->name);
    int r = pending_step(pd, spec, err);
    if (r != 1)
        return r;
    uint64_t ticks;
    if (read(pd->tfd, &ticks, sizeof ticks) == (ssize_t)sizeof ticks) {
        bh_fail(err, ETIMEDOUT, "qube %s did not become ready", spec->name);
        return pending_fail(pd, spec);
    }
    return 1;
}

int bh_ns_spawn(const struct bh_qube_spec *spec, bh_error *err)
{
    int ep = bh_ns_spawn_begin(spec, err);
    if (ep < 0)
        return -1;
    for (;;) {
        struct pollfd pfd = { .fd = ep, .events = POLLIN };
        if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
            return bh_fail_errno(err, "poll");
        int r = bh_ns_spawn_finish(spec, err);
        if (r != 1)
            return r;
    }
}
