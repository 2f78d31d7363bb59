#include "service.h"
#include "cleanup.h"
#include "io.h"
#include "proto.h"
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include "svc_user.h"

void bh_qx_cmd_free(struct bh_qx_cmd *c)
{
    free(c->buf);
    memset(c, 0, sizeof *c);
}

int bh_qx_cmd_parse(const char *cmdline, struct bh_qx_cmd *out, bh_error *err)
{
    memset(out, 0, sizeof *out);
    if (!strncmp(cmdline, "nogui:", 6))
        cmdline += 6;
    /* One allocation: the command line, then a slot for the bare service name. */
    size_t clen = strlen(cmdline);
    out->buf = malloc(clen + 1 + BH_QX_SERVICE_NAME_MAX + 1);
    if (!out->buf)
        return bh_fail_errno(err, "malloc");
    memcpy(out->buf, cmdline, clen + 1);
    char *name_slot = out->buf + clen + 1;
    char *colon = strchr(out->buf, ':');
    if (!colon || colon == out->buf) {
        bh_qx_cmd_free(out);
        return bh_fail(err, EINVAL, "command line without user: prefix");
    }
    *colon = '\0';
    out->user = out->buf;
    char *rest = colon + 1;
    if (strncmp(rest, "QUBESRPC ", 9) != 0) {
        out->command = rest;
        return 0;
    }
    out->rpc = true;
    char *save = NULL;
    char *svc = strtok_r(rest + 9, " ", &save);
    char *src = strtok_r(NULL, " ", &save);
    char *kind = strtok_r(NULL, " ", &save);
    char *what = strtok_r(NULL, " ", &save);
    char *extra = strtok_r(NULL, " ", &save);
    if (!svc || !src || extra || (kind && !what) || !bh_qx_service_valid(svc) ||
        !bh_qx_target_valid(src)) {
        bh_qx_cmd_free(out);
        return bh_fail(err, EINVAL, "malformed QUBESRPC request");
    }
    if (kind) {
        if (!strcmp(kind, "name"))
            out->req_target = what;
        else if (!strcmp(kind, "keyword"))
            out->req_keyword = what;
        else {
            bh_qx_cmd_free(out);
            return bh_fail(err, EINVAL, "malformed QUBESRPC request target");
        }
    }
    out->service_full = svc;
    out->source = src;
    /* "service+arg" -> service, arg: split a copy kept after the full name */
    char *plus = strchr(svc, '+');
    if (plus) {
        size_t n = (size_t)(plus - svc);
        memcpy(name_slot, svc, n); /* n <= BH_QX_SERVICE_NAME_MAX: checked by service_valid */
        name_slot[n] = '\0';
        out->service = name_slot;
        out->arg = plus + 1;
    } else {
        out->service = svc;
        out->arg = "";
    }
    return 0;
}

static char *try_dir(const char *dir, size_t dlen, const char *name)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%.*s/%s", (int)dlen, dir, name) >= sizeof path)
        return NULL;
    struct stat st;
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode))
        return strdup(path);
    return NULL;
}

char *bh_qx_find_service(const char *list, const char *full, const char *service)
{
    const char *names[2] = { full, service };
    for (int i = 0; i < 2; i++) {
        if (i == 1 && !strcmp(full, service))
            break;
        for (const char *p = list; *p;) {
            const char *e = strchr(p, ':');
            size_t n = e ? (size_t)(e - p) : strlen(p);
            if (n) {
                char *r = try_dir(p, n, names[i]);
                if (r)
                    return r;
            }
            p += n;
            if (*p == ':')
                p++;
        }
    }
    errno = ENOENT;
    return NULL;
}

/* ---- starting the command ------------------------------------------------------------
 * Everything the child needs (user, groups, argv, environment, fds) is prepared here in
 * the parent; the child is then made with vfork, so that starting a service costs no
 * copy of the caller's page tables (the agent's call handler, the daemon's dom0 call).
 * Between vfork and execve the child shares our memory: it only makes system calls on
 * what was prepared, and reports a failure through the plan. */

