/* Qube lifecycle through the engines (driver/driver.h), with Qubes' states and events:
 * domain-pre-start, domain-start, domain-start-failed, domain-shutdown, domain-paused,
 * domain-unpaused. The engine's pidfd for a qube's init is watched by the event loop,
 * so a qube that stops on its own (or crashes) is noticed at once, and its volumes,
 * qrexec-daemon and disposable leftovers are cleaned up.
 *
 * A running qube always has its qrexec-daemon: bulkheadd watches each daemon's pidfd and,
 * when one ends while its qube still runs (killed, crashed, or ended because the agent
 * hung up), starts a new one at once, without blocking the loop: the new daemon's ready
 * pipe is watched too. A daemon that keeps dying is restarted at most 4 times in any
 * 10 s (the tick starts the held-back restart when the window allows). */
#include "lifecycle.h"
#include "late_reap.h"
#include "api.h"
#include "cleanup.h"
#include "engine_glue.h"
#include "events.h"
#include "hooks.h"
#include "io.h"
#include "log.h"
#include "net_glue.h"
#include "qube_ids_reap.h"
#include "loop.h"
#include "preload.h"
#include "proc_ids.h"
#include "props.h"
#include "selfpath.h"
#include "sanitized.h"
#include "stack.h"
#include "waiters.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static struct bh_app *lc_app;

static void emit(struct bh_qube *q, const char *event, const char *const *kv)
{
    static const char *const none[] = { NULL };
    bh_events_emit(q->name, event, kv ? kv : none);
}

/* ---- qrexec-daemon, one per running qube ---- */

static int find_program(const char *name, const char *env, char *out, size_t n)
{
    const char *e = getenv(env);
    if (e && *e) {
        snprintf(out, n, "%s", e);
        return access(out, X_OK);
    }
    /* installed side by side, the build tree, or the installed private dir */
    static const char *const rels[] = { ".", "../qrexec", "../lib/bulkhead", NULL };
    return bh_find_near_self(rels, name, X_OK, out, n);
}

static void qrexec_unwatch(struct bh_qube *q)
{
    if (q->rt.qrexec_pidfd >= 0) {
        bh_loop_del(q->rt.qrexec_pidfd);
        close(q->rt.qrexec_pidfd);
        q->rt.qrexec_pidfd = -1;
    }
    if (q->rt.qrexec_readyfd >= 0) {
        bh_loop_del(q->rt.qrexec_readyfd);
        close(q->rt.qrexec_readyfd);
        q->rt.qrexec_readyfd = -1;
    }
}

/* A qrexec-daemon forked while its qube boots (see start_agent): told to connect by one
 * byte on its go pipe. */
static void qrexec_early_forget(struct bh_qube *q)
{
    if (q->rt.qrexec_gofd >= 0)
        close(q->rt.qrexec_gofd); /* EOF: a daemon still waiting exits */
    if (q->rt.qrexec_early_rfd >= 0)
        close(q->rt.qrexec_early_rfd);
    q->rt.qrexec_gofd = q->rt.qrexec_early_rfd = -1;
}

/* How long the loop waits for a daemon's death after its SIGKILL: one that is not stuck
 * in the kernel is gone in a few milliseconds. */
#define REAP_WAIT_MS 500

/* A qrexec-daemon that was told to end: gone for good and reaped (it ends at once on
 * TERM, so the KILL is for one that is stuck). A call process it forked is root until it
 * drops to the qube's call identity, so the halt's sweep of that identity would miss one
 * caught in between: they are in its process group (its own, setsid in
 * qrexec_child_run), whose ID stays its own until it is reaped, so the group goes too. */
static void qrexec_reap(pid_t pid)
{
    if (pid <= 0)
        return;
    int pfd = -1;
#ifdef SYS_pidfd_open
    pfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    kill(pid, SIGKILL); /* our unreaped child: the PID is still its own */
    kill(-pid, SIGKILL);
    if (pfd >= 0) {
        int gone = bh_pidfd_wait(pfd, REAP_WAIT_MS);
        if (gone == 1) {
            close(pfd);
        } else {
            /* outlived its SIGKILL (blocked in the kernel, state D): reaped by the tick
             * once it is gone, so that the loop never waits in waitpid for it */
            int r = bh_late_reap(pfd);
            if (r == 0)
                bh_warn("qrexec-daemon %d did not end on SIGKILL within %d ms: reaped once it does",
                        (int)pid, REAP_WAIT_MS);
            if (r >= 0)
                return;
            /* every slot taken by a stuck process: wait, as before */
        }
    }
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
}

static void qrexec_stop(struct bh_qube *q)
{
    qrexec_unwatch(q); /* an intended stop is not a death to repair */
    qrexec_early_forget(q);
    if (q->rt.qrexec_pid > 0) {
        int pfd = -1;
#ifdef SYS_pidfd_open
        pfd = (int)syscall(SYS_pidfd_open, q->rt.qrexec_pid, 0);
#endif
        kill(q->rt.qrexec_pid, SIGTERM);
        /* It exits at once on TERM; don't let a stuck one hold the loop (0.5 s). The
         * pidfd says when it is gone, without sleeping in steps. */
        if (pfd >= 0) {
            (void)bh_pidfd_wait(pfd, 500);
            close(pfd);
        } else {
            /* WNOWAIT: not reaped here, so its PID and group stay its own for the reap */
            for (int i = 0; i < 50; i++) {
                siginfo_t si = { 0 };
                if (waitid(P_PID, (id_t)q->rt.qrexec_pid, &si, WEXITED | WNOHANG | WNOWAIT) < 0 || si.si_pid)
                    break;
                usleep(10000);
            }
        }
        qrexec_reap(q->rt.qrexec_pid);
    }
    q->rt.qrexec_pid = 0;
}

/* A qrexec-daemon left by a previous bulkheadd: identified by its pid file and its
 * command line naming this qube. It is ended and waited for before the new one starts:
 * on its way out it removes its listening socket by name, and if that came after the new
 * daemon bound the same name, dom0 could no longer reach the qube (seen in slow builds). */
static void qrexec_kill_stale(const struct bh_spec_buf *sb, const char *name)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/qrexec-daemon.pid", sb->runtime);
    _cleanup_free_ char *s = bh_read_file(path, 32, NULL);
    if (!s)
        return;
    pid_t pid = (pid_t)atoi(s);
    if (pid <= 1)
        return;
    /* The pidfd pins the process: the checks below and the signals concern one process
     * even if the pid is reused meanwhile. */
    _cleanup_close_ int pidfd = -1;
#ifdef SYS_pidfd_open
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    char cpath[64];
    snprintf(cpath, sizeof cpath, "/proc/%d/cmdline", (int)pid);
    size_t len;
    _cleanup_free_ char *cmd = bh_read_file(cpath, 8192, &len);
    if (!cmd || !strstr(cmd, "qrexec-daemon"))
        goto done;
    bool named = false;
    for (size_t i = 0; i + 1 < len; i += strlen(cmd + i) + 1)
        if (!strcmp(cmd + i, "--name") && i + 7 < len && !strcmp(cmd + i + 7, name))
            named = true;
    if (!named)
        goto done;
    if (pidfd < 0) {
        kill(pid, SIGTERM);
        goto done;
    }
    syscall(SYS_pidfd_send_signal, pidfd, SIGTERM, NULL, 0);
    if (bh_pidfd_wait(pidfd, 3000) <= 0) {
        bh_warn("%s: the previous qrexec-daemon ignored SIGTERM: killing it", name);
        syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, NULL, 0);
        (void)bh_pidfd_wait(pidfd, 3000);
    }
done:
    unlink(path);
}

/* What the qrexec-daemon's process does before its exec: system calls on what the
 * parent prepared (it shares the parent's memory: nothing of the daemon's may change). */
struct qrexec_child {
    const struct bh_driver *drv;
    const struct bh_qube_spec *spec;
    const char *prog;
    char **argv, **envp;
    int keep[2]; /* fds that go on (cloexec cleared), or -1 */
};

static int qrexec_child_run(void *arg)
{
    const struct qrexec_child *c = arg;
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    for (int i = 0; i < 2; i++)
        if (c->keep[i] >= 0)
            bh_set_cloexec(c->keep[i], 0);
    /* The daemon and every call process it forks for this qube count against the
     * qube's CPU share (the engine's cgroups), not the host's. */
    bh_error cerr = { 0 };
    if (c->drv && c->drv->charge_host_helper && c->drv->charge_host_helper(c->spec, getpid(), &cerr) < 0)
        bh_warn("%s: qrexec-daemon not charged to the qube: %s", c->spec->name, cerr.msg);
    int devnull = open("/dev/null", O_RDONLY | O_CLOEXEC); /* only its dup as stdin goes on */
    if (devnull >= 0)
        dup2(devnull, 0);
    setsid();
    execve(c->prog, c->argv, c->envp);
    _exit(127);
}

/* Our environment with BULKHEAD_SOCKET set to sock (the child cannot setenv: it shares
 * our memory). The strings stay ours; free only the array. */
static char **env_with_socket(char *sock_var)
{
    size_t n = 0;
    for (char **e = environ; *e; e++)
        n++;
    char **v = calloc(n + 2, sizeof *v);
    if (!v)
        return NULL;
    size_t k = 0;
    for (char **e = environ; *e; e++)
        if (strncmp(*e, "BULKHEAD_SOCKET=", 16))
            v[k++] = *e;
    v[k++] = sock_var;
    v[k] = NULL;
    return v;
}

/* Starts the qube's qrexec-daemon; *ready_fd gets '1' once it serves. 0 = no
 * qrexec-daemon installed (the qube runs without qrexec). Its process shares our memory
 * until its exec (CLONE_VM | CLONE_VFORK: we wait, as after vfork) instead of getting a
 * copy of the daemon's (page tables copied and torn down at the exec, per start). */
