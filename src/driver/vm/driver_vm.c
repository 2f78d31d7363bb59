/* struct bh_driver for the `vm` engine: a QEMU microvm per qube (launch.c), controlled
 * over QMP (qmp.c), watched through a pidfd on QEMU. */
#include "vm.h"
#include "late_reap.h"
#include "cleanup.h"
#include "io.h"
#include "selfpath.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void warn_tcg_once(void)
{
    static bool said;
    if (!said && !bh_vm_have_kvm())
        fprintf(stderr, "bulkhead: no usable /dev/kvm: VM qubes run under TCG software emulation "
                        "(the isolation holds; the speed does not)\n");
    said = true;
}

/* Starts in progress: the fds behind the one fd bulkheadd watches. */
#define MAX_PENDING 256
static struct pending {
    bool used;
    char name[64];
    int efd, ifd, pfd, tfd; /* epoll of: inotify on vchan/, QEMU's pidfd, timeout, and hfd */
    int hfd[3];             /* pidfds of QEMU's helpers (vm_helpers' order: the host bridge first) */
    int helper_ended;       /* 1 + the index of one seen ended with QEMU running (tfd then times
                             * QEMU's grace); 0: none */
} pend[MAX_PENDING];

static struct pending *pending_find(const char *name)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (pend[i].used && !strcmp(pend[i].name, name))
            return &pend[i];
    return NULL;
}

static void pending_free(struct pending *pp)
{
    int fds[] = { pp->efd, pp->ifd, pp->pfd, pp->tfd, pp->hfd[0], pp->hfd[1], pp->hfd[2] };
    for (int i = 0; i < 7; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    memset(pp, 0, sizeof *pp);
}

/* The helpers a running VM qube needs beside QEMU: the host's vchan bridge (supervisor
 * and worker: without it the qube has no qrexec, and nothing would start a bridge again,
 * see bridge_supervise.c) and the virtiofsd of each share it was started with (without
 * it every file access of the guest on that share hangs: a guest whose root or /usr is
 * gone would be Running and answer nothing). A virtiofsd's record exists only for the
 * shares the qube has. */
struct vm_helper {
    const char *pidfile, *what, *why, *log;
    bool was_root; /* an older bulkheadd ran it as host root */
};

static int vm_helpers(const struct bh_vm_paths *p, struct vm_helper h[3])
{
    int n = 0;
    h[n++] = (struct vm_helper){ p->bridge_pid, "the host's vchan bridge", "no qrexec without it", "bridge.log",
                                 false };
    if (access(p->vfs_pid, F_OK) == 0)
        h[n++] = (struct vm_helper){ p->vfs_pid, "virtiofsd of /usr", "the guest's /usr hangs without it",
                                     "virtiofsd.log", true };
    if (access(p->root_pid, F_OK) == 0)
        h[n++] = (struct vm_helper){ p->root_pid, "virtiofsd of the qube's root", "the guest's / hangs without it",
                                     "virtiofsd-root.log", true };
    return n;
}

/* A helper's PID, or -1 when it is gone. A virtiofsd started by an older bulkheadd ran
 * as host root (its record's start time names it, as for bh_vm_cleanup). */
static pid_t helper_pid(const struct bh_qube_spec *spec, const struct vm_helper *h)
{
    pid_t pid = bh_vm_pidfile_check(h->pidfile, spec->uid_base);
    if (pid < 0 && h->was_root)
        pid = bh_vm_pidfile_check(h->pidfile, 0);
    return pid;
}

/* The first helper of a qube that is gone, or NULL when all run. */
static const struct vm_helper *helper_gone(const struct bh_qube_spec *spec, const struct bh_vm_paths *p,
                                           struct vm_helper h[3])
{
    int n = vm_helpers(p, h);
    for (int i = 0; i < n; i++)
        if (helper_pid(spec, &h[i]) < 0)
            return &h[i];
    return NULL;
}

/* Said in the helper's own log and bulkheadd's; the caller then stops the qube
 * (reported as stopped unexpectedly: Crashed). */
static void helper_gone_say(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, const struct vm_helper *h,
                            const char *when)
{
    char log[4200];
    snprintf(log, sizeof log, "%s/%s", p->rt, h->log);
    int fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        dprintf(fd, "bulkheadd: %s ended %s: stopping the qube (%s)\n", h->what, when, h->why);
        close(fd);
    }
    fprintf(stderr, "bulkhead: %s: %s ended %s: stopping the qube (%s)\n", spec->name, h->what, when, h->why);
}

