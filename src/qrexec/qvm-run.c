/* qvm-run [options] QUBE COMMAND   (and qvm-console QUBE)
 * Runs a command in a qube through qrexec, as Qubes' qvm-run: the qube is started first
 * (admin.vm.Start) unless --no-autostart; without --pass-io the command's output is not
 * shown; with it, stdin/stdout/stderr are streamed and the exit code passed through.
 * A qube's output never reaches a terminal unfiltered (unless --no-filter-escape-chars):
 * escape sequences are how a qube would drive the dom0 terminal. We never hand a qube a
 * terminal fd, so TIOCSTI is out of its reach. */
#include "admin_client.h"
#include "client.h"
#include "cleanup.h"
#include "daemon_paths.h"
#include "names.h"
#include "vchan.h"
#include "vmexec.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct opts {
    bool passio, autostart, all, dispvm, quiet, service, gui, no_shell;
    bool fresh; /* the qube is a disposable CreateDisposable just gave us */
    int filter; /* -1 auto */
    const char *user, *dispvm_template, *runtime;
    char **exclude;
    int nexclude;
};

static bool qrexec_up(const struct opts *o, const char *qube)
{
    char p[4096];
    struct stat st;
    return bh_qx_qube_path(p, sizeof p, bh_qx_runtime(o->runtime), qube, "qrexec.sock") == 0 &&
           stat(p, &st) == 0 && S_ISSOCK(st.st_mode);
}

/* A paused qube has a live qrexec socket but cannot answer: say so at once instead of
 * waiting for a timeout. */
static bool is_paused(const char *qube)
{
    bh_error err = { 0 };
    struct bh_admin_reply r _cleanup_reply_ = { 0 };
    return bh_admin_call("admin.vm.CurrentState", "", qube, "", 0, &r, &err) == 0 && r.ok && r.body &&
           strstr(r.body, "power_state=Paused");
}

static int start_qube(const struct opts *o, const char *qube)
{
    if (qrexec_up(o, qube)) {
        /* A preloaded disposable is handed out Running (never Paused): no need to ask. */
        if (!o->fresh && is_paused(qube)) {
            fprintf(stderr, "qvm-run: error: qube %s is paused (unpause it with qvm-unpause)\n", qube);
            return -1;
        }
        return 0;
    }
    bh_error err = { 0 };
    struct bh_admin_reply r _cleanup_reply_ = { 0 };
    /* without autostart, CurrentState only tells a missing qube from a halted one */
    if (bh_admin_call(o->autostart ? "admin.vm.Start" : "admin.vm.CurrentState", "", qube, "", 0, &r, &err) < 0) {
        if (!o->autostart) /* no daemon to ask: what we know is that qrexec is not up */
            fprintf(stderr, "Qube %s is not running\n", qube);
        else
            fprintf(stderr, "qvm-run: %s\n", err.msg);
        return -1;
    }
    if (!r.ok && r.exc_type && !strcmp(r.exc_type, "QubesVMNotFoundError")) {
        /* Qubes' VmNameAction: an argparse error, exit 2 */
        fprintf(stderr, "qvm-run: error: no such domain: '%s'\n", qube);
        return -2;
    }
    if (!o->autostart) {
        fprintf(stderr, "Qube %s is not running\n", qube);
        return -1;
    }
    if (!r.ok && strcmp(r.exc_type, "QubesVMNotHaltedError") != 0) {
        fprintf(stderr, "qvm-run: %s\n", r.exc_msg);
        return -1;
    }
    /* qrexec_timeout (Qubes' default 60 s) for the agent to come up */
    long long deadline = bh_now_ms() + 60000;
    while (!qrexec_up(o, qube)) {
        if (bh_now_ms() > deadline) {
            fprintf(stderr, "qvm-run: %s: qrexec did not come up\n", qube);
            return -1;
        }
        usleep(20000);
    }
    return 0;
}