static int qrexec_spawn(struct bh_app *app, struct bh_qube *q, const char *default_user, int *ready_fd,
                        int *go_fd, bh_error *err)
{
    char prog[PATH_MAX];
    if (find_program("qrexec-daemon", "BULKHEAD_QREXEC_DAEMON", prog, sizeof prog) < 0) {
        bh_warn("%s: qrexec-daemon not found: the qube runs without qrexec", q->name);
        return 0;
    }
    int pfd[2], gfd[2] = { -1, -1 };
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return bh_fail_errno(err, "pipe");
    if (go_fd && pipe2(gfd, O_CLOEXEC) < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return bh_fail_errno(err, "pipe");
    }
    /* `ask` answered by a person: qrexec-policy-ask relays to qrexec-policy-agent */
    char ask[PATH_MAX] = "";
    bool have_ask = find_program("qrexec-policy-ask", "BULKHEAD_QREXEC_ASK", ask, sizeof ask) == 0;
    char qid[16], rfd[16], gofd[16], policy[4200], sock[4200 + 16], timeout[16], auid[16];
    snprintf(qid, sizeof qid, "%u", q->qid);
    snprintf(rfd, sizeof rfd, "%d", pfd[1]);
    snprintf(gofd, sizeof gofd, "%d", gfd[0]);
    snprintf(policy, sizeof policy, "%s/policy.d", app->root_dir);
    snprintf(sock, sizeof sock, "BULKHEAD_SOCKET=%s/qubesd.sock", app->runtime_dir);
    snprintf(timeout, sizeof timeout, "%lld", bh_qube_prop_int(app, q, "qrexec_timeout"));
    struct bh_spec_buf csb;
    bh_glue_spec(app, q, &csb);
    char *argv[24] = { "qrexec-daemon", "--name", q->name, "--domid", qid, "--runtime", app->runtime_dir,
                       "--ready-fd", rfd, "--startup-timeout", timeout, "--default-user", (char *)default_user,
                       "--policy-dir", policy };
    size_t n = 15;
    /* the qube's agent (ns: root of its user namespace) or VM bridge runs as uid_base:
     * the daemon takes no other listener on the qube's vchan names */
    snprintf(auid, sizeof auid, "%u", (unsigned)csb.spec.uid_base);
    argv[n++] = "--agent-uid";
    argv[n++] = auid;
    if (go_fd) {
        argv[n++] = "--go-fd";
        argv[n++] = gofd;
    }
    if (have_ask) {
        argv[n++] = "--ask-program";
        argv[n++] = ask;
    }
    argv[n] = NULL;
    _cleanup_free_ char **envp = env_with_socket(sock);
    struct qrexec_child c = { .drv = bh_glue_driver(app, q), .spec = &csb.spec, .prog = prog, .argv = argv,
                              .envp = envp, .keep = { pfd[1], go_fd ? gfd[0] : -1 } };
    pid_t pid = -1;
    struct bh_stack stack;
    if (BH_SHARED_LAUNCH_OK && envp && bh_stack_alloc(&stack, 256 * 1024) == 0) {
        pid = clone(qrexec_child_run, bh_stack_top(&stack), CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
        bh_stack_free(&stack);
    }
    if (pid < 0 && envp) {
        /* a kernel that refuses: a copy of this process, as before */
        pid = fork();
        if (pid == 0)
            qrexec_child_run(&c);
    }
    int saved = errno;
    bh_glue_spec_free(&csb);
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        if (go_fd) {
            close(gfd[0]);
            close(gfd[1]);
        }
        errno = envp ? saved : ENOMEM;
        return bh_fail_errno(err, "starting qrexec-daemon");
    }
    close(pfd[1]);
    q->rt.qrexec_pid = pid;
    *ready_fd = pfd[0];
    if (go_fd) {
        close(gfd[0]);
        *go_fd = gfd[1];
    }
    return 1;
}

/* Waits for the daemon's ready byte (at most the qube's qrexec_timeout). */
static int qrexec_await_ready(struct bh_app *app, struct bh_qube *q, int rfd, bh_error *err)
{
    struct pollfd p = { .fd = rfd, .events = POLLIN };
    char c = 0;
    int r, ms = (int)bh_qube_prop_int(app, q, "qrexec_timeout") * 1000;
    while ((r = poll(&p, 1, ms)) < 0 && errno == EINTR)
        ;
    bool ready = r == 1 && read(rfd, &c, 1) == 1 && c == '1';
    close(rfd);
    if (!ready) {
        qrexec_stop(q);
        return bh_fail(err, ETIMEDOUT, "qrexec-daemon for %s did not become ready", q->name);
    }
    return 0;
}

static void qrexec_write_pidfile(struct bh_app *app, struct bh_qube *q)
{
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    char path[4200], pidtxt[16];
    snprintf(path, sizeof path, "%s/qrexec-daemon.pid", sb.runtime);
    int n = snprintf(pidtxt, sizeof pidtxt, "%d\n", (int)q->rt.qrexec_pid);
    (void)bh_write_runtime_file(path, pidtxt, (size_t)n, 0644);
    bh_glue_spec_free(&sb);
}

static void on_qrexec_exit(void *ctx, uint32_t ev);

/* Watches the daemon's pidfd so that its end is noticed at once (the tick is the fallback
 * where pidfd_open is missing). */
static void qrexec_watch(struct bh_qube *q)
{
    int fd = -1;
#ifdef SYS_pidfd_open
    fd = (int)syscall(SYS_pidfd_open, q->rt.qrexec_pid, 0);
#endif
    if (fd >= 0 && bh_loop_add(fd, EPOLLIN, on_qrexec_exit, (void *)(uintptr_t)q->qid) < 0) {
        close(fd);
        fd = -1;
    }
    q->rt.qrexec_pidfd = fd;
}

static int qrexec_start(struct bh_app *app, struct bh_qube *q, const struct bh_spec_buf *sb, bh_error *err)
{
    int rfd = -1;
    int r = qrexec_spawn(app, q, sb->spec.default_user ? sb->spec.default_user : "user", &rfd, NULL, err);
    if (r <= 0)
        return r;
    if (qrexec_await_ready(app, q, rfd, err) < 0)
        return -1;
    qrexec_watch(q);
    qrexec_write_pidfile(app, q);
    return 0;
}

/* Forks the qube's qrexec-daemon while the engine boots the qube (right after
 * start_begin, once the qube's cgroups exist: the daemon is charged to them), so that
 * its exec and set-up overlap with the boot instead of following it. It connects to the
 * agent only when start_agent says the qube is up. Failing here is not fatal:
 * start_agent then starts one the ordinary way. */
static void qrexec_early(struct bh_app *app, struct bh_qube *q, const struct bh_spec_buf *sb)
{
    qrexec_kill_stale(sb, q->name);
    int rfd = -1, gfd = -1;
    bh_error err = { 0 };
    int r = qrexec_spawn(app, q, sb->spec.default_user ? sb->spec.default_user : "user", &rfd, &gfd, &err);
    if (r < 0)
        bh_warn("%s: qrexec-daemon with the qube: %s", q->name, err.msg);
    if (r != 1)
        return;
    q->rt.qrexec_early_rfd = rfd;
    q->rt.qrexec_gofd = gfd;
}

/* ---- a dead qrexec-daemon is replaced ---- */

/* The qube's init still runs (its engine watch fd has not fired): a daemon that ended
 * because the qube is stopping is not replaced; halted() cleans up. */
static bool qube_alive(struct bh_qube *q)
{
    if (q->rt.state != BH_STATE_RUNNING && q->rt.state != BH_STATE_PAUSED)
        return false;
    if (q->rt.pidfd < 0)
        return true;
    struct pollfd p = { .fd = q->rt.pidfd, .events = POLLIN };
    return poll(&p, 1, 0) == 0;
}

static void on_qrexec_ready(void *ctx, uint32_t ev)
{
    (void)ev;
    struct bh_qube *q = bh_app_find_qid(lc_app, (uint32_t)(uintptr_t)ctx);
    if (!q || q->rt.qrexec_readyfd < 0)
        return;
    char c = 0;
    bool ready = read(q->rt.qrexec_readyfd, &c, 1) == 1 && c == '1';
    bh_loop_del(q->rt.qrexec_readyfd);
    close(q->rt.qrexec_readyfd);
    q->rt.qrexec_readyfd = -1;
    if (ready) {
        qrexec_write_pidfile(lc_app, q);
        bh_info("%s: qrexec-daemon restarted (pid %d)", q->name, (int)q->rt.qrexec_pid);
    }
    /* not ready: it exits, and its pidfd brings us back */
}

static void qrexec_restart(struct bh_qube *q)
{
    int64_t now = bh_now_ms();
    int64_t *t = q->rt.qrexec_restart_ms;
    if (t[0] && now - t[0] < 10000)
        return; /* 4 restarts within 10 s: the tick retries when the window allows */
    memmove(t, t + 1, 3 * sizeof *t);
    t[3] = now;
    struct bh_spec_buf sb;
    bh_glue_spec(lc_app, q, &sb);
    bh_error err = { 0 };
    int rfd = -1;
    int r = qrexec_spawn(lc_app, q, sb.spec.default_user ? sb.spec.default_user : "user", &rfd, NULL, &err);
    bh_glue_spec_free(&sb);
    if (r < 0)
        bh_warn("%s: restarting qrexec-daemon: %s", q->name, err.msg);
    if (r <= 0)
        return;
    if (bh_loop_add(rfd, EPOLLIN, on_qrexec_ready, (void *)(uintptr_t)q->qid) < 0) {
        close(rfd);
        rfd = -1;
    }
    q->rt.qrexec_readyfd = rfd;
    qrexec_watch(q);
}

/* The daemon is gone (pidfd, or the tick's waitpid): reap it, and replace it while the
 * qube runs. */
static void qrexec_died(struct bh_qube *q, int status)
{
    qrexec_unwatch(q);
    q->rt.qrexec_pid = 0;
    if (!qube_alive(q))
        return;
    if (WIFSIGNALED(status))
        bh_warn("%s: qrexec-daemon killed by signal %d; starting a new one", q->name, WTERMSIG(status));
    else
        bh_warn("%s: qrexec-daemon exited with %d; starting a new one", q->name, WEXITSTATUS(status));
    qrexec_restart(q);
}

