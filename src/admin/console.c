/* A running qube's console, for admin.vm.Console.
 *
 * Qubes answers the path of the dom0 pty that carries the domain's console (Xen's hvc0,
 * relayed by xenconsoled), and its dom0 script connects the caller to that path. A qube
 * here has no console device, so its console is made the first time one is asked for:
 * a dom0 pty whose master side is the stdin and stdout of a qrexec-client running an
 * interactive root login shell in the qube on a terminal of the qube's own (script(1)
 * makes a pty in the qube: job control, Ctrl-C, line editing there, as a getty on
 * Xen's hvc0 gives). The path answered is the dom0 pty's slave: whoever opens it
 * (Qubes' `socat - OPEN:PATH`) talks to that shell. The slave is root's, mode 0600, raw
 * (no echo, no line editing in dom0: the bytes pass as they are, as over a serial line,
 * and the qube's terminal does the rest).
 *
 * Like a Xen console it stays: the relay keeps a slave descriptor of its own, so a
 * caller that disconnects leaves the shell running for the next one; it ends with the
 * qube (its qrexec connection ends). <runtime>/console records "PID PATH" so that the
 * next call (also from a restarted bulkheadd) finds it again. The relay is a grandchild
 * of bulkheadd (reaped by init), charged to the qube's CPU share as qrexec-daemon is. */
#include "api.h"
#include "cleanup.h"
#include "engine_glue.h"
#include "io.h"
#include "log.h"
#include "selfpath.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <termios.h>
#include <unistd.h>

/* The recorded console, if its relay still runs (same process: a qrexec-client whose
 * environment names this qube) and its pty is still there. */
static bool recorded(const char *file, const char *qube, char *path, size_t n)
{
    _cleanup_free_ char *rec = bh_read_file(file, 512, NULL);
    long pid = 0;
    char p[256];
    if (!rec || sscanf(rec, "%ld %255s", &pid, p) != 2 || pid <= 1 || strncmp(p, "/dev/pts/", 9))
        return false;
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/%ld/cmdline", pid);
    size_t len = 0;
    _cleanup_free_ char *cmd = bh_read_file(proc, 4096, &len);
    /* argv: qrexec-client -d QUBE ... */
    if (!cmd || len < 20 || !strstr(cmd, "qrexec-client") || len <= strlen(cmd) + 4 ||
        strcmp(cmd + strlen(cmd) + 1, "-d") || strcmp(cmd + strlen(cmd) + 4, qube))
        return false;
    struct stat st;
    if (stat(p, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_uid != 0)
        return false;
    snprintf(path, n, "%s", p);
    return true;
}

/* The relay (in the grandchild): the pty, then qrexec-client on its master. Reports
 * "PID PATH\n" on fd rep, or exits. */
static _Noreturn void relay(struct bh_app *app, struct bh_qube *q, const char *client, int rep)
{
    setsid();
    sigset_t all;
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    signal(SIGPIPE, SIG_DFL);
    int m = posix_openpt(O_RDWR | O_NOCTTY);
    char name[128];
    if (m < 0 || grantpt(m) < 0 || unlockpt(m) < 0 || ptsname_r(m, name, sizeof name) != 0)
        _exit(120);
    int s = open(name, O_RDWR | O_NOCTTY);
    struct termios t;
    if (s < 0 || fchown(s, 0, 0) < 0 || fchmod(s, 0600) < 0 || tcgetattr(s, &t) < 0)
        _exit(121);
    cfmakeraw(&t);
    if (tcsetattr(s, TCSANOW, &t) < 0)
        _exit(122);
    const struct bh_driver *drv = bh_glue_driver(app, q);
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    bh_error cerr = { 0 };
    if (drv && drv->charge_host_helper)
        (void)drv->charge_host_helper(&sb.spec, getpid(), &cerr);
    char line[200];
    int n = snprintf(line, sizeof line, "%d %s\n", (int)getpid(), name);
    if (bh_write_all(rep, line, (size_t)n) < 0)
        _exit(123);
    int null = open("/dev/null", O_WRONLY);
    if (dup2(m, 0) < 0 || dup2(m, 1) < 0 || dup2(null, 2) < 0 || dup2(s, 3) < 0)
        _exit(124);
    for (int fd = 4; fd < 1024; fd++)
        (void)close(fd);
    char sock[4200];
    snprintf(sock, sizeof sock, "%s/qubesd.sock", app->runtime_dir);
    setenv("BULKHEAD_SOCKET", sock, 1);
    setenv("BULKHEAD_RUNTIME", app->runtime_dir, 1);
    /* In the qube, script(1) (util-linux, in every Debian) gives the shell a pty of the
     * qube's own devpts as controlling terminal: the qube's line discipline echoes and
     * edits lines, Ctrl-C and Ctrl-Z reach the foreground job, `tty` names a terminal.
     * Without script (another distribution's template), the old shell on the stream. */
    execl(client, "qrexec-client", "-d", q->name,
          "root:export TERM=vt100; command -v script >/dev/null && exec script -qfec "
          "'if [ -x /bin/bash ]; then exec /bin/bash -il; else exec /bin/sh -il; fi' /dev/null 2>&1; "
          "exec /bin/sh -i 2>&1",
          (char *)NULL);
    _exit(127);
}

int bh_console_path(struct bh_app *app, struct bh_qube *q, char *path, size_t n, struct bh_exc *e)
{
    struct bh_spec_buf sb;
    bh_glue_spec(app, q, &sb);
    char file[4200];
    snprintf(file, sizeof file, "%s/console", sb.runtime);
    bh_glue_spec_free(&sb);
    if (recorded(file, q->name, path, n))
        return 0;
    char client[PATH_MAX];
    static const char *const rels[] = { ".", "../qrexec", "../lib/bulkhead", NULL };
    if (bh_find_near_self(rels, "qrexec-client", X_OK, client, sizeof client) < 0)
        return bh_exc(e, "QubesException", "Domain '%s' has no console: qrexec-client is not installed", q->name);
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return bh_exc(e, "QubesException", "console of %s: %s", q->name, strerror(errno));
    pid_t child = fork();
    if (child == 0) {
        close(p[0]);
        if (fork() == 0)
            relay(app, q, client, p[1]);
        _exit(0);
    }
    close(p[1]);
    if (child > 0)
        while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
            ;
    char rep[200] = "";
    size_t got = 0;
    struct pollfd pf = { .fd = p[0], .events = POLLIN };
    while (child > 0 && got < sizeof rep - 1 && !memchr(rep, '\n', got) && poll(&pf, 1, 5000) == 1) {
        ssize_t r = read(p[0], rep + got, sizeof rep - 1 - got);
        if (r <= 0)
            break;
        got += (size_t)r;
    }
    close(p[0]);
    rep[got] = '\0';
    int pid = 0;
    char name[128];
    if (sscanf(rep, "%d %127s", &pid, name) != 2 || strncmp(name, "/dev/pts/", 9))
        return bh_exc(e, "QubesException", "Domain '%s': its console could not be made", q->name);
    (void)bh_write_runtime_file(file, rep, strlen(rep), 0600);
    bh_info("%s: console on %s (relay %d)", q->name, name, pid);
    snprintf(path, n, "%s", name);
    return 0;
}