/* A helper's end was seen: is QEMU ending too? When QEMU exits, the bridge sees its
 * port close and virtiofsd its vhost-user socket (QEMU's fds close early in its exit,
 * before it frees the guest's RAM) and either can be gone before QEMU's own exit is
 * visible: QEMU then gets up to 2 s to show it (a loaded host frees a large guest
 * slowly; a clean poweroff must not be taken for a crash). Paid in full only when QEMU
 * really runs on without the helper; in the Kill's child (vm_kill), and in the loop only
 * when no child can run the cleanup (vm_reap's path; a child that cannot be watched, or
 * that was itself killed before it ended QEMU, whose kill() the loop then runs). */
static bool qemu_ends_soon(int qfd)
{
    struct pollfd pf = { .fd = qfd, .events = POLLIN };
    return qfd >= 0 && poll(&pf, 1, 2000) > 0;
}

/* Woken while QEMU still runs, with one of its helpers gone: true when QEMU does not
 * follow within qemu_ends_soon's grace, said in the helper's log and bulkheadd's. Asked
 * to shut down: QEMU ends anyway (a helper ends once QEMU has closed its side, after the
 * guest's disks were flushed), nothing to tell apart: true without a wait. */
static bool helper_ended_first(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, bool asked)
{
    pid_t qpid = bh_vm_pidfile_check(p->qemu_pid, spec->uid_base);
    if (qpid <= 0)
        return false; /* QEMU has exited: its status says how */
    struct vm_helper h[3];
    const struct vm_helper *gone = helper_gone(spec, p, h);
    if (!gone)
        return false;
    if (asked)
        return true;
    int qfd = (int)syscall(SYS_pidfd_open, qpid, 0);
    bool follows = qemu_ends_soon(qfd);
    if (qfd >= 0)
        close(qfd);
    if (!follows)
        helper_gone_say(spec, p, gone, "while the qube ran");
    return !follows;
}

/* What bulkheadd watches for a running VM qube (watch_fd): an epoll fd over the pidfds
 * of QEMU and of its helpers (vm_helpers), kept open here (an fd closed leaves epoll)
 * until reap or kill. */
static struct watch {
    char name[64];
    int fds[4]; /* QEMU's, then the helpers'; -1 when unused */
} watches[MAX_PENDING];

static void watch_forget(const char *name)
{
    for (int i = 0; i < MAX_PENDING; i++)
        if (watches[i].name[0] && !strcmp(watches[i].name, name)) {
            for (int j = 0; j < 4; j++)
                if (watches[i].fds[j] >= 0)
                    close(watches[i].fds[j]);
            memset(&watches[i], 0, sizeof watches[i]);
        }
}

/* The head of QEMU's log (why it ended), for an error message; NULL if none. */
static char *qemu_log(const struct bh_vm_paths *p)
{
    char log[4200];
    snprintf(log, sizeof log, "%s/qemu.log", p->rt);
    return bh_read_file(log, 400, NULL);
}