static void on_qrexec_exit(void *ctx, uint32_t ev)
{
    (void)ev;
    struct bh_qube *q = bh_app_find_qid(lc_app, (uint32_t)(uintptr_t)ctx);
    if (!q || q->rt.qrexec_pid <= 0)
        return;
    int st = 0;
    pid_t r = waitpid(q->rt.qrexec_pid, &st, WNOHANG);
    if (r == q->rt.qrexec_pid || (r < 0 && errno == ECHILD))
        qrexec_died(q, st);
}

/* ---- exit handling ---- */

static void on_pidfd(void *ctx, uint32_t ev);

static void watch(struct bh_qube *q, const struct bh_driver *drv, const struct bh_qube_spec *spec)
{
    q->rt.pidfd = drv->watch_fd ? drv->watch_fd(spec) : -1;
    if (q->rt.pidfd >= 0 && bh_loop_add(q->rt.pidfd, EPOLLIN, on_pidfd, (void *)(uintptr_t)q->qid) < 0) {
        close(q->rt.pidfd);
        q->rt.pidfd = -1;
    }
}

static void unwatch(struct bh_qube *q)
{
    if (q->rt.pidfd >= 0) {
        bh_loop_del(q->rt.pidfd);
        close(q->rt.pidfd);
        q->rt.pidfd = -1;
    }
}

static void stop_volumes(struct bh_app *app, struct bh_qube *q)
{
    bh_error err = { 0 };
    struct bh_sq_buf b;
    bh_glue_sq(app, q, &b);
    if (bh_volumes_stopped(bh_glue_pool(), &b.sq, &err) < 0)
        bh_warn("%s: volumes after stop: %s", q->name, err.msg);
    bh_glue_sq_free(&b);
}

static void answer_waiters(void *ctx)
{
    bh_waiters_halted(lc_app, (uint32_t)(uintptr_t)ctx);
}

static void remove_disposable(void *ctx)
{
    struct bh_qube *q = bh_app_find_qid(lc_app, (uint32_t)(uintptr_t)ctx);
    if (!q || q->klass != BH_DISPVM || bh_qube_is_running(q))
        return; /* gone already, or started again meanwhile */
    stop_volumes(lc_app, q);
    struct bh_exc e = { 0 };
    if (bh_qube_remove(lc_app, q, &e) < 0)
        bh_warn("removing disposable %s: %s", q->name, e.msg);
}

/* Everything after a qube's init is gone: engine cleanup, volumes, qrexec, events.
 * swept: the qube's qrexec identities were swept already (by the Kill's child).
 * engine_failed: the engine's cleanup failed already (a Kill's).
 * crashed_seen: it ended on its own, not cleanly (its cleanup ran as a Kill's). */
static void halted_after(struct bh_app *app, struct bh_qube *q, bool swept, bool engine_failed, bool crashed_seen)
{
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    const struct bh_driver *drv = bh_glue_driver(app, q);
    bh_error err = { 0 };
    bool crashed = false;
    unwatch(q);
    bool cleaned = !engine_failed;
    if (drv && drv->reap && drv->reap(&sb.spec, &crashed, &err) < 0) {
        bh_warn("%s: cleanup after exit: %s", q->name, err.msg);
        cleaned = false;
    }
    if (!cleaned && drv) {
        bh_glue_engine_pin(app, q, drv);
        q->rt.engine_dirty = true;
    }
    qrexec_stop(q);
    /* Before the qid can be anyone else's: nothing of the qube's qrexec identities may
     * outlive it, or it would be served as the next qube with this qid (call_auth.c). */
    if (!swept)
        (void)bh_qube_ids_reap(q->qid);
    bh_net_glue_stopped(app, q);
    char path[4200];
    snprintf(path, sizeof path, "%s/qrexec-daemon.pid", sb.runtime);
    unlink(path);
    /* A daemon that ended on TERM removed its socket; one that needed SIGKILL did not,
     * and a socket left there reads as "qrexec is up" (qvm-run would not start the qube). */
    snprintf(path, sizeof path, "%s/qrexec.sock", sb.runtime);
    unlink(path);
    snprintf(path, sizeof path, "%s/call.lock", sb.runtime); /* made by the qrexec-daemon of earlier versions (a qube adopted across an upgrade) */
    unlink(path);
    /* The engine and qrexec-daemon have removed what they made in the qube's runtime
     * dir: the dir goes too (a start makes it again), or every disposable would leave
     * an empty <runtime>/qubes/dispNNNN behind. Not empty: something is still in use. */
    (void)rmdir(sb.runtime);
    /* An engine that could not clean up stays this qube's (and recorded: engine_dirty):
     * the next Start cleans its leftovers first, whatever virt_mode says then. */
    bh_glue_engine_unpin(app, q);
    bool dispose = q->klass == BH_DISPVM && bh_kv_get(&q->features, "internal.auto-cleanup");
    bh_preload_halted(app, q);
    if (!dispose)
        stop_volumes(app, q);
    bh_glue_spec_free(&sb);
    bool was_halting = q->rt.state == BH_STATE_HALTING || q->rt.shutdown_requested;
    q->rt.state = BH_STATE_HALTED;
    q->rt.shutdown_requested = false;
    q->rt.start_time = 0;
    if ((crashed || crashed_seen) && !was_halting)
        bh_info("%s: stopped unexpectedly", q->name);
    /* As qubesd: domain-stopped, then domain-shutdown, neither with arguments; then
     * the runtime properties read their defaults again. */
    emit(q, "domain-stopped", NULL);
    emit(q, "domain-shutdown", NULL);
    bh_devices_qube_stopped(app, q);
    static const char *const prs[] = { "xid", "stubdom_xid", "start_time" };
    for (size_t i = 0; i < sizeof prs / sizeof *prs; i++) {
        char ev[48];
        snprintf(ev, sizeof ev, "property-reset:%s", prs[i]);
        const char *kv[] = { "name", prs[i], NULL };
        emit(q, ev, kv);
    }
    /* A used disposable is destroyed with every byte it wrote, right after the reply
     * that reported its end (Kill, or the event), so that nobody waits for the
     * removal of its volumes. */
    if (dispose)
        bh_loop_defer(remove_disposable, (void *)(uintptr_t)q->qid);
    /* Calls waiting for this halt (Shutdown with wait, a Start during Halting) are
     * answered once everything above is done, a disposable's removal included. */
    if (dispose)
        bh_loop_defer(answer_waiters, (void *)(uintptr_t)q->qid);
    else
        bh_waiters_halted(app, q->qid);
}

static void halted(struct bh_app *app, struct bh_qube *q) { halted_after(app, q, false, false, false); }

static bool start_agent_phase_ended(struct bh_qube *q, const char *why);
static void starting_tick(int64_t now);
static bool end_begin(struct bh_app *app, struct bh_qube *q);

static void on_pidfd(void *ctx, uint32_t ev)
{
    (void)ev;
    struct bh_qube *q = bh_app_find_qid(lc_app, (uint32_t)(uintptr_t)ctx);
    if (q && !start_agent_phase_ended(q, "its init ended while its qrexec-daemon started") && !end_begin(lc_app, q))
        halted(lc_app, q);
}

/* Shutdown deadlines; qrexec-daemons that died on their own are reaped. */
/* A disposable whose removal was refused because its engine could not clean up
 * (halted_after: engine_dirty) is tried again now and then: what blocked it (a cgroup
 * of someone else's, a busy mount) may be gone. An engine's cleanup runs in line and a
 * failing one can take seconds, so: one disposable per round, in turn (one that never
 * goes does not keep the others waiting), and the rounds back off from 30 s to an hour
 * while nothing succeeds. */
static void dirty_disposables_tick(int64_t now)
{
    static int64_t next_ms, pause_ms = 30000;
    static uint32_t last_qid;
    if (now < next_ms)
        return;
    struct bh_qube *pick = NULL, *first = NULL;
    for (size_t i = 0; i < lc_app->nqubes; i++) {
        struct bh_qube *q = lc_app->qubes[i];
        if (q->klass != BH_DISPVM || !q->rt.engine_dirty || bh_qube_is_running(q) ||
            !bh_kv_get(&q->features, "internal.auto-cleanup"))
            continue;
        if (!first || q->qid < first->qid)
            first = q;
        if (q->qid > last_qid && (!pick || q->qid < pick->qid))
            pick = q;
    }
    if (!pick)
        pick = first;
    if (!pick) {
        pause_ms = 30000;
        next_ms = now + pause_ms;
        return;
    }
    last_qid = pick->qid;
    struct bh_exc e = { 0 };
    char name[32];
    snprintf(name, sizeof name, "%s", pick->name);
    if (bh_qube_remove(lc_app, pick, &e) < 0) { /* (pick is gone when it succeeded) */
        bh_warn("removing disposable %s: %s (tried again in %lld s)", name, e.msg, (long long)pause_ms / 1000);
        next_ms = bh_now_ms() + pause_ms;
        pause_ms = pause_ms * 2 > 3600000 ? 3600000 : pause_ms * 2;
    } else {
        pause_ms = 30000;
        next_ms = bh_now_ms() + pause_ms;
    }
}

static void on_tick(void *ctx)
{
    (void)ctx;
    int64_t now = bh_now_ms();
    starting_tick(now);
    bh_late_reap_tick();
    for (size_t i = 0; i < lc_app->nqubes; i++) {
        struct bh_qube *q = lc_app->qubes[i];
        int st = 0;
        if (q->rt.qrexec_pid > 0 && waitpid(q->rt.qrexec_pid, &st, WNOHANG) == q->rt.qrexec_pid)
            qrexec_died(q, st);
        else if (q->rt.qrexec_pid <= 0 && q->klass != BH_ADMINVM && qube_alive(q) && q->rt.qrexec_restart_ms[0])
            qrexec_restart(q); /* a restart held back by the rate limit */
        if (q->rt.state == BH_STATE_HALTING && now > q->rt.shutdown_deadline_ms) {
            bh_info("%s: did not stop within shutdown_timeout: killing", q->name);
            struct bh_exc e = { 0 };
            bh_lifecycle_kill(lc_app, q, &e);
        }
    }
    dirty_disposables_tick(now);
}

/* ---- the calls ---- */