static int run_one(const struct opts *o, const char *qube, const char *cmd)
{
    int st = start_qube(o, qube);
    if (st < 0)
        return st == -2 ? 2 : 1;
    _cleanup_free_ char *line = NULL;
    const char *user = o->user ? o->user : "DEFAULT";
    int n = o->service ? asprintf(&line, "%s:QUBESRPC %s dom0", user, cmd) : asprintf(&line, "%s:%s", user, cmd);
    if (n < 0)
        return 125;
    int devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
    struct bh_qx_call c = { .runtime = o->runtime, .qube = qube, .cmdline = line, .timeout_s = 30,
                            .in_fd = o->passio ? 0 : devnull, .out_fd = o->passio ? 1 : devnull,
                            .err_fd = o->passio ? 2 : devnull };
    /* As Qubes' qvm-run in dom0: a --service call without --pass-io is only started
     * (qrexec-client -e, run_service(wait=False)); a command, or anything with
     * --pass-io, is waited for and its exit code returned. */
    c.just_exec = o->service && !o->passio && !o->dispvm;
    c.filter_out = o->filter < 0 ? isatty(1) : o->filter;
    c.filter_err = o->filter < 0 ? isatty(2) : o->filter;
    if (!o->quiet && !o->passio)
        fprintf(stderr, "Running '%s' on %s\n", cmd, qube);
    /* The stream hands our stdio back as /dev/null when the call ends (EOF for a local
     * pipeline); with --all the next qube's output must still reach the real stdout. */
    int saved[3] = { -1, -1, -1 };
    for (int i = 0; o->passio && o->all && i < 3; i++)
        saved[i] = fcntl(i, F_DUPFD_CLOEXEC, 3);
    int code = bh_qx_call_run(&c);
    for (int i = 0; i < 3; i++)
        if (saved[i] >= 0) {
            dup2(saved[i], i);
            close(saved[i]);
        }
    if (devnull >= 0)
        close(devnull);
    return code;
}

__attribute__((unused)) static int run_dispvm(const struct opts *o, const char *cmd)
{
    bh_error err = { 0 };
    struct bh_admin_reply r _cleanup_reply_ = { 0 };
    const char *dest = o->dispvm_template ? o->dispvm_template : "dom0";
    if (bh_admin_call("admin.vm.CreateDisposable", "", dest, "", 0, &r, &err) < 0 || !r.ok) {
        fprintf(stderr, "qvm-run: cannot create a disposable: %s\n", r.ok || !r.exc_msg ? err.msg : r.exc_msg);
        return 1;
    }
    char name[64];
    snprintf(name, sizeof name, "%s", r.body);
    name[strcspn(name, "\n ")] = '\0';
    struct opts o2 = *o;
    o2.autostart = true;
    o2.fresh = true;
    int code = run_one(&o2, name, cmd);
    struct bh_admin_reply k _cleanup_reply_ = { 0 };
    bh_admin_call("admin.vm.Kill", "", name, "", 0, &k, &err);
    return code;
}

__attribute__((unused)) static int run_all(const struct opts *o, const char *cmd)
{
    bh_error err = { 0 };
    struct bh_admin_reply r _cleanup_reply_ = { 0 };
    if (bh_admin_call("admin.vm.List", "", "dom0", "", 0, &r, &err) < 0 || !r.ok) {
        fprintf(stderr, "qvm-run: cannot list qubes: %s\n", r.exc_msg ? r.exc_msg : err.msg);
        return 1;
    }
    int worst = 0;
    char *save = NULL;
    for (char *ln = strtok_r(r.body, "\n", &save); ln; ln = strtok_r(NULL, "\n", &save)) {
        char name[64], cls[64] = "", state[64] = "";
        if (sscanf(ln, "%63s class=%63s state=%63s", name, cls, state) < 1 || !strcmp(name, "dom0"))
            continue;
        bool skip = !strcmp(cls, "AdminVM") || strcmp(state, "Running") != 0;
        for (int i = 0; i < o->nexclude; i++)
            if (!strcmp(o->exclude[i], name))
                skip = true;
        if (skip)
            continue;
        int c = run_one(o, name, cmd);
        if (c > worst)
            worst = c;
    }
    return worst;
}

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s [--pass-io|-p] [--user|-u USER] [--no-autostart|--autostart] [--all [--exclude Q]]\n"
            "       [--dispvm[=TEMPLATE]] [--service] [--filter-escape-chars|--no-filter-escape-chars]\n"
            "       [--no-shell] [-q] [--runtime DIR] QUBE COMMAND [ARG...]\n",
            prog);
    exit(2);
}