static int vm_start_begin(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    warn_tcg_once();
    struct pending *old = pending_find(spec->name);
    if (old)
        pending_free(old);
    struct pending *pp = NULL;
    for (int i = 0; i < MAX_PENDING && !pp; i++)
        if (!pend[i].used)
            pp = &pend[i];
    if (!pp)
        return bh_fail(err, EAGAIN, "too many VM qubes starting at once");
    if (bh_vm_cleanup(spec, &p, err) < 0) /* leftovers of an earlier life */
        return bh_prefix(err, "%s: cleaning up what its last run left", spec->name);
    if (spec->before_run && spec->before_run(spec->before_run_ctx, err) < 0)
        return -1;
    if (bh_vm_launch(spec, &p, err) < 0) {
        bh_vm_cleanup(spec, &p, NULL); /* a failed start leaves nothing behind */
        return -1;
    }
    *pp = (struct pending){ .used = true, .efd = -1, .ifd = -1, .pfd = -1, .tfd = -1, .hfd = { -1, -1, -1 } };
    snprintf(pp->name, sizeof pp->name, "%s", spec->name);
    /* all just forked by us (they may not have dropped to uid_base yet): by PID and
     * start time. The helpers are watched during the boot as while the qube runs: a
     * guest whose virtiofsd is gone would hang in its mount until qrexec_timeout. */
    pid_t qpid = bh_vm_pidfile_check(p.qemu_pid, (uid_t)-1);
    struct vm_helper h[3];
    int nh = vm_helpers(&p, h);
    pp->efd = epoll_create1(EPOLL_CLOEXEC);
    pp->ifd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
    pp->pfd = qpid > 0 ? (int)syscall(SYS_pidfd_open, qpid, 0) : -1;
    pp->tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
    for (int i = 0; i < nh; i++) {
        pid_t hp = bh_vm_pidfile_check(h[i].pidfile, (uid_t)-1);
        pp->hfd[i] = hp > 0 ? (int)syscall(SYS_pidfd_open, hp, 0) : -1;
    }
    struct itimerspec its = { .it_value = { spec->boot_timeout_s ? spec->boot_timeout_s : BH_VM_START_TIMEOUT_MS / 1000, 0 } };
    int fds[] = { pp->ifd, pp->pfd, pp->tfd, pp->hfd[0], pp->hfd[1], pp->hfd[2] };
    bool ok = pp->efd >= 0 && pp->ifd >= 0 && pp->pfd >= 0 && pp->tfd >= 0 &&
              inotify_add_watch(pp->ifd, p.vchan, IN_CREATE | IN_MOVED_TO) >= 0 &&
              timerfd_settime(pp->tfd, 0, &its, NULL) == 0;
    for (int i = 0; ok && i < 3 + nh; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = fds[i] };
        ok = fds[i] >= 0 && epoll_ctl(pp->efd, EPOLL_CTL_ADD, fds[i], &ev) == 0;
    }
    if (!ok) {
        int e = errno;
        _cleanup_free_ char *msg = qpid <= 0 ? qemu_log(&p) : NULL;
        const char *gone = NULL;
        for (int i = 0; i < nh && !gone; i++)
            if (pp->hfd[i] < 0)
                gone = h[i].what;
        pending_free(pp);
        bh_vm_cleanup(spec, &p, NULL);
        return bh_fail(err, e ? e : EIO, "%s: %s%s%s%s", spec->name, qpid <= 0 ? "QEMU is gone" : gone ? gone : "watching the start failed",
                       qpid > 0 && gone ? " is gone" : "", msg && *msg ? ": " : "", msg ? msg : "");
    }
    return pp->efd;
}