struct envb {
    char **v;
    size_t n, cap;
};

static void envb_free(struct envb *e)
{
    for (size_t i = 0; i < e->n; i++)
        free(e->v[i]);
    free(e->v);
    memset(e, 0, sizeof *e);
}

static int envb_push(struct envb *e, char *s)
{
    if (!s)
        return -1;
    if (e->n + 2 > e->cap) {
        size_t cap = e->cap ? e->cap * 2 : 32;
        char **v = realloc(e->v, cap * sizeof *v);
        if (!v) {
            free(s);
            return -1;
        }
        e->v = v;
        e->cap = cap;
    }
    e->v[e->n++] = s;
    e->v[e->n] = NULL;
    return 0;
}

/* name=value, replacing an entry of that name */
static int envb_set(struct envb *e, const char *name, const char *value)
{
    size_t nl = strlen(name);
    char *s = NULL;
    if (asprintf(&s, "%s=%s", name, value) < 0)
        return -1;
    for (size_t i = 0; i < e->n; i++)
        if (!strncmp(e->v[i], name, nl) && e->v[i][nl] == '=') {
            free(e->v[i]);
            e->v[i] = s;
            return 0;
        }
    return envb_push(e, s);
}

/* The environment Qubes' agent gives a service (libqrexec exec_qubes_rpc2): every
 * inherited QREXEC* variable goes, except QREXEC_SERVICE_PATH and QREXEC_AGENT_PID
 * (and our QREXEC_AGENT_SOCKET, so that a service's qrexec-client-vm finds a
 * non-default agent socket); then the call's own. A user switch sets HOME, USER,
 * LOGNAME and SHELL. */
static int build_env(struct envb *e, const struct bh_qx_cmd *c, const struct bh_qx_user *u)
{
    extern char **environ;
    for (char **p = environ; *p; p++) {
        if (c->rpc && !strncmp(*p, "QREXEC", 6) && strncmp(*p, "QREXEC_SERVICE_PATH=", 20) &&
            strncmp(*p, "QREXEC_AGENT_PID=", 17) && strncmp(*p, "QREXEC_AGENT_SOCKET=", 20))
            continue;
        if (envb_push(e, strdup(*p)) < 0)
            return -1;
    }
    if (u && (envb_set(e, "HOME", u->home) < 0 || envb_set(e, "USER", u->name) < 0 ||
              envb_set(e, "LOGNAME", u->name) < 0 || envb_set(e, "SHELL", u->shell) < 0))
        return -1;
    if (!c->rpc)
        return 0;
    if (envb_set(e, "QREXEC_REQUESTED_TARGET_TYPE", c->req_target ? "name" : c->req_keyword ? "keyword" : "") < 0 ||
        (c->req_target && envb_set(e, "QREXEC_REQUESTED_TARGET", c->req_target) < 0) ||
        (c->req_keyword && envb_set(e, "QREXEC_REQUESTED_TARGET_KEYWORD", c->req_keyword) < 0) ||
        envb_set(e, "QREXEC_SERVICE_FULL_NAME", c->service_full) < 0 ||
        envb_set(e, "QREXEC_REMOTE_DOMAIN", c->source) < 0)
        return -1;
    /* as Qubes: only when the call named an argument */
    if (strchr(c->service_full, '+') && envb_set(e, "QREXEC_SERVICE_ARGUMENT", c->arg) < 0)
        return -1;
    return 0;
}

enum fail_stage { FAIL_NONE, FAIL_USER, FAIL_CHDIR, FAIL_EXEC };

struct plan {
    int fd[3];                    /* become the child's 0, 1, 2; all > 2 */
    const struct bh_qx_user *user; /* NULL: no switch */
    const char *path;
    char *const *argv;
    char *const *envp;
    bool shell;                   /* sh -c: exec failure is 127 (as a shell's) */
    int exit_now;                 /* nonzero: exit with it once stdio is in place */
    /* signals 1-64 with a handler of ours (bit s-1), from /proc/self/status; when it
     * could not be read, the child asks the kernel about every signal */
    bool caught_known;
    uint64_t caught;
    /* written by the child before it exits (shared memory until execve) */
    volatile int stage;
    volatile int err;
};