int main(int argc, char **argv)
{
    struct opts o = { .autostart = true, .filter = -1, .gui = true };
    _cleanup_free_ char **excl = calloc((size_t)argc + 1, sizeof *excl);
    o.exclude = excl;
#ifdef BH_QVM_CONSOLE
    o.passio = true;
    o.user = "root";
    const char *prog = "qvm-console";
#else
    const char *prog = "qvm-run";
#endif
    static const struct option lo[] = {
        { "pass-io", no_argument, 0, 'p' }, { "user", required_argument, 0, 'u' },
        { "no-autostart", no_argument, 0, 'A' }, { "autostart", no_argument, 0, 'a' },
        { "all", no_argument, 0, 'L' }, { "exclude", required_argument, 0, 'x' },
        { "dispvm", optional_argument, 0, 'D' }, { "service", no_argument, 0, 's' },
        { "filter-escape-chars", no_argument, 0, 'f' }, { "no-filter-escape-chars", no_argument, 0, 'F' },
        { "quiet", no_argument, 0, 'q' }, { "runtime", required_argument, 0, 'r' },
        { "no-gui", no_argument, 0, 'n' }, { "nogui", no_argument, 0, 'n' }, { "gui", no_argument, 0, 'g' },
        { "no-shell", no_argument, 0, 'N' }, { "verbose", no_argument, 0, 'v' }, { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    int c;
    while ((c = getopt_long(argc, argv, "+pu:qvh", lo, NULL)) != -1) {
        switch (c) {
        case 'p': o.passio = true; break;
        case 'u': o.user = optarg; break;
        case 'A': o.autostart = false; break;
        case 'a': o.autostart = true; break;
        case 'L': o.all = true; break;
        case 'x': o.exclude[o.nexclude++] = optarg; break;
        case 'D': o.dispvm = true; o.dispvm_template = optarg; break;
        case 's': o.service = true; break;
        case 'f': o.filter = 1; break;
        case 'F': o.filter = 0; break;
        case 'q': o.quiet = true; break;
        case 'r': o.runtime = optarg; break;
        case 'n': o.gui = false; break;
        case 'g': o.gui = true; break;
        case 'N': o.no_shell = true; break;
        case 'v': break;
        default: usage(prog);
        }
    }
#ifdef BH_QVM_CONSOLE
    if (optind != argc - 1)
        usage(prog);
    /* an interactive shell without a pty: stderr joined to stdout, both filtered */
    return run_one(&o, argv[optind], "exec /bin/sh -i 2>&1");
#else
    const char *qube = NULL, *cmd = NULL;
    int first = optind; /* the command and its arguments */
    if (!(o.all || o.dispvm)) {
        if (optind >= argc)
            usage(prog);
        qube = argv[optind];
        first = optind + 1;
        if (!bh_qube_name_valid(qube, NULL)) {
            fprintf(stderr, "qvm-run: no such domain: '%s'\n", qube);
            return 2;
        }
    }
    if (first >= argc)
        usage(prog);
    cmd = argv[first];
    /* COMMAND ARG... (or --no-shell): Qubes' exec path, qubes.VMExec+ENCODED-ARGS, which
     * runs the argv in the qube without a shell */
    _cleanup_free_ char *exec_svc = NULL;
    if (argc - first > 1 || o.no_shell) {
        if (o.service) {
            fprintf(stderr, "qvm-run: --service takes no arguments\n");
            return 2;
        }
        exec_svc = malloc(BH_VMEXEC_MAX_LEN + 1);
        if (!exec_svc)
            return 1;
        int n = snprintf(exec_svc, BH_VMEXEC_MAX_LEN + 1, "qubes.VMExec+");
        if (bh_vmexec_encode(argv + first, (size_t)(argc - first), exec_svc + n,
                             (size_t)(BH_VMEXEC_MAX_LEN + 1 - n)) < 0) {
            fprintf(stderr, "qvm-run: the command line is too long\n");
            return 2;
        }
        o.service = true;
        cmd = exec_svc;
    }
    if (o.user && !bh_ident_valid(o.user, 32)) {
        fprintf(stderr, "qvm-run: invalid user name\n");
        return 2;
    }
    if (o.dispvm)
        return run_dispvm(&o, cmd);
    if (o.all)
        return run_all(&o, cmd);
    return run_one(&o, qube, cmd);
#endif
}