/* ---- the end of a start (at once, or when an engine's start fd says so) ---- */

/* The engine runs the qube and its agent is ready: watch it, and have its qrexec-daemon
 * connect (forked with the qube: qrexec_early) or start one now. 1: wait for the
 * daemon's ready byte on *rfd; 0: no qrexec-daemon is installed; -1: failed (no daemon
 * left). */
static int start_agent_begin(struct bh_app *app, struct bh_qube *q, const struct bh_driver *drv,
                             struct bh_spec_buf *sb, int *rfd, bh_error *err)
{
    watch(q, drv, &sb->spec);
    if (q->rt.qrexec_gofd >= 0 && q->rt.qrexec_pid > 0) {
        *rfd = q->rt.qrexec_early_rfd;
        q->rt.qrexec_early_rfd = -1;
        bool told = bh_write_all(q->rt.qrexec_gofd, "G", 1) == 0;
        close(q->rt.qrexec_gofd);
        q->rt.qrexec_gofd = -1;
        if (told)
            return 1;
        close(*rfd);
        *rfd = -1;
        qrexec_stop(q);
        return bh_fail(err, EPIPE, "qrexec-daemon for %s ended before its qube was up", q->name);
    }
    qrexec_early_forget(q);
    qrexec_kill_stale(sb, q->name);
    return qrexec_spawn(app, q, sb->spec.default_user ? sb->spec.default_user : "user", rfd, NULL, err);
}

/* The daemon said ready (or there is none): the last steps of a start. */
static int start_agent_end(struct bh_app *app, struct bh_qube *q, bh_error *err)
{
    if (q->rt.qrexec_pid > 0) {
        qrexec_watch(q);
        qrexec_write_pidfile(app, q);
    }
    /* required devices are part of the domain Qubes starts: one that cannot be
     * attached (taken since the check) fails the start */
    struct bh_exc de = { 0 };
    if (bh_devices_attach_assigned(app, q, true, &de) < 0)
        return bh_fail(err, EBUSY, "%s", de.msg);
    return 0;
}

/* A start failed, or must not go on (its network rules failed after an engine started q
 * without waiting for them): what the engine made goes, in line. Its kill also cancels
 * a pending start; one that fails keeps the engine, for the next Start to clean up
 * first. Returns -1. */
static int start_undo(struct bh_qube *q, const struct bh_driver *drv, const struct bh_qube_spec *spec)
{
    bh_error kerr = { 0 };
    if (drv->kill(spec, &kerr) < 0)
        q->rt.engine_dirty = true;
    return -1;
}

/* Both halves in line (starts that are not asynchronous). */
static int start_agent(struct bh_app *app, struct bh_qube *q, const struct bh_driver *drv, struct bh_spec_buf *sb,
                       bh_error *err)
{
    int rfd = -1;
    int r = start_agent_begin(app, q, drv, sb, &rfd, err);
    if (r == 1)
        r = qrexec_await_ready(app, q, rfd, err);
    if (r == 0)
        r = start_agent_end(app, q, err);
    if (r < 0) {
        qrexec_stop(q);
        start_undo(q, drv, &sb->spec);
    }
    return r;
}

/* swept: the qube's qrexec identities were swept already (by a Kill's child). */
static int start_failed_swept(struct bh_app *app, struct bh_qube *q, bh_error *err, struct bh_exc *e, bool swept)
{
    struct bh_sq_buf b;
    bh_glue_sq(app, q, &b);
    unwatch(q);
    qrexec_stop(q); /* forked with the qube (qrexec_early), or in an agent phase */
    if (!swept)
        (void)bh_qube_ids_reap(q->qid); /* calls it made meanwhile (see halted) */
    q->rt.state = BH_STATE_HALTED;
    q->rt.shutdown_requested = false; /* a Shutdown sent while it booted */
    /* The engine cleaned up after its own failure, or start_agent had it (kill): that
     * it did is checked once more (idempotent; engines ignore some cleanup errors on
     * their failure paths): one that cannot is kept for the next Start. */
    if (q->rt.engine && !q->rt.engine_dirty) {
        struct bh_spec_buf sb;
        bh_glue_spec(app, q, &sb);
        bh_error kerr = { 0 };
        if (q->rt.engine->kill(&sb.spec, &kerr) < 0) {
            bh_warn("%s: cleanup after a failed start: %s", q->name, kerr.msg);
            q->rt.engine_dirty = true;
        }
        bh_glue_spec_free(&sb);
    }
    bh_glue_engine_unpin(app, q);
    bh_devices_qube_stopped(app, q); /* required devices attached before the failure */
    bh_net_glue_stopped(app, q);
    (void)bh_volumes_stopped(bh_glue_pool(), &b.sq, NULL);
    bh_glue_sq_free(&b);
    const char *kv[] = { "reason", err->msg, NULL };
    emit(q, "domain-start-failed", kv);
    /* As qubesd's DispVM.start: a disposable that cleans up after itself does so also
     * when its start failed (else nothing would remove it until bulkheadd restarts;
     * one whose engine could not clean up is removed by dirty_disposables_tick) */
    if (q->klass == BH_DISPVM && bh_kv_get(&q->features, "internal.auto-cleanup") && !q->rt.engine_dirty)
        bh_loop_defer(remove_disposable, (void *)(uintptr_t)q->qid);
    return bh_exc(e, "QubesException", "Start failed: %s", err->msg);
}

static int start_failed(struct bh_app *app, struct bh_qube *q, bh_error *err, struct bh_exc *e)
{
    return start_failed_swept(app, q, err, e, false);
}

/* A Kill came while the qube booted, or its start failed with the qube still there
 * (why: the start's own failure, start_fail_beside), and its engine's cleanup is done
 * (r: its result, err its error): the start fails, whoever waits for it hears so; a
 * cleanup that failed keeps the engine for the next Start to clean up first (as
 * halted_after). */
static void start_killed(struct bh_app *app, struct bh_qube *q, int r, const bh_error *err, bool swept,
                         const bh_error *why)
{
    bh_error kerr = { 0 };
    if (why && r == 0)
        kerr = *why;
    else if (why)
        bh_fail(&kerr, why->errnum ? why->errnum : EIO, "%s; its cleanup failed: %s", why->msg, err->msg);
    else if (r == 0)
        bh_fail(&kerr, EINTR, "%s was killed while starting", q->name);
    else
        bh_fail(&kerr, err->errnum ? err->errnum : EIO, "%s was killed while starting; its cleanup failed: %s", q->name,
                err->msg);
    if (r < 0)
        q->rt.engine_dirty = true;
    struct bh_exc se = { 0 };
    uint32_t qid = q->qid;
    start_failed_swept(app, q, &kerr, &se, swept);
    bh_waiters_started(app, qid, &se);
    bh_waiters_halted(app, qid); /* a Shutdown with wait, a Start sent meanwhile */
}

static void start_done(struct bh_app *app, struct bh_qube *q)
{
    q->rt.state = BH_STATE_RUNNING;
    q->rt.start_time = (int64_t)time(NULL);
    bh_net_glue_started(app, q);
    const char *kv[] = { "start_guid", "False", NULL };
    emit(q, "domain-start", kv);
    (void)bh_devices_attach_assigned(app, q, false, NULL);
}

/* Starts in progress (engines with start_begin), by qid. */
#define MAX_STARTING 256
static struct starting {
    uint32_t qid;        /* 0: free */
    int fd;              /* the engine's; in the agent phase the daemon's ready pipe */
    bool agent;          /* the engine is done; waiting for the qrexec-daemon */
    int64_t deadline_ms; /* agent phase: the daemon must be ready by then */
} starting[MAX_STARTING];

static struct starting *starting_find(uint32_t qid)
{
    for (size_t i = 0; i < MAX_STARTING; i++)
        if (starting[i].qid == qid)
            return &starting[i];
    return NULL;
}

static void on_start_fd(void *ctx, uint32_t ev);
static void on_start_agent_ready(void *ctx, uint32_t ev);
static int start_fail_beside(struct bh_qube *q, const struct bh_driver *drv, const bh_error *why);

static int starting_add(struct bh_qube *q, int fd)
{
    struct starting *s = starting_find(0);
    if (!s || bh_loop_add(fd, EPOLLIN, on_start_fd, (void *)(uintptr_t)q->qid) < 0)
        return -1;
    *s = (struct starting){ .qid = q->qid, .fd = fd };
    return 0;
}

static void start_agent_failed(struct bh_qube *q, const struct bh_driver *drv, bh_error *err);

/* Forgets a start in progress (before the engine closes its fd). */
static bool starting_drop(uint32_t qid)
{
    struct starting *s = starting_find(qid);
    if (!s || !qid)
        return false;
    bh_loop_del(s->fd);
    s->qid = 0;
    return true;
}

bool bh_lifecycle_starting(const struct bh_qube *q) { return q->qid && starting_find(q->qid) != NULL; }