static int vm_start_finish(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    struct pending *pp = pending_find(spec->name);
    if (!pp)
        return bh_fail(err, ENOENT, "%s: no start in progress", spec->name);
    char buf[4096], ctl[4200];
    while (read(pp->ifd, buf, sizeof buf) > 0)
        ;
    struct pollfd pf[5] = { { .fd = pp->pfd, .events = POLLIN }, { .fd = pp->tfd, .events = POLLIN },
                            { .fd = pp->hfd[0], .events = POLLIN }, { .fd = pp->hfd[1], .events = POLLIN },
                            { .fd = pp->hfd[2], .events = POLLIN } };
    bool any = poll(pf, 5, 0) > 0;
    bool qemu_ended = any && (pf[0].revents & POLLIN);
    int ended = 0;
    for (int i = 0; any && i < 3 && !ended; i++)
        if (pp->hfd[i] >= 0 && (pf[2 + i].revents & POLLIN))
            ended = 1 + i;
    /* Booted once the bridge (uid_base) has bound the agent's name, with QEMU and every
     * helper still there (one gone would have the qube stopped at once: no success to
     * report); anyone of the VM dir's group (every qube's call processes) could create
     * that name, so its owner is what counts, as it is for qrexec-daemon's peer check
     * (--agent-uid). */
    snprintf(ctl, sizeof ctl, "%s/vchan.%u.0.512.sock", p.vchan, spec->qid);
    struct stat cst;
    if (!qemu_ended && !ended && !pp->helper_ended && lstat(ctl, &cst) == 0 && S_ISSOCK(cst.st_mode) &&
        cst.st_uid == spec->uid_base) {
        pending_free(pp);
        return 0;
    }
    if (!any)
        return 1;
    if (!qemu_ended && ended && !pp->helper_ended) {
        /* A helper ended first. When QEMU exits, its bridge sees the port close (a
         * virtiofsd its socket) and may be gone before QEMU's own exit shows: QEMU gets
         * qemu_ends_soon's grace to follow, timed here (the helpers leave the watch, the
         * timer is re-armed) so that bulkheadd's loop does not wait for it. */
        struct itimerspec grace = { .it_value = { 2, 0 } };
        pp->helper_ended = ended;
        bool timed = timerfd_settime(pp->tfd, 0, &grace, NULL) == 0;
        for (int i = 0; i < 3; i++)
            if (pp->hfd[i] >= 0 && epoll_ctl(pp->efd, EPOLL_CTL_DEL, pp->hfd[i], NULL) < 0)
                timed = false;
        if (timed)
            return 1;
        qemu_ended = qemu_ends_soon(pp->pfd); /* cannot be timed beside the loop */
    } else if (!qemu_ended && pp->helper_ended && !(pf[1].revents & POLLIN)) {
        return 1; /* within QEMU's grace (woken by something else) */
    }
    if (!qemu_ended && pp->helper_ended) {
        struct vm_helper h[3];
        vm_helpers(&p, h);
        const struct vm_helper *gone = &h[pp->helper_ended - 1];
        helper_gone_say(spec, &p, gone, "while it was booting");
        bh_fail(err, EIO, "%s: %s ended while it was booting (%s/%s)", spec->name, gone->what, p.rt, gone->log);
    } else if (qemu_ended) {
        _cleanup_free_ char *msg = qemu_log(&p);
        bh_fail(err, EIO, "%s stopped while booting%s%s", spec->name, msg && *msg ? ": " : "", msg ? msg : "");
    } else {
        /* how far the guest got, from the host bridge's one line (bridge.c); its log's
         * head (a debug qube's trace adds a few lines every 2 s before that line) */
        char blog[4200];
        snprintf(blog, sizeof blog, "%s/bridge.log", p.rt);
        _cleanup_free_ char *head = malloc(65536);
        bool spoke = head && bh_read_small(blog, head, 65536) > 0 && strstr(head, "the guest's bridge spoke");
        bh_fail(err, ETIMEDOUT, "%s did not boot within %u s (qrexec_timeout): %s", spec->name,
                spec->boot_timeout_s ? spec->boot_timeout_s : BH_VM_START_TIMEOUT_MS / 1000,
                spoke ? "its vchan bridge spoke, its qrexec agent never listened"
                      : "nothing was heard from it (its kernel or init never reached its vchan bridge)");
    }
    /* QEMU and its helpers end as in a Kill during the boot: the caller's kill_now and
     * kill(), the latter beside bulkheadd's loop (it waits for each process to end: a
     * large guest's QEMU takes a while to free its RAM) */
    pending_free(pp);
    return BH_START_FAILED_KILL;
}

/* The blocking form (bulkhead tools): the same steps, waiting here. */
static int vm_start(const struct bh_qube_spec *spec, bh_error *err)
{
    int fd = vm_start_begin(spec, err);
    if (fd < 0)
        return -1;
    for (;;) {
        struct pollfd pf = { .fd = fd, .events = POLLIN };
        if (poll(&pf, 1, -1) < 0 && errno != EINTR)
            return bh_fail_errno(err, "poll");
        int r = vm_start_finish(spec, err);
        if (r == BH_START_FAILED_KILL) {
            struct bh_vm_paths p;
            bh_vm_paths_fill(spec, &p);
            bh_vm_cleanup(spec, &p, NULL); /* a failed start leaves nothing behind */
            return -1;
        }
        if (r != 1)
            return r;
    }
}

