/* qvm-start-daemon: starts a GUI daemon (bulkhead-guid) for running qubes, as Qubes'
 * qvm-start-daemon does in the desktop user's session.
 *
 *   qvm-start-daemon [--all] [--exclude NAME]... [--watch] [--pidfile FILE] [--runtime DIR] [NAME...]
 *   qvm-start-daemon --notify-monitor-layout [--pidfile FILE] [--runtime DIR]
 *
 * A qube has a GUI when its `guivm` is dom0 and its `gui` feature (with its template's)
 * is not false. Each guid starts the qube's gui-agent through qrexec and connects to it.
 * --watch follows admin.Events: domain-start starts a daemon, domain-shutdown (or the
 * agent going away) ends it; without --watch the command returns once the daemons run.
 * As Qubes', one watcher runs (per bulkheadd here: its pid file is in the runtime dir),
 * and --notify-monitor-layout tells it to send the monitor layout to every qube again
 * (SIGHUP, which it passes on to its daemons). */
#include "admin_client.h"
#include "qrexec/daemon_paths.h"
#include "log.h"
#include "names.h"
#include "selfpath.h"
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_QUBES 1024

struct daemon { char name[64]; pid_t pid; };
static struct daemon daemons[MAX_QUBES];
static char guid_prog[PATH_MAX];
static const char *runtime;
static char **excluded;
static int nexcluded;

static volatile sig_atomic_t stop, hup;
static void on_term(int s) { (void)s; stop = 1; }
/* SIGHUP, as Qubes' launcher: the monitor layout changed; every daemon reads it again
 * and sends it to its qube */
static void on_hup(int s) { (void)s; hup = 1; }

static bool admin_ok(const char *method, const char *arg, const char *dest, char *out, size_t n)
{
    _cleanup_reply_ struct bh_admin_reply r = { 0 };
    bh_error err;
    if (bh_admin_call(method, arg, dest, NULL, 0, &r, &err) < 0 || !r.ok)
        return false;
    snprintf(out, n, "%s", r.body ? r.body : "");
    return true;
}

static bool has_gui(const char *name)
{
    char v[256];
    if (!admin_ok("admin.vm.property.Get", "guivm", name, v, sizeof v))
        return false;
    const char *val = strrchr(v, ' ');
    if (!val || strcmp(val + 1, "dom0"))
        return false;
    if (admin_ok("admin.vm.feature.CheckWithTemplate", "gui", name, v, sizeof v) &&
        (!strcmp(v, "") || !strcmp(v, "0") || !strcasecmp(v, "false")))
        return false;
    return true;
}

/* Qubes' GUI daemon options: the qube's gui-NAME feature, else the GUI qube's (dom0's)
 * gui-default-NAME. A bool is true when the feature is not empty (Qubes: bool(value)). */
static bool gui_option_bool(const char *qube, const char *name)
{
    char feat[96], v[256];
    snprintf(feat, sizeof feat, "gui-%s", name);
    if (admin_ok("admin.vm.feature.Get", feat, qube, v, sizeof v))
        return v[0] != '\0';
    snprintf(feat, sizeof feat, "gui-default-%s", name);
    if (admin_ok("admin.vm.feature.Get", feat, "dom0", v, sizeof v))
        return v[0] != '\0';
    return false;
}

static bool is_excluded(const char *name)
{
    for (int i = 0; i < nexcluded; i++)
        if (!strcmp(excluded[i], name))
            return true;
    return false;
}

static void reap(void)
{
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0)
        for (int i = 0; i < MAX_QUBES; i++)
            if (daemons[i].pid == p) {
                bh_info("GUI daemon of %s ended (status %d)", daemons[i].name, st);
                daemons[i].pid = 0;
            }
}

static void start_guid(const char *name)
{
    if (!bh_qube_name_valid(name, NULL) || !strcmp(name, "dom0") || is_excluded(name))
        return;
    int free_slot = -1;
    for (int i = 0; i < MAX_QUBES; i++) {
        if (daemons[i].pid && !strcmp(daemons[i].name, name))
            return; /* already has one */
        if (!daemons[i].pid && free_slot < 0)
            free_slot = i;
    }
    if (free_slot < 0 || !has_gui(name))
        return;
    bool fullscreen = gui_option_bool(name, "allow-fullscreen");
    /* Qubes' no-monitor-layout feature (with the template's): the qube keeps its own */
    char v[64] = "";
    bool no_layout = admin_ok("admin.vm.feature.CheckWithTemplate", "no-monitor-layout", name, v, sizeof v) && *v;
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        signal(SIGHUP, SIG_IGN); /* until bulkhead-guid has its handler (layout changes) */
        const char *argv[10];
        int n = 0;
        argv[n++] = "bulkhead-guid";
        argv[n++] = "--qube";
        argv[n++] = name;
        argv[n++] = "--start-agent";
        if (runtime) {
            argv[n++] = "--runtime";
            argv[n++] = runtime;
        }
        if (fullscreen)
            argv[n++] = "--allow-fullscreen";
        if (no_layout)
            argv[n++] = "--no-monitor-layout";
        argv[n] = NULL;
        execv(guid_prog, (char *const *)argv);
        _exit(127);
    }
    if (pid > 0) {
        snprintf(daemons[free_slot].name, sizeof daemons[free_slot].name, "%s", name);
        daemons[free_slot].pid = pid;
        bh_info("started the GUI daemon of %s (pid %d)%s", name, pid, fullscreen ? " (fullscreen allowed)" : "");
    }
}