static void on_start_fd(void *ctx, uint32_t ev)
{
    (void)ev;
    uint32_t qid = (uint32_t)(uintptr_t)ctx;
    struct bh_qube *q = bh_app_find_qid(lc_app, qid);
    const struct bh_driver *drv = q ? bh_glue_driver(lc_app, q) : NULL;
    if (!q || !drv || !drv->start_finish) {
        starting_drop(qid);
        return;
    }
    /* The engine closes its fd when the start ends, inside start_finish: the loop must
     * forget it first. An fd closed while registered can stay in epoll (a forked child
     * may still hold the socket) and report events for a registration already freed
     * (a use-after-free ASan found under disposable churn). */
    struct starting *s = starting_find(qid);
    if (!s)
        return;
    int fd = s->fd;
    bh_loop_del(fd);
    struct bh_spec_buf sb;
    bh_glue_spec(lc_app, q, &sb);
    bh_error err = { 0 };
    int r = drv->start_finish(&sb.spec, &err);
    if (r == BH_START_FAILED_KILL) {
        s->qid = 0;
        if (start_fail_beside(q, drv, &err) == 0) {
            bh_glue_spec_free(&sb);
            return; /* its start fails once the qube is gone (on_kill_done) */
        }
        r = start_undo(q, drv, &sb.spec);
    }
    if (r == 1) {
        if (bh_loop_add(fd, EPOLLIN, on_start_fd, (void *)(uintptr_t)qid) == 0) {
            bh_glue_spec_free(&sb);
            return; /* still booting */
        }
        r = bh_fail(&err, ENOMEM, "watching the start of %s", q->name);
    }
    if (r == 0) {
        /* The engine is done; the qube's qrexec-daemon is started and its ready pipe
         * watched like the engine's fd was (waiting for it in line held the loop for
         * ~60 ms per disposable). */
        int rfd = -1;
        r = start_agent_begin(lc_app, q, drv, &sb, &rfd, &err);
        if (r == 1 && bh_loop_add(rfd, EPOLLIN, on_start_agent_ready, (void *)(uintptr_t)qid) == 0) {
            q->rt.qrexec_readyfd = rfd;
            s->fd = rfd;
            s->agent = true;
            s->deadline_ms = bh_now_ms() + bh_qube_prop_int(lc_app, q, "qrexec_timeout") * 1000;
            bh_glue_spec_free(&sb);
            return;
        }
        if (r == 1) {
            close(rfd);
            r = bh_fail(&err, ENOMEM, "watching the qrexec-daemon of %s", q->name);
        } else if (r == 0) {
            r = start_agent_end(lc_app, q, &err);
        }
        if (r < 0) {
            qrexec_stop(q);
            start_undo(q, drv, &sb.spec);
        }
    }
    s->qid = 0;
    bh_glue_spec_free(&sb);
    struct bh_exc e = { 0 };
    if (r < 0)
        start_failed(lc_app, q, &err, &e);
    else
        start_done(lc_app, q);
    bh_waiters_started(lc_app, qid, r < 0 ? &e : NULL);
}

/* The agent phase of an asynchronous start: the qrexec-daemon's ready pipe spoke (or
 * closed: the daemon gave up and exits). */
static void on_start_agent_ready(void *ctx, uint32_t ev)
{
    (void)ev;
    uint32_t qid = (uint32_t)(uintptr_t)ctx;
    struct bh_qube *q = bh_app_find_qid(lc_app, qid);
    struct starting *s = starting_find(qid);
    if (!q || !s || !s->agent || q->rt.qrexec_readyfd < 0)
        return;
    char c = 0;
    ssize_t n = read(q->rt.qrexec_readyfd, &c, 1);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    bh_loop_del(q->rt.qrexec_readyfd);
    close(q->rt.qrexec_readyfd);
    q->rt.qrexec_readyfd = -1;
    s->qid = 0;
    const struct bh_driver *drv = bh_glue_driver(lc_app, q);
    bh_error err = { 0 };
    if (n == 1 && c == '1') {
        bool died = q->rt.qrexec_pid <= 0; /* said ready, then died; the tick reaped it */
        if (start_agent_end(lc_app, q, &err) < 0) {
            start_agent_failed(q, drv, &err);
            return;
        }
        start_done(lc_app, q);
        if (died)
            qrexec_restart(q);
        bh_waiters_started(lc_app, qid, NULL);
        return;
    }
    bh_fail(&err, ETIMEDOUT, "qrexec-daemon for %s did not become ready", q->name);
    start_agent_failed(q, drv, &err);
}

/* If q is in the agent phase of an asynchronous start, that start fails (why) and true
 * is returned. */
static bool start_agent_phase_ended(struct bh_qube *q, const char *why)
{
    struct starting *s = q->qid ? starting_find(q->qid) : NULL;
    if (!s || !s->agent)
        return false;
    bh_error err = { 0 };
    bh_fail(&err, EIO, "%s: %s", q->name, why);
    start_agent_failed(q, bh_glue_driver(lc_app, q), &err);
    return true;
}

/* A qrexec-daemon that neither says ready nor exits by the qube's qrexec_timeout fails
 * the start (the daemon has the same timeout of its own: this is the fallback). */
static void starting_tick(int64_t now)
{
    for (size_t i = 0; i < MAX_STARTING; i++) {
        if (!starting[i].qid || !starting[i].agent || now <= starting[i].deadline_ms + 1000)
            continue;
        struct bh_qube *q = bh_app_find_qid(lc_app, starting[i].qid);
        if (!q) {
            starting[i].qid = 0;
            continue;
        }
        start_agent_phase_ended(q, "its qrexec-daemon did not become ready");
    }
}

/* An asynchronous start fails in its agent phase (the daemon was not ready in time,
 * or the qube's init ended meanwhile): everything goes, the waiters hear why. */
static void start_agent_failed(struct bh_qube *q, const struct bh_driver *drv, bh_error *err)
{
    uint32_t qid = q->qid;
    starting_drop(qid);
    if (drv && start_fail_beside(q, drv, err) == 0)
        return; /* its start fails once the qube is gone (on_kill_done) */
    qrexec_stop(q);
    struct bh_spec_buf sb;
    bh_glue_spec(lc_app, q, &sb);
    if (drv)
        start_undo(q, drv, &sb.spec);
    bh_glue_spec_free(&sb);
    struct bh_exc e = { 0 };
    start_failed(lc_app, q, err, &e);
    bh_waiters_started(lc_app, qid, &e);
}

/* spec.before_run of a start: q's network rules are in force (net_glue.c). Called
 * once more after the engine's start, when nothing is left to wait for unless an
 * engine did not call it. */
static int rules_in(void *q, bh_error *err) { return bh_net_glue_rules_wait(q, err); }


struct bh_qube *bh_lifecycle_netvm_stopping(struct bh_app *app, struct bh_qube *q)
{
    struct bh_qube *n = q;
    for (int hop = 0; hop < 64; hop++) { /* bounded: the netvm property refuses loops */
        _cleanup_free_ char *name = bh_qube_prop(app, n, "netvm");
        n = name && *name ? bh_app_find(app, name) : NULL;
        if (!n || n == q)
            return NULL;
        if (n->rt.state == BH_STATE_HALTING || n->rt.state == BH_STATE_DYING)
            return n;
    }
    return NULL;
}

int bh_lifecycle_start(struct bh_app *app, struct bh_qube *q, struct bh_exc *e)
{
    if (q->rt.state != BH_STATE_HALTED && q->rt.state != BH_STATE_CRASHED)
        return 0; /* as qubesd: starting a qube that is not halted does nothing */
    if (q->klass == BH_DISPVM || q->klass == BH_APPVM) {
        _cleanup_free_ char *t = bh_qube_prop(app, q, "template");
        if (!t || !*t || !bh_app_find(app, t))
            return bh_exc(e, "QubesException", "Cannot start %s: it has no template", q->name);
    }
    /* Halted with an engine still its own: a cleanup of it failed (a Kill's, a halt's,
     * a start's), or a restarted bulkheadd found leftovers. It cleans up first: a start
     * in the other engine (virt_mode's now) would never clean them. Before the netvm
     * starts: a refused Start starts nothing. */
    bh_error cerr = { 0 };
    if (bh_glue_engine_clean(app, q, &cerr) < 0)
        return bh_exc(e, "QubesException", "Start failed: %s", cerr.msg);
    /* As Qubes: the qube's netvm (and so the whole chain) starts first. One on its way
     * down would be taken as running and the qube linked to it lose its link at once:
     * an Admin API Start waits for its halt (api_vm.c); a start with no one to wait
     * (autostart, a disposable for a call) is refused with the reason. */
    struct bh_qube *down = bh_lifecycle_netvm_stopping(app, q);
    if (down)
        return bh_exc(e, "QubesException", "Start failed: its netvm %s is stopping; start %s once %s has halted",
                      down->name, q->name, down->name);
    _cleanup_free_ char *netvm = bh_qube_prop(app, q, "netvm");
    struct bh_qube *nq = netvm && *netvm ? bh_app_find(app, netvm) : NULL;
    if (nq && !bh_qube_is_running(nq)) {
        struct bh_exc ne = { 0 };
        if (bh_lifecycle_start(app, nq, &ne) < 0)
            return bh_exc(e, "QubesException", "Start failed: cannot start netvm %s: %s", nq->name, ne.msg);
    }
    const struct bh_driver *drv = bh_glue_driver(app, q);
    if (!drv) {
        _cleanup_free_ char *vm = bh_qube_prop(app, q, "virt_mode");
        return bh_exc(e, "QubesException", "Cannot start %s: engine '%s' is not available on this host", q->name, vm);
    }
    bh_error err = { 0 };
    if (bh_glue_runtime_check(app, &err) < 0)
        return bh_exc(e, "QubesException", "Start failed: %s", err.msg);
    /* As qmemman: a qube starts only if its initial memory fits in what the running
     * qubes leave of the budget; the common cgroup enforces the total (engine). */
    uint64_t budget = bh_glue_memory_budget_mib(), used = 0;
    uint64_t need = (uint64_t)bh_qube_prop_int(app, q, "memory");
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *o = app->qubes[i];
        if (o != q && o->klass != BH_ADMINVM && bh_qube_is_running(o))
            used += (uint64_t)bh_qube_prop_int(app, o, "memory");
    }
    if (used + need > budget) {
        bh_warn("%s: not started: needs %llu MiB, running qubes hold %llu of %llu MiB", q->name,
                (unsigned long long)need, (unsigned long long)used, (unsigned long long)budget);
        return bh_exc(e, "QubesMemoryError",
                      "Not enough memory to start domain '%s': it needs %llu MiB, running qubes hold %llu of the %llu MiB for qubes",
                      q->name, (unsigned long long)need, (unsigned long long)used, (unsigned long long)budget);
    }
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    struct bh_sq_buf b;
    bh_glue_sq(app, q, &b);
    q->rt.state = BH_STATE_TRANSIENT;
    emit(q, "domain-pre-start", NULL);
    /* as QubesVM.start: required devices are checked first, the failure is Qubes' */
    if (bh_devices_required_check(app, q, e) < 0) { /* (no volumes prepared yet) */
        bh_glue_sq_free(&b);
        bh_glue_spec_free(&sb);
        q->rt.state = BH_STATE_HALTED;
        const char *kv[] = { "reason", e->msg, NULL };
        emit(q, "domain-start-failed", kv);
        return -1;
    }
    int r = bh_volumes_prepare(bh_glue_pool(), &b.sq, &sb.spec.vol, &err);
    if (r == 0)
        r = bh_net_glue_prestart(app, q, &sb.spec, &err);
    /* An engine that boots for seconds (vm), and disposables on any engine (other qubes'
     * calls make them at will; their start must not hold up everyone's Admin API
     * requests): the loop watches the engine's fd (on_start_fd). Other ns qubes start
     * at once, in line (netvm chains and autostart rely on that order). */
    bool async = drv->start_begin && (strcmp(drv->name, "ns") || q->klass == BH_DISPVM);
    if (r == 0)
        bh_glue_engine_pin(app, q, drv);
    /* The network rules that prestart handed over go in while the engine prepares the
     * qube; the engine waits for them before the qube's first process runs. */
    sb.spec.before_run = rules_in;
    sb.spec.before_run_ctx = q;
    if (r == 0 && async) {
        int fd = drv->start_begin(&sb.spec, &err);
        if (fd >= 0 && rules_in(q, &err) < 0)
            fd = start_undo(q, drv, &sb.spec);
        if (fd >= 0)
            qrexec_early(app, q, &sb);
        if (fd >= 0 && starting_add(q, fd) == 0) {
            bh_volume_layout_free(&sb.spec.vol);
            bh_glue_sq_free(&b);
            bh_glue_spec_free(&sb);
            return BH_LIFECYCLE_STARTING;
        }
        if (fd >= 0) {
            start_undo(q, drv, &sb.spec);
            bh_fail(&err, EAGAIN, "cannot watch the start of %s", q->name);
        }
        r = -1;
    } else if (r == 0 && drv->start_begin) {
        /* In line, but in the same two halves, so that the qrexec-daemon starts with it. */
        int fd = drv->start_begin(&sb.spec, &err);
        if (fd >= 0 && rules_in(q, &err) < 0)
            fd = start_undo(q, drv, &sb.spec);
        r = fd < 0 ? -1 : 1;
        if (fd >= 0)
            qrexec_early(app, q, &sb);
        while (r == 1) {
            struct pollfd p = { .fd = fd, .events = POLLIN };
            if (poll(&p, 1, -1) < 0 && errno != EINTR) {
                r = bh_fail_errno(&err, "waiting for the start of %s", q->name);
                start_undo(q, drv, &sb.spec);
                break;
            }
            r = drv->start_finish(&sb.spec, &err);
            if (r == BH_START_FAILED_KILL) {
                r = start_undo(q, drv, &sb.spec);
            }
        }
    } else if (r == 0) {
        r = drv->start(&sb.spec, &err);
        if (r == 0 && rules_in(q, &err) < 0)
            r = start_undo(q, drv, &sb.spec);
    }
    bh_volume_layout_free(&sb.spec.vol);
    bh_glue_sq_free(&b);
    if (r == 0)
        r = start_agent(app, q, drv, &sb, &err);
    bh_glue_spec_free(&sb);
    if (r < 0)
        return start_failed(app, q, &err, e);
    start_done(app, q);
    return 0;
}