static int vm_shutdown(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (bh_write_runtime_file(p.shutdown_mark, "1\n", 2, 0644) < 0)
        return bh_fail_errno(err, "writing %s", p.shutdown_mark);
    /* the guest's init gets SIGTERM through the bridge (mux SHUTDOWN) */
    pid_t b = bh_vm_pidfile_check(p.bridge_pid, spec->uid_base);
    if (b > 0 && kill(b, SIGUSR1) == 0)
        return 0;
    /* no bridge: ACPI power button (a guest without a handler ignores it; the
     * shutdown_timeout then kills) */
    return bh_qmp_command(p.qmp, "{\"execute\":\"system_powerdown\"}\n", NULL, 2000, err);
}

/* A qube whose watch woke for a helper's end while its QEMU still ran, not asked to
 * stop (vm_ended): its QEMU may be ending cleanly (the helper saw QEMU close its side
 * first) or running on without the helper. Telling the two apart takes up to 2 s
 * (qemu_ends_soon): too long for bulkheadd's loop, where a guest that makes its bridge
 * end (junk on its port) would hold every other call, so vm_kill_now leaves such a QEMU
 * unsignalled and the Kill's child (vm_kill, beside the loop) waits for it, says what
 * ended first if QEMU did not follow, then kills. ended_early is set by vm_ended and read
 * by the vm_kill_now that follows it in the same loop turn; kill_grace is vm_kill_now's
 * verdict for the kill() it precedes, in the child. bulkheadd's own copy outlives the
 * fork: it names the very QEMU (its PID, checked against the qube's pid file) so that a
 * later kill() in the loop (a next run's failed start) never waits for another. */
static char ended_early[64];
static struct {
    char name[64];
    pid_t qemu;
} kill_grace;

static int vm_kill(const struct bh_qube_spec *spec, bh_error *err)
{
    struct pending *pp = pending_find(spec->name);
    if (pp)
        pending_free(pp); /* a start in progress is cancelled */
    watch_forget(spec->name);
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    bool grace = !strcmp(kill_grace.name, spec->name) &&
                 bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) == kill_grace.qemu;
    if (!strcmp(kill_grace.name, spec->name))
        kill_grace.name[0] = '\0';
    if (grace) /* its QEMU outlived a helper (vm_ended): given its grace here, beside the loop */
        (void)helper_ended_first(spec, &p, false);
    return bh_vm_cleanup(spec, &p, err);
}

/* kill()'s first part, in bulkheadd when kill() runs in a child of it (lifecycle.c):
 * the fds of the qube's watch (and of a start in progress) are this process's, so they
 * are closed here; QEMU is signalled here (unless it outlived a helper: kill() gives it
 * its grace first, see kill_grace) and its pidfd handed back, as only bulkheadd, its
 * parent, can reap it. */
static int vm_kill_now(const struct bh_qube_spec *spec)
{
    struct pending *pp = pending_find(spec->name);
    if (pp)
        pending_free(pp);
    watch_forget(spec->name);
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    bool grace = !strcmp(ended_early, spec->name);
    ended_early[0] = '\0';
    kill_grace.qemu = grace ? bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) : 0;
    grace = grace && kill_grace.qemu > 0;
    snprintf(kill_grace.name, sizeof kill_grace.name, "%s", grace ? spec->name : "");
    return bh_vm_qemu_end(&p, !grace);
}

static int qmp_simple(const struct bh_qube_spec *spec, const char *cmd, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) < 0)
        return bh_fail(err, ESRCH, "%s is not running", spec->name);
    return bh_qmp_command(p.qmp, cmd, NULL, 5000, err);
}

static int vm_pause(const struct bh_qube_spec *spec, bh_error *err)
{
    return qmp_simple(spec, "{\"execute\":\"stop\"}\n", err);
}