static void signal_guid(const char *name, int sig)
{
    for (int i = 0; i < MAX_QUBES; i++)
        if (daemons[i].pid && !strcmp(daemons[i].name, name))
            kill(daemons[i].pid, sig);
}

static void stop_guid(const char *name)
{
    for (int i = 0; i < MAX_QUBES; i++)
        if (daemons[i].pid && !strcmp(daemons[i].name, name))
            kill(daemons[i].pid, SIGTERM);
}

/* Running qubes from admin.vm.List ("name class=X state=Y\n" lines). */
static void start_running(bool all, char **names, int nnames)
{
    _cleanup_reply_ struct bh_admin_reply r = { 0 };
    bh_error err;
    if (bh_admin_call("admin.vm.List", "", "dom0", NULL, 0, &r, &err) < 0 || !r.ok) {
        bh_err("admin.vm.List: %s", r.exc_msg ? r.exc_msg : err.msg);
        return;
    }
    for (char *line = r.body, *next; line && *line; line = next) {
        next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        char *sp = strchr(line, ' ');
        if (!sp || !strstr(sp, "state=Running"))
            continue;
        *sp = '\0';
        bool want = all;
        for (int i = 0; i < nnames; i++)
            want |= !strcmp(names[i], line);
        if (want)
            start_guid(line);
    }
}

/* Events: "1\0subject\0event\0(key\0value\0)*\0". */
static void watch(bool all, char **names, int nnames)
{
    bh_error err;
    int fd = bh_admin_events_open("dom0", &err);
    if (fd < 0) {
        bh_err("admin.Events: %s", err.msg);
        return;
    }
    static char buf[1 << 16];
    size_t len = 0;
    while (!stop) {
        reap();
        if (hup) {
            hup = 0;
            for (int i = 0; i < MAX_QUBES; i++)
                if (daemons[i].pid)
                    kill(daemons[i].pid, SIGHUP);
        }
        struct pollfd p = { .fd = fd, .events = POLLIN };
        if (poll(&p, 1, 1000) <= 0)
            continue;
        ssize_t n = read(fd, buf + len, sizeof buf - len);
        if (n <= 0) {
            bh_err("admin.Events stream ended");
            break;
        }
        len += (size_t)n;
        for (;;) {
            /* find the end of one event: an empty field after at least 3 fields */
            const char *f[3] = { 0 };
            size_t pos = 0, nf = 0;
            bool complete = false;
            while (pos < len) {
                char *nul = memchr(buf + pos, '\0', len - pos);
                if (!nul)
                    break;
                if (nul == buf + pos && nf >= 3) {
                    pos++;
                    complete = true;
                    break;
                }
                if (nf < 3)
                    f[nf] = buf + pos;
                nf++;
                pos = (size_t)(nul - buf) + 1;
            }
            if (!complete) {
                if (len == sizeof buf)
                    len = 0; /* an event larger than the buffer: drop it */
                break;
            }
            if (!strcmp(f[0], "1")) {
                bool want = all;
                for (int i = 0; i < nnames; i++)
                    want |= !strcmp(names[i], f[1]);
                if (want && !strcmp(f[2], "domain-start"))
                    start_guid(f[1]);
                else if (!strcmp(f[2], "domain-shutdown"))
                    stop_guid(f[1]);
                else if (!strcmp(f[2], "property-set:keyboard_layout") ||
                         !strcmp(f[2], "property-reset:keyboard_layout"))
                    signal_guid(f[1], SIGHUP); /* it reads the new layout and tells its agent */
            }
            memmove(buf, buf + pos, len - pos);
            len -= pos;
        }
    }
    close(fd);
}

/* The watcher's pid file: --pidfile, else <runtime>/gui/qvm-start-daemon.pid (Qubes
 * keeps one per desktop session, in $XDG_RUNTIME_DIR; ours is per bulkheadd). */
static void pidfile_path(char *out, size_t n, const char *opt)
{
    if (opt) {
        snprintf(out, n, "%s", opt);
        return;
    }
    const char *rt = bh_qx_runtime(runtime);
    snprintf(out, n, "%s/gui", rt);
    mkdir(out, 0700); /* also the global clipboard's directory */
    snprintf(out, n, "%s/gui/qvm-start-daemon.pid", rt);
}

/* The watcher holds an exclusive lock on its pid file for as long as it runs: a second
 * watcher is refused, and a notifier signals the pid only while the lock is held, so a
 * stale file never sends SIGHUP (which ends most programs) to an unrelated process. */