static int need_running(struct bh_qube *q, struct bh_exc *e)
{
    if (!bh_qube_is_running(q))
        return bh_exc(e, "QubesVMNotStartedError", "Domain is powered off: '%s'", q->name);
    return 0;
}

int bh_lifecycle_shutdown(struct bh_app *app, struct bh_qube *q, bool force, struct bh_exc *e)
{
    if (need_running(q, e) < 0)
        return -1;
    if (!force && bh_qube_prop_bool(app, q, "provides_network")) {
        char users[400] = "";
        size_t off = 0;
        for (size_t i = 0; i < app->nqubes; i++) {
            struct bh_qube *o = app->qubes[i];
            /* As Qubes: preloaded disposables do not hold their netvm up. */
            bool preload = o->klass == BH_DISPVM && bh_kv_get(&o->features, "preload-dispvm");
            _cleanup_free_ char *n = bh_qube_is_running(o) && o != q && !preload ? bh_qube_prop(app, o, "netvm") : NULL;
            if (n && !strcmp(n, q->name) && off < sizeof users)
                off += (size_t)snprintf(users + off, sizeof users - off, "%s%s", off ? ", " : "", o->name);
        }
        if (off)
            return bh_exc(e, "QubesVMInUseError", "There are other VMs connected to this VM: %s", users);
    }
    if (q->rt.state == BH_STATE_HALTING || q->rt.state == BH_STATE_DYING)
        return 0; /* on its way down already (a Kill's or a halt's cleanup runs) */
    const char *pre[] = { "force", force ? "True" : "False", NULL };
    emit(q, "domain-pre-shutdown", pre);
    const struct bh_driver *drv = bh_glue_driver(app, q);
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    bh_error err = { 0 };
    if (q->rt.state == BH_STATE_PAUSED && drv->unpause)
        drv->unpause(&sb.spec, &err);
    int r = drv->shutdown(&sb.spec, &err);
    bh_glue_spec_free(&sb);
    if (r < 0)
        return bh_exc(e, "QubesException", "Shutdown failed: %s", err.msg);
    q->rt.state = BH_STATE_HALTING;
    q->rt.shutdown_requested = true;
    q->rt.shutdown_deadline_ms = bh_now_ms() + bh_qube_prop_int(app, q, "shutdown_timeout") * 1000;
    return 0;
}

/* Kills running beside the loop: an engine's kill (signals, waiting for the qube's
 * processes to end, unmounting, removing cgroups: ~50-90 ms under load for an ns qube,
 * ~30 ms for a small VM's QEMU and helpers, more for a large guest's RAM) runs in a
 * forked child of bulkheadd; the loop watches its pidfd (on_kill_done) and goes on
 * answering other qubes' requests meanwhile. What an engine keeps in bulkheadd's memory
 * for a running qube (the vm engine's watch fds) its kill_now() drops here, and a child
 * of ours that the kill ends (QEMU) is reaped here; the rest (runtime dir, cgroups,
 * mounts) the child can do. A start in progress goes the same way: kill_now frees the
 * engine's part of it here (and hands back an ns init that no watch had yet), and the
 * start fails once the child is done (start_killed). An engine without kill_now is
 * killed in line. The qube is no longer watched while the child works: its end is the
 * child's doing, and halted() (or start_killed) runs once, after the child.
 * A qube that ended on its own is cleaned up the same way (end_begin), and its exit
 * status, read once the child is done, says whether it crashed.
 *
 * The child also sweeps the qube's qrexec identities (qube_ids_reap.c) while the qube
 * dies, instead of the loop doing it after: its qrexec-daemon, the only maker of
 * processes of those identities, is ended by the child first, then what is left of its
 * process group (call processes not yet dropped to the call identity), so that nothing
 * of them can appear after the sweep. */
#define MAX_KILLING 64
static struct killing {
    uint32_t qid; /* 0: free */
    pid_t pid;
    int pidfd;
    int init_pidfd; /* what watch_fd gave (ns: init, our child): reaped here, the child cannot */
    int child_pidfd; /* another child of ours the kill ends (kill_now: vm's QEMU, an ns
                      * init still starting), reaped here */
    pid_t qrexec_pid; /* its qrexec-daemon (our child), ended by the child, reaped here */
    bool ended; /* not a Kill: the qube ended on its own (end_begin) */
    bool starting; /* killed while it booted: its start fails (start_killed), no halt */
    bool failed;   /* ... not a Kill: the start failed on its own (start_fail_beside) */
    bh_error why;  /* ... and this is why */
    bool asked; /* ... after a stop was asked (the engine's ended()) */
} killing[MAX_KILLING];

/* The child's exit status: a bit per step that failed. */
#define KILL_FAILED 1
#define KILL_NOT_SWEPT 2

static struct killing *killing_find(uint32_t qid)
{
    for (size_t i = 0; i < MAX_KILLING; i++)
        if (killing[i].qid == qid)
            return &killing[i];
    return NULL;
}

/* A process of ours the Kill ended: its status into *how if it has ended (reaped, fd
 * closed); else, if ours, held for the tick to reap once it has (stuck in the kernel
 * past the child's wait); not ours, or not a pidfd (the vm engine's epoll): closed. */
static void reap_ended(int fd, uint32_t qid, siginfo_t *how)
{
    siginfo_t si;
    int r = bh_pidfd_try_reap(fd, &si);
    if (r == 1)
        *how = si;
    if (r != 0)
        close(fd);
    else if (bh_late_reap(fd) < 0)
        bh_warn("cannot keep a pidfd to reap a process of %u later", qid);
}