static int vm_unpause(const struct bh_qube_spec *spec, bh_error *err)
{
    return qmp_simple(spec, "{\"execute\":\"cont\"}\n", err);
}

static void stats(pid_t pid, struct bh_qube_stats *st)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    _cleanup_free_ char *s = bh_read_file(path, 16384, NULL);
    const char *m = s ? strstr(s, "\nVmRSS:") : NULL;
    if (m)
        st->mem_bytes = strtoull(m + 7, NULL, 10) * 1024;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *t = bh_read_file(path, 4096, NULL);
    const char *rp = t ? strrchr(t, ')') : NULL;
    unsigned long long ut = 0, stt = 0;
    if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) == 2)
        st->cputime_ns = (ut + stt) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static enum bh_power_state vm_state(const struct bh_qube_spec *spec, struct bh_qube_stats *st)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (st)
        memset(st, 0, sizeof *st);
    pid_t pid = bh_vm_pidfile_check(p.qemu_pid, spec->uid_base);
    bool marked = access(p.shutdown_mark, F_OK) == 0;
    if (pid < 0)
        return access(p.qemu_pid, F_OK) == 0 && !marked ? BH_STATE_CRASHED : BH_STATE_HALTED;
    if (st)
        stats(pid, st);
    if (marked)
        return BH_STATE_HALTING;
    char status[64];
    if (bh_qmp_status(p.qmp, status, sizeof status, NULL) == 0 && !strcmp(status, "paused"))
        return BH_STATE_PAUSED;
    return BH_STATE_RUNNING;
}

static int vm_adopt(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) < 0)
        return bh_vm_cleanup(spec, &p, err) < 0 ? -1 : 0;
    struct vm_helper h[3];
    const struct vm_helper *gone = helper_gone(spec, &p, h);
    if (gone) {
        /* QEMU runs without its host bridge or a virtiofsd (it died while bulkheadd was
         * away): a qube without qrexec or its files is not adopted as Running */
        helper_gone_say(spec, &p, gone, "while bulkheadd was not running");
        return bh_vm_cleanup(spec, &p, err) < 0 ? -1 : 0;
    }
    return 1;
}

static int vm_watch_fd(const struct bh_qube_spec *spec)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    pid_t pid = bh_vm_pidfile_check(p.qemu_pid, spec->uid_base);
    if (pid <= 0)
        return -1;
    int qfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (qfd < 0)
        return -1;
    struct vm_helper h[3];
    const struct vm_helper *gone = helper_gone(spec, &p, h);
    if (gone) {
        /* gone already: QEMU's pidfd alone, and QEMU ends (reap stops the qube) */
        helper_gone_say(spec, &p, gone, "as the qube started");
        kill(pid, SIGKILL);
        return qfd;
    }
    int n = vm_helpers(&p, h);
    struct watch *w = NULL;
    watch_forget(spec->name);
    for (int i = 0; i < MAX_PENDING && !w; i++)
        if (!watches[i].name[0])
            w = &watches[i];
    int efd = w ? epoll_create1(EPOLL_CLOEXEC) : -1;
    if (efd < 0)
        return qfd; /* QEMU's alone, as before the helpers were watched */
    *w = (struct watch){ .fds = { qfd, -1, -1, -1 } };
    snprintf(w->name, sizeof w->name, "%s", spec->name);
    for (int i = 0; i < n; i++) {
        pid_t hp = helper_pid(spec, &h[i]);
        w->fds[i + 1] = hp > 0 ? (int)syscall(SYS_pidfd_open, hp, 0) : -1;
        if (w->fds[i + 1] < 0 && (hp <= 0 || errno == ESRCH)) {
            /* it ended since helper_gone looked: as above */
            w->fds[0] = -1;
            watch_forget(spec->name);
            close(efd);
            helper_gone_say(spec, &p, &h[i], "as the qube started");
            kill(pid, SIGKILL);
            return qfd;
        }
    }
    for (int i = 0; i < n + 1; i++) {
        struct epoll_event ev = { .events = EPOLLIN, .data.fd = w->fds[i] };
        if (w->fds[i] < 0 || epoll_ctl(efd, EPOLL_CTL_ADD, w->fds[i], &ev) < 0) {
            /* a helper that cannot be watched: QEMU's pidfd alone (it is kept by the
             * caller; the watch's copy of it must not close it) */
            w->fds[0] = -1;
            watch_forget(spec->name);
            close(efd);
            return qfd;
        }
    }
    return efd;
}