static int take_pidfile(const char *path)
{
    int fd = open(path, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "qvm-start-daemon: %s: %s\n", path, strerror(errno));
        return -1;
    }
    int rc, tries = 10; /* a notifier holds a shared lock for a moment */
    while ((rc = flock(fd, LOCK_EX | LOCK_NB)) < 0 && errno == EWOULDBLOCK && --tries > 0)
        usleep(100 * 1000);
    if (rc < 0) {
        fprintf(stderr, "qvm-start-daemon: another qvm-start-daemon --watch runs (%s is locked)\n", path);
        close(fd);
        return -1;
    }
    char pid[24];
    int n = snprintf(pid, sizeof pid, "%d\n", (int)getpid());
    if (ftruncate(fd, 0) < 0 || pwrite(fd, pid, (size_t)n, 0) != n) {
        fprintf(stderr, "qvm-start-daemon: %s: %s\n", path, strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

static int notify_monitor_layout(const char *path)
{
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd >= 0 && flock(fd, LOCK_SH | LOCK_NB) == 0) {
        close(fd); /* nobody holds it: the watcher is gone */
        fd = -1;
        errno = ESRCH;
    }
    if (fd < 0) {
        fprintf(stderr, "qvm-start-daemon: no qvm-start-daemon --watch runs (%s: %s)\n", path, strerror(errno));
        return 1;
    }
    char buf[24] = { 0 };
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    char *end;
    long pid = n > 0 ? strtol(buf, &end, 10) : 0;
    if (pid <= 1 || pid > INT_MAX || *end != '\n') {
        fprintf(stderr, "qvm-start-daemon: %s holds no pid\n", path);
        return 1;
    }
    if (kill((pid_t)pid, SIGHUP) < 0) {
        fprintf(stderr, "qvm-start-daemon: the watcher (pid %ld): %s\n", pid, strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    bh_log_init("qvm-start-daemon");
    static const struct option opts[] = { { "all", no_argument, 0, 'a' }, { "watch", no_argument, 0, 'w' },
                                          { "exclude", required_argument, 0, 'x' },
                                          { "runtime", required_argument, 0, 'r' },
                                          { "pidfile", required_argument, 0, 'p' },
                                          { "notify-monitor-layout", no_argument, 0, 'n' },
                                          { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    bool all = false, do_watch = false, notify = false;
    const char *pidfile_opt = NULL;
    excluded = calloc((size_t)argc, sizeof *excluded);
    int o;
    while ((o = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (o) {
        case 'a': all = true; break;
        case 'w': do_watch = true; break;
        case 'x': excluded[nexcluded++] = optarg; break;
        case 'r': runtime = optarg; break;
        case 'p': pidfile_opt = optarg; break;
        case 'n': notify = true; break;
        case 'h':
            printf("usage: qvm-start-daemon [--all] [--exclude NAME]... [--watch] [--pidfile FILE] [--runtime DIR] "
                   "[NAME...]\n"
                   "       qvm-start-daemon --notify-monitor-layout [--pidfile FILE] [--runtime DIR]\n");
            return 0;
        default: return 2;
        }
    }
    char pidfile[PATH_MAX];
    pidfile_path(pidfile, sizeof pidfile, pidfile_opt);
    if (notify) {
        if (do_watch) {
            fprintf(stderr, "qvm-start-daemon: --watch cannot be used with --notify-monitor-layout\n");
            return 2;
        }
        return notify_monitor_layout(pidfile);
    }
    if (!all && optind == argc) {
        fprintf(stderr, "qvm-start-daemon: name some qubes or use --all\n");
        return 2;
    }
    static const char *const rels[] = { ".", "../lib/bulkhead", NULL };
    if (bh_find_near_self(rels, "bulkhead-guid", X_OK, guid_prog, sizeof guid_prog) < 0) {
        fprintf(stderr, "qvm-start-daemon: bulkhead-guid not found next to this program\n");
        return 1;
    }
    if (!getenv("DISPLAY")) {
        fprintf(stderr, "qvm-start-daemon: DISPLAY is not set\n");
        return 1;
    }
    signal(SIGTERM, on_term);
    signal(SIGINT, on_term);
    struct sigaction sh = { .sa_handler = on_hup };
    sigaction(SIGHUP, &sh, NULL); /* no SA_RESTART: poll() returns at once */
    int lock = do_watch ? take_pidfile(pidfile) : -1;
    if (do_watch && lock < 0)
        return 1;
    start_running(all, argv + optind, argc - optind);
    if (do_watch) {
        watch(all, argv + optind, argc - optind);
        for (int i = 0; i < MAX_QUBES; i++)
            if (daemons[i].pid)
                kill(daemons[i].pid, SIGTERM);
        while (wait(NULL) > 0)
            ;
        unlink(pidfile); /* still ours: we hold its lock */
        close(lock);
    }
    return 0;
}