static void on_kill_done(void *ctx, uint32_t ev)
{
    (void)ev;
    struct killing *k = ctx;
    int st = 0;
    while (waitpid(k->pid, &st, 0) < 0 && errno == EINTR)
        ;
    bh_loop_del(k->pidfd);
    close(k->pidfd);
    /* How the qube's own process ended (ns: init; vm: QEMU, the second): what tells a
     * qube that ended on its own cleanly from one that crashed. Not ours (adopted after a
     * restart of bulkheadd): unknown, taken as not clean. */
    siginfo_t how = { 0 };
    if (k->init_pidfd >= 0) /* ns: init, our child unless adopted; vm: an epoll */
        reap_ended(k->init_pidfd, k->qid, &how);
    if (k->child_pidfd >= 0) {
        /* a QEMU that ended on its own has left its cgroup, which the child waited for, a
         * moment before it can be reaped (the kernel's cgroup_exit comes before
         * exit_notify): its status is what tells a clean poweroff from a crash */
        if (k->ended)
            (void)bh_pidfd_wait(k->child_pidfd, 200);
        reap_ended(k->child_pidfd, k->qid, &how);
    }
    bool crashed = k->ended && !k->asked && !(how.si_pid > 0 && how.si_code == CLD_EXITED && how.si_status == 0);
    qrexec_reap(k->qrexec_pid);
    bool swept = WIFEXITED(st) && !(WEXITSTATUS(st) & KILL_NOT_SWEPT);
    uint32_t qid = k->qid;
    bool starting = k->starting;
    bh_error why = k->why;
    bool failed = k->failed;
    k->qid = 0;
    struct bh_qube *q = bh_app_find_qid(lc_app, qid);
    if (!q) {
        if (!swept)
            (void)bh_qube_ids_reap(qid);
        return;
    }
    struct bh_exc e = { 0 };
    if (starting) {
        /* killed while it booted: no halt, its start fails; the child's failure (its
         * reason went to our log) is retried in line for the error to report */
        int r = 0;
        bh_error err = { 0 };
        if (!WIFEXITED(st) || (WEXITSTATUS(st) & KILL_FAILED)) {
            const struct bh_driver *drv = bh_glue_driver(lc_app, q);
            struct bh_spec_buf sb;
            bh_glue_spec(lc_app, q, &sb);
            r = drv->kill(&sb.spec, &err);
            bh_glue_spec_free(&sb);
            if (r < 0)
                bh_warn("%s: kill failed: %s", q->name, err.msg);
        }
        start_killed(lc_app, q, r, &err, swept, failed ? &why : NULL);
        if (r < 0)
            bh_exc(&e, "QubesException", "Kill failed: %s", err.msg);
        bh_waiters_killed(lc_app, qid, r < 0 ? &e : NULL);
        return;
    }
    if (!WIFEXITED(st) || (WEXITSTATUS(st) & KILL_FAILED)) {
        /* The child failed (its reason went to our log): once more in line, for the
         * error to report; the qube stays as the engine leaves it. */
        const struct bh_driver *drv = bh_glue_driver(lc_app, q);
        struct bh_spec_buf sb;
        bh_glue_spec(lc_app, q, &sb);
        bh_error err = { 0 };
        int r = drv->kill(&sb.spec, &err);
        if (r < 0) {
            enum bh_power_state now = drv->state ? drv->state(&sb.spec, NULL) : BH_STATE_NA;
            bh_warn("%s: kill failed: %s", q->name, err.msg);
            bh_exc(&e, "QubesException", "Kill failed: %s", err.msg);
            bool there = now == BH_STATE_RUNNING || now == BH_STATE_PAUSED || now == BH_STATE_HALTING;
            if (there) {
                /* still there: watched again, as before the Kill, and (as the in-line
                 * Kill) not Halting: a kill took its shutdown mark, and a deadline
                 * would have the tick kill it again at once */
                q->rt.state = now == BH_STATE_HALTING ? BH_STATE_RUNNING : now;
                q->rt.shutdown_requested = false;
                watch(q, drv, &sb.spec);
                qrexec_restart(q); /* and reachable again: its qrexec-daemon was ended */
            }
            bh_glue_spec_free(&sb);
            bh_waiters_killed(lc_app, qid, &e);
            if (there) {
                bh_waiters_still_running(lc_app, qid, &e);
                return;
            }
            halted_after(lc_app, q, swept, true, crashed); /* its engine keeps it: the next Start cleans up */
            return;
        }
        bh_glue_spec_free(&sb);
    }
    halted_after(lc_app, q, swept, false, crashed);
    bh_waiters_killed(lc_app, qid, NULL);
}

/* 0: the kill runs in a child; -1: do it in line. */
static int kill_begin(struct bh_app *app, struct bh_qube *q, const struct bh_driver *drv, const struct bh_spec_buf *sb)
{
    struct killing *k = killing_find(0);
    if (!k || !drv->kill_now)
        return -1;
    int saved_pidfd = q->rt.pidfd;
    if (saved_pidfd >= 0)
        bh_loop_del(saved_pidfd); /* its death is the Kill's, not a crash to report */
    /* The signal first, in line (a few system calls; the vm engine holds it back for a
     * QEMU that outlived a helper, whose grace the child gives): the qube dies while
     * the child that waits for it and cleans up is forked, instead of after (a fork of
     * bulkheadd takes milliseconds to run on a guest where page faults trap). */
    int child_fd = drv->kill_now(&sb->spec);
    /* Its qrexec-daemon is ended by the child, which waits for that before it sweeps;
     * here it is forgotten only once the child is watched (an intended stop, not a
     * death to repair). Until then it stays ours: a Kill that cannot run beside the
     * loop runs in line, and halted() (or, if the kill fails, its watcher) does the
     * rest as before. */
    pid_t qx_pid = q->rt.qrexec_pid;
    int qx_fd = -1;
#ifdef SYS_pidfd_open
    if (qx_pid > 0)
        qx_fd = (int)syscall(SYS_pidfd_open, qx_pid, 0);
#endif
    pid_t pid = fork();
    if (pid == 0) {
        /* The engine's kill needs none of our fds: holding them would keep a file the
         * loop closes alive, and one closed before it was unregistered would stay in
         * the loop's epoll set (the use-after-free of 3a812c6). Only the
         * qrexec-daemon's pidfd stays, as fd 3. */
        int qx = -1;
        if (qx_fd == 3 || (qx_fd >= 0 && dup3(qx_fd, 3, O_CLOEXEC) == 3))
            qx = 3;
        (void)close_range(qx == 3 ? 4 : 3, ~0U, 0);
        int rc = 0;
        if (qx_pid > 0 && qx < 0)
            rc |= KILL_NOT_SWEPT; /* cannot tell when it is gone: the loop sweeps after */
        if (qx >= 0) {
            (void)syscall(SYS_pidfd_send_signal, qx, SIGTERM, NULL, 0);
            if (bh_pidfd_wait(qx, 500) != 1) {
                (void)syscall(SYS_pidfd_send_signal, qx, SIGKILL, NULL, 0);
                if (bh_pidfd_wait(qx, 2000) != 1)
                    rc |= KILL_NOT_SWEPT;
            }
            /* its call processes still root, before their drop to the call identity
             * (see qrexec_stop): the sweep could not reach them */
            if (!(rc & KILL_NOT_SWEPT))
                (void)kill(-qx_pid, SIGKILL);
        }
        struct bh_ids_sweep sweep;
        if (!(rc & KILL_NOT_SWEPT))
            bh_qube_ids_reap_begin(q->qid, &sweep);
        bh_error err = { 0 };
        if (drv->kill(&sb->spec, &err) < 0) {
            bh_warn("%s: kill: %s", q->name, err.msg);
            rc |= KILL_FAILED;
        }
        if (!(rc & KILL_NOT_SWEPT) && bh_qube_ids_reap_end(&sweep) < 0)
            rc |= KILL_NOT_SWEPT;
        _exit(rc);
    }
    if (qx_fd >= 0)
        close(qx_fd);
    int fd = -1;
#ifdef SYS_pidfd_open
    if (pid > 0)
        fd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    if (pid > 0 && fd >= 0 && bh_loop_add(fd, EPOLLIN, on_kill_done, k) == 0) {
        *k = (struct killing){ .qid = q->qid, .pid = pid, .pidfd = fd, .init_pidfd = saved_pidfd,
                               .child_pidfd = child_fd, .qrexec_pid = qx_pid };
        q->rt.pidfd = -1;
        qrexec_unwatch(q);
        qrexec_early_forget(q);
        q->rt.qrexec_pid = 0;
        (void)app;
        return 0;
    }
    if (fd >= 0)
        close(fd);
    /* the child may have run the engine's kill() already and dropped its records: the
     * kill in line would not find it again */
    if (child_fd >= 0 && bh_late_reap(child_fd) < 0)
        bh_warn("%s: cannot keep a pidfd to reap its process later", q->name);
    if (pid > 0) { /* cannot watch it: let it finish, then kill in line (idempotent) */
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    if (saved_pidfd >= 0 && bh_loop_add(saved_pidfd, EPOLLIN, on_pidfd, (void *)(uintptr_t)q->qid) < 0) {
        close(saved_pidfd);
        q->rt.pidfd = -1;
    }
    return -1;
}

/* A start that failed with what it made still there (the engine's BH_START_FAILED_KILL,
 * or an agent phase that failed) is ended as a Kill during the boot is, beside the loop:
 * its cleanup waits for the qube's processes to end (a large guest's QEMU takes a while
 * to free its RAM), and every other call is answered meanwhile. The qube is Dying; the
 * start fails with why once the child is done (on_kill_done, start_killed). Returns 0
 * when the child runs; -1 when it cannot: the caller cleans up in line. */
static int start_fail_beside(struct bh_qube *q, const struct bh_driver *drv, const bh_error *why)
{
    struct bh_spec_buf sb;
    bh_glue_spec(lc_app, q, &sb);
    int r = kill_begin(lc_app, q, drv, &sb);
    bh_glue_spec_free(&sb);
    if (r < 0)
        return -1;
    struct killing *k = killing_find(q->qid);
    k->starting = true;
    k->failed = true;
    k->why = *why;
    q->rt.state = BH_STATE_DYING;
    return 0;
}

/* A running qube's watch said it ended on its own (its init exited, QEMU or a helper of
 * it ended): its cleanup runs as a Kill's, beside the loop (a halt's engine cleanup is a
 * Kill's work: unmounting, removing cgroups, a VM's helpers and guest RAM; and the sweep
 * of its qrexec identities), the kill itself a no-op on what has ended. The qube is Dying
 * meanwhile; on_kill_done tells from the exit status whether it crashed. false: clean up
 * in line (halted()). */
static bool end_begin(struct bh_app *app, struct bh_qube *q)
{
    if (killing_find(q->qid))
        return true; /* a Kill's child is at work already */
    const struct bh_driver *drv = bh_glue_driver(app, q);
    if (!drv || !drv->kill_now || !killing_find(0))
        return false; /* in line: the engine's reap() tells all of it there */
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    /* asked to stop: by this bulkheadd (shutdown_requested), or by one before a
     * restart (the engine's mark, which its cleanup removes) */
    bool asked = q->rt.state == BH_STATE_HALTING || q->rt.shutdown_requested;
    if (drv->ended && drv->ended(&sb.spec))
        asked = true;
    int r = kill_begin(app, q, drv, &sb);
    bh_glue_spec_free(&sb);
    if (r < 0)
        return false;
    struct killing *k = killing_find(q->qid);
    k->ended = true;
    k->asked = asked;
    q->rt.state = BH_STATE_DYING;
    return true;
}

int bh_lifecycle_kill(struct bh_app *app, struct bh_qube *q, struct bh_exc *e)
{
    if (need_running(q, e) < 0)
        return -1;
    if (killing_find(q->qid))
        return BH_LIFECYCLE_KILLING; /* a second Kill waits for the first */
    const struct bh_driver *drv = bh_glue_driver(app, q);
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    bh_error err = { 0 };
    /* A start in progress is forgotten here (the engine's kill_now cancels its part);
     * its failure is told once the child is done (on_kill_done). */
    bool was_starting = starting_drop(q->qid);
    if (kill_begin(app, q, drv, &sb) == 0) {
        bh_glue_spec_free(&sb);
        killing_find(q->qid)->starting = was_starting;
        q->rt.state = BH_STATE_DYING;
        return BH_LIFECYCLE_KILLING;
    }
    int r = drv->kill(&sb.spec, &err);
    enum bh_power_state now = r < 0 && drv->state ? drv->state(&sb.spec, NULL) : BH_STATE_NA;
    if (r < 0 && !was_starting && (now == BH_STATE_RUNNING || now == BH_STATE_PAUSED || now == BH_STATE_HALTING)) {
        /* still there (as on_kill_done): watched again, its engine's watch may be gone;
         * in the state it is in (a kill took its shutdown mark: not Halting with a
         * deadline that would have the tick kill it again at once) */
        q->rt.state = now == BH_STATE_HALTING ? BH_STATE_RUNNING : now;
        q->rt.shutdown_requested = false;
        unwatch(q);
        watch(q, drv, &sb.spec);
    }
    bh_glue_spec_free(&sb);
    if (was_starting) {
        /* killed while it booted (in line: no child could be made): its start fails,
         * also when the engine's cleanup failed (the start is no longer watched: the
         * qube would stay Transient) */
        start_killed(app, q, r, &err, false, NULL);
        if (r < 0)
            return bh_exc(e, "QubesException", "Kill failed: %s", err.msg);
        return 0;
    }
    if (r < 0) {
        q->rt.engine_dirty = true; /* the halt that may follow keeps the engine */
        bh_exc(e, "QubesException", "Kill failed: %s", err.msg);
        if (now == BH_STATE_RUNNING || now == BH_STATE_PAUSED || now == BH_STATE_HALTING)
            bh_waiters_still_running(app, q->qid, e); /* as on_kill_done: calls parked on its halt */
        else {
            /* gone, though not all cleaned up (the vm engine ends QEMU before its cgroup
             * fails to go; nothing would watch it now): Halted, its engine kept */
            q->rt.state = BH_STATE_DYING;
            halted_after(app, q, false, true, false);
        }
        return -1;
    }
    q->rt.state = BH_STATE_DYING;
    halted(app, q);
    return 0;
}

static int set_paused(struct bh_app *app, struct bh_qube *q, bool pause, struct bh_exc *e)
{
    if (pause && q->rt.state != BH_STATE_RUNNING)
        return bh_exc(e, "QubesVMNotRunningError", "Domain not running (either powered off or paused): '%s'", q->name);
    if (!pause && q->rt.state != BH_STATE_PAUSED)
        return bh_exc(e, "QubesVMNotPausedError", "Domain is not paused: '%s'", q->name);
    const struct bh_driver *drv = bh_glue_driver(app, q);
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    bh_error err = { 0 };
    int r = pause ? drv->pause(&sb.spec, &err) : drv->unpause(&sb.spec, &err);
    bh_glue_spec_free(&sb);
    if (r < 0)
        return bh_exc(e, "QubesException", "%s failed: %s", pause ? "Pause" : "Unpause", err.msg);
    q->rt.state = pause ? BH_STATE_PAUSED : BH_STATE_RUNNING;
    emit(q, pause ? "domain-paused" : "domain-unpaused", NULL);
    return 0;
}

int bh_lifecycle_pause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e) { return set_paused(app, q, true, e); }
int bh_lifecycle_unpause(struct bh_app *app, struct bh_qube *q, struct bh_exc *e) { return set_paused(app, q, false, e); }