/* The qube's watch said it ended and its cleanup runs as a Kill's (vm_kill_now, then
 * vm_kill beside the loop): QEMU's exit status tells a clean poweroff from a crash
 * (QEMU killed once its grace is over is a crash). */
static bool vm_ended(const struct bh_qube_spec *spec)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    ended_early[0] = '\0';
    if (access(p.shutdown_mark, F_OK) == 0)
        return true; /* asked to stop: QEMU ends anyway */
    struct vm_helper h[3];
    if (bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) > 0 && helper_gone(spec, &p, h))
        snprintf(ended_early, sizeof ended_early, "%s", spec->name);
    return false;
}

static int vm_reap(const struct bh_qube_spec *spec, bool *crashed, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    *crashed = false;
    _cleanup_free_ char *t = bh_read_file(p.qemu_pid, 64, NULL);
    if (!t)
        return 0; /* killed and cleaned already */
    bool asked = access(p.shutdown_mark, F_OK) == 0;
    watch_forget(spec->name);
    if (helper_ended_first(spec, &p, asked)) {
        /* woken by a helper's end, QEMU still running: stopped here (Crashed) */
        *crashed = !asked;
        return bh_vm_cleanup(spec, &p, err);
    }
    int ws = 0, ending = -1;
    pid_t r = bh_vm_pidfile_reap(p.qemu_pid, &ws, &ending);
    int ret = bh_vm_cleanup(spec, &p, err);
    /* one still ending (its threads outlived the wait) has left its cgroup once that
     * could go, but the kernel takes a thread out of its cgroup before its exit is
     * reapable (cgroup_exit before exit_notify): a short wait for that, then its status
     * is read now, else the daemon's tick reaps it */
    if (ending >= 0)
        (void)bh_pidfd_wait(ending, 200);
    if (ending >= 0 && bh_vm_reap_pidfd(ending, &ws) == 1) {
        r = 1;
        close(ending);
    } else if (ending >= 0) {
        (void)bh_late_reap(ending);
    }
    if (r > 0)
        *crashed = !asked && !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    else
        *crashed = !asked; /* adopted (not our child: its status is not ours to read), or
                            * still running (the cleanup ended it) */
    return ret;
}

const char *bh_driver_default_virt_mode(void)
{
    const char *e = getenv("BULKHEAD_DEFAULT_VIRT_MODE");
    if (e && (!strcmp(e, "ns") || !strcmp(e, "pvh") || !strcmp(e, "hvm") || !strcmp(e, "vm")))
        return e;
    static const char *mode;
    if (!mode) {
        char k[256], prog[PATH_MAX];
        bool ok = bh_vm_have_kvm() && bh_find_in_path(BH_VM_QEMU, prog, sizeof prog) &&
                  bh_find_in_path("mkfs.erofs", prog, sizeof prog) && access(BH_VM_VIRTIOFSD, X_OK) == 0 &&
                  bh_kernel_default(k, sizeof k) == 0 && bh_vm_guest_programs_ok();
        mode = ok ? "pvh" : "ns";
    }
    return mode;
}

const struct bh_driver bh_driver_vm = {
    .name = "vm",
    .start = vm_start,
    .shutdown = vm_shutdown,
    .kill = vm_kill,
    .kill_now = vm_kill_now,
    .pause = vm_pause,
    .unpause = vm_unpause,
    .state = vm_state,
    .adopt = vm_adopt,
    .watch_fd = vm_watch_fd,
    .reap = vm_reap,
    .ended = vm_ended,
    .start_begin = vm_start_begin,
    .start_finish = vm_start_finish,
    .net_changed = bh_vm_net_changed,
};