/* The vfork child: system calls only, on what the plan holds. Never returns. */
static __attribute__((noinline)) _Noreturn void child_run(struct plan *p)
{
    for (int i = 0; i < 3; i++)
        if (dup2(p->fd[i], i) < 0) {
            p->stage = FAIL_EXEC;
            p->err = errno;
            _exit(125);
        }
    if (p->exit_now)
        _exit(p->exit_now);
    setsid();
    /* handlers of the parent must not run here (shared memory), nor survive; SIGPIPE is
     * ignored by our callers and must be the default for the command. With the set of
     * caught signals known, only those are reset (a system call each is dear on a
     * paravirtualized guest: 64 of them were a tenth of a call's service start). */
    for (int s = 1; s < NSIG; s++) {
        struct sigaction sa;
        if (p->caught_known) {
            bool caught = s <= 64 && (p->caught >> (s - 1) & 1);
            if (s != SIGPIPE && !caught)
                continue;
        } else if (sigaction(s, NULL, &sa) < 0) {
            continue;
        }
        if (p->caught_known || s == SIGPIPE || (sa.sa_handler != SIG_DFL && sa.sa_handler != SIG_IGN)) {
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = SIG_DFL;
            sigaction(s, &sa, NULL);
        }
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (p->user) {
        const struct bh_qx_user *u = p->user;
        /* raw system calls: glibc's set*id wrappers are for the whole (threaded) process */
        if (syscall(SYS_setgroups, (size_t)u->ngroups, u->groups) < 0 ||
            syscall(SYS_setresgid, u->gid, u->gid, u->gid) < 0 ||
            syscall(SYS_setresuid, u->uid, u->uid, u->uid) < 0) {
            p->stage = FAIL_USER;
            p->err = errno;
            _exit(125);
        }
        if (chdir(u->home) < 0 && chdir("/") < 0) {
            p->stage = FAIL_CHDIR;
            p->err = errno;
            _exit(125);
        }
    }
    execve(p->path, p->argv, p->envp);
    p->stage = FAIL_EXEC;
    p->err = errno;
    _exit(p->shell || errno == ENOENT ? 127 : 126);
}

/* The SigCgt line of /proc/self/status: the signals this process has handlers for. */
static bool caught_signals(uint64_t *out)
{
    char buf[4096];
    if (bh_read_small("/proc/self/status", buf, sizeof buf) <= 0)
        return false;
    const char *l = strstr(buf, "\nSigCgt:");
    if (!l)
        return false;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(l + 9, &end, 16);
    if (errno || end == l + 9 || *end != '\n')
        return false;
    *out = v;
    return true;
}

/* vfork in a frame of its own: nothing of the caller's can be clobbered */
static __attribute__((noinline)) pid_t start_child(struct plan *plan)
{
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old); /* no handler of ours runs in the child */
    pid_t p = vfork();
    if (p == 0)
        child_run(plan);
    int saved = errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    errno = saved;
    return p;
}

/* fds the child dup2s onto 0, 1, 2 must not be 0, 1, 2 themselves */
static int above_stdio(int *fd)
{
    if (*fd > 2)
        return 0;
    int n = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
    if (n < 0)
        return -1;
    close(*fd);
    *fd = n;
    return 0;
}