void bh_lifecycle_stats(struct bh_app *app, struct bh_qube *q, struct bh_qube_stats *st)
{
    memset(st, 0, sizeof *st);
    if (q->klass == BH_ADMINVM || !bh_qube_is_running(q))
        return;
    const struct bh_driver *drv = bh_glue_driver(app, q);
    if (!drv || !drv->state)
        return;
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    drv->state(&sb.spec, st);
    bh_glue_spec_free(&sb);
}

/* As Qubes, memory and vcpus may change while a qube runs: the engine applies them at
 * once where it can (ns: the cgroup's limits), else they count from the next start. */
static void limits_changed(struct bh_app *app, struct bh_qube *q)
{
    const struct bh_driver *drv = bh_glue_driver(app, q);
    if (!drv || !drv->set_limits)
        return;
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    bh_error err = { 0 };
    if (drv->set_limits(&sb.spec, &err) < 0)
        bh_warn("%s: new limits apply at the next start: %s", q->name, err.msg);
    bh_glue_spec_free(&sb);
}

int bh_lifecycle_check_ids(struct bh_app *app, bh_error *err)
{
    /* The range only: a qrexec UID of a qube of ours found halted may still have a call
     * that outlived it while no daemon watched, which the boot's sweep ends. */
    /* which engine each qube was started in (a record of the last bulkheadd) */
    bh_glue_engine_sweep_records(app);
    for (size_t i = 0; i < app->nqubes; i++)
        if (app->qubes[i]->klass != BH_ADMINVM)
            bh_glue_engine_load(app, app->qubes[i]);
    struct bh_qid_set live;
    if (bh_qids_live(&live, false) < 0)
        return bh_fail_errno(err, "reading which host UIDs are in use (/proc)");
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *q = app->qubes[i];
        if (q->klass == BH_ADMINVM || !bh_qid_set_has(&live, q->qid))
            continue;
        const struct bh_driver *drv = bh_glue_driver(app, q);
        enum bh_power_state s = BH_STATE_NA;
        if (drv && drv->state) {
            struct bh_spec_buf sb;
            bh_glue_spec(app, q, &sb);
            s = drv->state(&sb.spec, NULL);
            bh_glue_spec_free(&sb);
        }
        if (s != BH_STATE_HALTED && s != BH_STATE_CRASHED && s != BH_STATE_NA)
            continue; /* ours, running: adopted next */
        /* Processes still dying count as held for a moment: a daemon restarted right after
         * its own crash may find its qube's last processes (an engine helper outside the
         * qube's PID namespace) on their way out. Refused only if held for 2 s. */
        pid_t pid = bh_qid_live_pid(q->qid, false);
        for (int t = 0; pid > 0 && t < 20; t++) {
            nanosleep(&(struct timespec){ .tv_nsec = 100 * 1000 * 1000 }, NULL);
            pid = bh_qid_live_pid(q->qid, false);
        }
        if (pid == 0)
            continue; /* ended meanwhile */
        if (pid < 0)
            return bh_fail_errno(err, "reading which host UIDs are in use (/proc)");
        return bh_fail(err, EBUSY,
                       "qube %s: the host UIDs of its qid %u are in use by process %d, not a qube of this "
                       "bulkheadd (another bulkheadd's qube, left running while that daemon is stopped?)",
                       q->name, (unsigned)q->qid, (int)pid);
    }
    return 0;
}

void bh_lifecycle_boot(struct bh_app *app, bool autostart)
{
    lc_app = app;
    bh_hooks.limits_changed = limits_changed;
    bh_hooks.engine_clean = bh_glue_engine_clean;
    bh_loop_on_tick(on_tick, NULL);
    /* Adopt qubes left running by a previous bulkheadd. */
    for (size_t i = 0; i < app->nqubes; i++) {
        struct bh_qube *q = app->qubes[i];
        const struct bh_driver *drv = q->klass == BH_ADMINVM ? NULL : bh_glue_driver(app, q);
        if (!drv || !drv->adopt) {
            if (q->klass != BH_ADMINVM) {
                (void)bh_qube_ids_reap(q->qid); /* not running here: found halted */
                bh_glue_engine_unpin(app, q);
            }
            continue;
        }
        struct bh_spec_buf sb;
        bh_glue_spec(app, q, &sb);
        bh_error err = { 0 };
        int r = drv->adopt(&sb.spec, &err);
        if (r < 0) {
            bh_warn("%s: adopting: %s", q->name, err.msg);
            /* found halted, but its engine could not clean up: kept for the next
             * Start (bh_glue_engine_clean) */
            bh_glue_engine_pin(app, q, drv);
            q->rt.engine_dirty = true;
        }
        if (r == 1) {
            enum bh_power_state s = drv->state ? drv->state(&sb.spec, NULL) : BH_STATE_RUNNING;
            q->rt.state = s == BH_STATE_PAUSED ? BH_STATE_PAUSED : BH_STATE_RUNNING;
            q->rt.start_time = (int64_t)time(NULL);
            watch(q, drv, &sb.spec);
            qrexec_kill_stale(&sb, q->name);
            if (qrexec_start(app, q, &sb, &err) < 0)
                bh_warn("%s: qrexec after adopt: %s", q->name, err.msg);
            bh_info("%s: adopted running qube", q->name);
        } else {
            /* Found halted (crash sweep): what its qrexec identities left running while
             * no bulkheadd watched goes before the qid can be reused (see halted). */
            (void)bh_qube_ids_reap(q->qid);
            bh_glue_engine_unpin(app, q); /* its engine has cleaned up (adopt) */
        }
        bh_glue_spec_free(&sb);
    }
    bh_net_glue_adopted(app);
    /* Then autostart, as Qubes does at boot. */
    for (size_t i = 0; autostart && i < app->nqubes; i++) {
        struct bh_qube *q = app->qubes[i];
        if (q->klass == BH_ADMINVM || bh_qube_is_running(q) || !bh_qube_prop_bool(app, q, "autostart"))
            continue;
        struct bh_exc e = { 0 };
        if (bh_lifecycle_start(app, q, &e) < 0)
            bh_warn("autostart of %s failed: %s", q->name, e.msg);
    }
}
