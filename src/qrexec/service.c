#include "service.h"
#include "cleanup.h"
#include "proto.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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

/* Child side: become the user (as root, when asked), then exec. Never returns. */
static _Noreturn void child_exec(const struct bh_qx_cmd *c, const struct bh_qx_spawn_opts *o,
                                 const char *svc_path)
{
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (o->switch_user && geteuid() == 0) {
        struct passwd *pw = getpwnam(c->user);
        if (!pw) {
            fprintf(stderr, "qrexec: no such user '%s'\n", c->user);
            _exit(125);
        }
        if (initgroups(pw->pw_name, pw->pw_gid) < 0 || setgid(pw->pw_gid) < 0 || setuid(pw->pw_uid) < 0) {
            perror("qrexec: switching user");
            _exit(125);
        }
        setenv("HOME", pw->pw_dir, 1);
        setenv("USER", pw->pw_name, 1);
        setenv("LOGNAME", pw->pw_name, 1);
        setenv("SHELL", pw->pw_shell && *pw->pw_shell ? pw->pw_shell : "/bin/sh", 1);
        if (chdir(pw->pw_dir) < 0 && chdir("/") < 0)
            _exit(125);
    }
    if (!c->rpc) {
        execl("/bin/sh", "sh", "-c", c->command, (char *)NULL);
        perror("qrexec: exec /bin/sh");
        _exit(127);
    }
    /* The environment Qubes' agent gives a service (libqrexec exec_qubes_rpc2): every
     * inherited QREXEC* variable goes, except QREXEC_SERVICE_PATH and QREXEC_AGENT_PID
     * (and our QREXEC_AGENT_SOCKET, so that a service's qrexec-client-vm finds a
     * non-default agent socket); then the call's own. */
    for (;;) {
        extern char **environ;
        char **e = environ;
        while (*e && !(!strncmp(*e, "QREXEC", 6) && strncmp(*e, "QREXEC_SERVICE_PATH=", 20) &&
                       strncmp(*e, "QREXEC_AGENT_PID=", 17) && strncmp(*e, "QREXEC_AGENT_SOCKET=", 20)))
            e++;
        if (!*e)
            break;
        char name[256];
        snprintf(name, sizeof name, "%.*s", (int)strcspn(*e, "="), *e);
        if (unsetenv(name) < 0)
            break;
    }
    setenv("QREXEC_REQUESTED_TARGET_TYPE", c->req_target ? "name" : c->req_keyword ? "keyword" : "", 1);
    if (c->req_target)
        setenv("QREXEC_REQUESTED_TARGET", c->req_target, 1);
    if (c->req_keyword)
        setenv("QREXEC_REQUESTED_TARGET_KEYWORD", c->req_keyword, 1);
    setenv("QREXEC_SERVICE_FULL_NAME", c->service_full, 1);
    setenv("QREXEC_REMOTE_DOMAIN", c->source, 1);
    if (strchr(c->service_full, '+')) /* as Qubes: only when the call named an argument */
        setenv("QREXEC_SERVICE_ARGUMENT", c->arg, 1);
    if (*c->arg)
        execl(svc_path, svc_path, c->arg, (char *)NULL);
    else
        execl(svc_path, svc_path, (char *)NULL);
    fprintf(stderr, "qrexec: exec %s: %s\n", svc_path, strerror(errno));
    _exit(errno == ENOENT ? 127 : 126);
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
    int pin[2] = { -1, -1 }, pout[2] = { -1, -1 }, perr[2] = { -1, -1 };
    if (!o->no_stdio && (pipe2(pin, O_CLOEXEC) < 0 || pipe2(pout, O_CLOEXEC) < 0 || pipe2(perr, O_CLOEXEC) < 0)) {
        bh_fail_errno(err, "pipe");
        goto fail;
    }
    if (!o->no_stdio) /* bigger pipes: fewer wakeups for bulk data; best effort */
    {
        fcntl(pin[1], F_SETPIPE_SZ, 1 << 20);
        fcntl(pout[1], F_SETPIPE_SZ, 1 << 20);
    }
    pid_t p = fork();
    if (p < 0) {
        bh_fail_errno(err, "fork");
        goto fail;
    }
    if (p == 0) {
        if (o->no_stdio) {
            int n = open("/dev/null", O_RDWR);
            dup2(n, 0), dup2(n, 1), dup2(n, 2);
        } else {
            dup2(pin[0], 0), dup2(pout[1], 1), dup2(perr[1], 2);
        }
        setsid();
        child_exec(c, o, svc_path);
    }
    *pid = p;
    if (!o->no_stdio) {
        close(pin[0]), close(pout[1]), close(perr[1]);
        *in_fd = pin[1], *out_fd = pout[0], *err_fd = perr[0];
    }
    return 0;
fail:
    for (int i = 0; i < 2; i++) {
        if (pin[i] >= 0) close(pin[i]);
        if (pout[i] >= 0) close(pout[i]);
        if (perr[i] >= 0) close(perr[i]);
    }
    return -1;
}