int bh_qx_spawn(const struct bh_qx_cmd *c, const struct bh_qx_spawn_opts *o, pid_t *pid,
                int *in_fd, int *out_fd, int *err_fd, bh_error *err)
{
    _cleanup_free_ char *svc_path = NULL;
    *in_fd = *out_fd = *err_fd = -1;
    if (c->rpc) {
        const char *list = o->service_path;
        if (!list)
            list = getenv("QREXEC_SERVICE_PATH");
        if (!list || !*list)
            list = BH_QX_DEFAULT_SERVICE_PATH;
        svc_path = bh_qx_find_service(list, c->service_full, c->service);
        if (!svc_path)
            return 127;
    }
    const struct bh_qx_user *user = NULL;
    _cleanup_free_ char *user_msg = NULL;
    if (o->switch_user && geteuid() == 0) {
        user = bh_qx_user_lookup(c->user);
        if (!user && asprintf(&user_msg, errno == ENOENT ? "qrexec: no such user '%s'\n"
                                                        : "qrexec: looking up user '%s' failed\n", c->user) < 0)
            return bh_fail_errno(err, "asprintf");
    }
    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 }, devnull = -1;
    struct envb env = { 0 };
    int rc = -1;
    if (o->no_stdio) {
        devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (devnull < 0 || above_stdio(&devnull) < 0) {
            bh_fail_errno(err, "/dev/null");
            goto out;
        }
    } else {
        if (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0 ||
            above_stdio(&pin[0]) < 0 || above_stdio(&pout[1]) < 0 || above_stdio(&perr[1]) < 0) {
            bh_fail_errno(err, "pipe");
            goto out;
        }
        /* bigger pipes: fewer wakeups for bulk data; best effort */
        fcntl(pin[1], F_SETPIPE_SZ, 1 << 20);
        fcntl(pout[1], F_SETPIPE_SZ, 1 << 20);
    }
    if (build_env(&env, c, user) < 0) {
        bh_fail_errno(err, "environment");
        goto out;
    }
    char *argv[4];
    const char *path;
    if (!c->rpc) {
        path = "/bin/sh";
        argv[0] = "sh", argv[1] = "-c", argv[2] = (char *)c->command, argv[3] = NULL;
    } else {
        path = svc_path;
        argv[0] = svc_path, argv[1] = *c->arg ? (char *)c->arg : NULL, argv[2] = NULL;
    }
    struct plan plan = { .fd = { o->no_stdio ? devnull : pin[0], o->no_stdio ? devnull : pout[1],
                                 o->no_stdio ? devnull : perr[1] },
                         .user = user, .path = path, .argv = argv, .envp = env.v, .shell = !c->rpc,
                         .exit_now = user_msg ? 125 : 0 }; /* no such user: a child that says so */
    plan.caught_known = caught_signals(&plan.caught);
    pid_t p = start_child(&plan);
    if (p < 0) {
        bh_fail_errno(err, "vfork");
        goto out;
    }
    /* The child's own failure reaches the caller as its stderr, as a shell's would. */
    int say = o->no_stdio ? -1 : perr[1];
    if (user_msg && say >= 0)
        (void)!write(say, user_msg, strlen(user_msg));
    else if (plan.stage != FAIL_NONE && say >= 0) {
        char m[4352];
        int n = plan.stage == FAIL_USER ? snprintf(m, sizeof m, "qrexec: switching user: %s\n", strerror(plan.err))
              : plan.stage == FAIL_CHDIR ? snprintf(m, sizeof m, "qrexec: chdir: %s\n", strerror(plan.err))
              : snprintf(m, sizeof m, "qrexec: exec %s: %s\n", path, strerror(plan.err));
        if (n > 0)
            (void)!write(say, m, (size_t)n < sizeof m ? (size_t)n : sizeof m - 1);
    }
    *pid = p;
    if (!o->no_stdio) {
        close(pin[0]), close(pout[1]), close(perr[1]);
        *in_fd = pin[1], *out_fd = pout[0], *err_fd = perr[0];
        pin[0] = pin[1] = pout[0] = pout[1] = perr[0] = perr[1] = -1;
    }
    rc = 0;
out:
    envb_free(&env);
    if (devnull >= 0)
        close(devnull);
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0) close(pin[i]);
        if (pout[i] >= 0) close(pout[i]);
        if (perr[i] >= 0) close(perr[i]);
    }
    return rc;
}
