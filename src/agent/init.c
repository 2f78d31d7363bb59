/* bulkhead-init: PID 1 inside every `ns` qube.
 *
 * By the time it runs, the engine has built the qube's tree (mounts are locked and
 * Landlock forbids new ones), set the hostname and applied the qube's seccomp filter.
 * init's jobs are what must happen inside, as the qube's root:
 *   - make the default user's home on the private volume on first start;
 *   - start the qrexec agent (/usr/lib/bulkhead/qrexec-agent) if the host provides one;
 *   - tell the host the qube is ready (one byte 'R' on $BULKHEAD_READY_FD) once the
 *     agent's control socket exists, or at once when there is no agent;
 *   - reap orphans; restart the agent if it dies later (after 1 s, then every 10 s
 *     after 5 quick restarts), since without it the qube is unreachable;
 *   - on SIGTERM (the host's shutdown request), SIGINT or SIGPWR: TERM every process,
 *     KILL what is left after a grace period, sync, exit 0. Exiting ends the PID
 *     namespace, which the host sees as the qube halting. */
#include "cleanup.h"
#include "log.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define AGENT "/usr/lib/bulkhead/qrexec-agent"
#define VCHAN_DIR "/run/qubes/vchan"
#define GRACE_MS_DEFAULT 5000

static pid_t agent_pid = -1;
static bool agent_died;

static void nop(int sig) { (void)sig; }

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* First start: /home/<user> on the private volume, owned by the user. */
static void make_home(const char *user)
{
    FILE *f = fopen("/etc/passwd", "re");
    if (!f)
        return;
    char line[1024];
    for (int n = 0; n < 10000 && fgets(line, sizeof line, f); n++) {
        char *fld[7] = { 0 }, *s = line;
        int i = 0;
        for (; i < 7 && s; i++) {
            fld[i] = s;
            s = strchr(s, ':');
            if (s)
                *s++ = '\0';
        }
        if (i < 6 || strcmp(fld[0], user) || strncmp(fld[5], "/home/", 6) || strchr(fld[5] + 6, '/'))
            continue;
        char *e1, *e2;
        unsigned long uid = strtoul(fld[2], &e1, 10), gid = strtoul(fld[3], &e2, 10);
        if (*e1 || *e2)
            break;
        if (mkdir(fld[5], 0700) == 0 && chown(fld[5], (uid_t)uid, (gid_t)gid) < 0)
            bh_warn("chown %s: %s", fld[5], strerror(errno));
        break;
    }
    fclose(f);
}

/* /etc/resolv.conf from BULKHEAD_DNS ("A B", Qubes' virtual DNS servers): what Qubes'
 * agent writes at boot. The file is the qube's own (its root is its own tree). */
static void write_resolv_conf(void)
{
    const char *dns = getenv("BULKHEAD_DNS");
    if (!dns || !*dns)
        return;
    char buf[128], text[160];
    snprintf(buf, sizeof buf, "%s", dns);
    int n = 0;
    for (char *save = NULL, *t = strtok_r(buf, " ", &save); t && n < (int)sizeof text; t = strtok_r(NULL, " ", &save))
        n += snprintf(text + n, sizeof text - (size_t)n, "nameserver %s\n", t);
    (void)unlink("/etc/resolv.conf.bulkhead");
    int fd = open("/etc/resolv.conf.bulkhead", O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return;
    bool ok = n > 0 && n < (int)sizeof text && write(fd, text, (size_t)n) == n;
    close(fd);
    if (!ok || rename("/etc/resolv.conf.bulkhead", "/etc/resolv.conf") < 0) {
        bh_warn("cannot write /etc/resolv.conf: %s", strerror(errno));
        (void)unlink("/etc/resolv.conf.bulkhead");
    }
}

static pid_t start_agent(const char *qid)
{
    if (access(AGENT, X_OK) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        /* An empty mask, not the one init started with: the engine execs init with
         * SIGTERM and SIGINT blocked, and an agent that inherits them ignores the
         * shutdown TERM, so every shutdown waited the whole grace period. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        /* The agent serves the control channel as this qube's domain id (its qid). */
        char *argv[] = { "qrexec-agent", "--vchan-dir", VCHAN_DIR, "--domid", (char *)(qid ? qid : "0"), NULL };
        execv(AGENT, argv);
        _exit(127);
    }
    if (pid < 0)
        bh_err("fork agent: %s", strerror(errno));
    return pid;
}

/* A template without network (BULKHEAD_UPDATES_PROXY): its package manager's proxy
 * 127.0.0.1:8082, forwarded over qrexec to qubes.UpdatesProxy in the updates qube, and
 * apt told to use it (Qubes' updates-proxy-setup). Not restarted: a template that
 * kills it only loses its own updates. */
static void start_updates_forwarder(void)
{
    static const char prog[] = "/usr/lib/bulkhead/updates-forwarder";
    if (access(prog, X_OK) != 0)
        return;
    static const char conf[] = "/etc/apt/apt.conf.d/01qubes-proxy";
    if (access("/etc/apt/apt.conf.d", W_OK) == 0 && access(conf, F_OK) != 0) {
        int fd = open(conf, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        static const char text[] = "Acquire::http::Proxy \"http://127.0.0.1:8082/\";\n";
        if (fd >= 0) {
            (void)!write(fd, text, sizeof text - 1);
            close(fd);
        }
    }
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        execl(prog, "updates-forwarder", (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        bh_err("fork updates-forwarder: %s", strerror(errno));
}

static bool agent_socket_ready(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISSOCK(st.st_mode);
}

static void reap_all(void)
{
    int st;
    pid_t p;
    while ((p = waitpid(-1, &st, WNOHANG)) > 0) {
        if (p == agent_pid) {
            bh_warn("qrexec agent exited (status %d)", st);
            agent_pid = -1;
            agent_died = true;
        }
    }
}

static __attribute__((noreturn)) void shutdown_qube(int sfd)
{
    const char *g = getenv("BULKHEAD_INIT_GRACE_MS");
    long grace = g ? strtol(g, NULL, 10) : GRACE_MS_DEFAULT;
    bh_info("shutting down");
    kill(-1, SIGTERM);
    kill(-1, SIGCONT); /* stopped processes must see the TERM too */
    long deadline = now_ms() + grace;
    for (;;) {
        reap_all();
        /* kill(-1, 0) fails with ESRCH once we are alone in the PID namespace. In a VM
         * qube we are not PID 1 but a child subreaper of bulkhead-vminit, and the
         * guest kernel's own threads always answer kill(-1, 0): there we are done
         * when no process of our tree is left. */
        if (getpid() == 1 ? (kill(-1, 0) < 0 && errno == ESRCH) : (waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD))
            break;
        long left = deadline - now_ms();
        if (left <= 0) {
            kill(-1, SIGKILL);
            deadline = now_ms() + 1000000;
        }
        struct pollfd p = { .fd = sfd, .events = POLLIN };
        if (poll(&p, 1, left > 0 && left < 50 ? (int)left : 50) > 0) {
            struct signalfd_siginfo si;
            (void)!read(sfd, &si, sizeof si);
        }
    }
    reap_all();
    sync();
    _exit(0);
}

int main(void)
{
    bh_log_init("bulkhead-init");
    const char *rfd = getenv("BULKHEAD_READY_FD");
    int ready_fd = rfd ? atoi(rfd) : -1;
    const char *qid = getenv("BULKHEAD_QID");
    const char *user = getenv("BULKHEAD_USER");
    if (ready_fd >= 0)
        (void)fcntl(ready_fd, F_SETFD, FD_CLOEXEC);
    unsetenv("BULKHEAD_READY_FD");

    /* As PID 1 of a namespace, a signal with the default action is discarded even when
     * the host sends it: install handlers, block, and read them from a signalfd. */
    static const int sigs[] = { SIGCHLD, SIGTERM, SIGINT, SIGPWR, SIGHUP };
    sigset_t mask;
    sigemptyset(&mask);
    struct sigaction sa = { .sa_handler = nop };
    for (size_t i = 0; i < BH_ARRAY_SIZE(sigs); i++) {
        sigaddset(&mask, sigs[i]);
        sigaction(sigs[i], &sa, NULL);
    }
    sigprocmask(SIG_BLOCK, &mask, NULL);
    int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sfd < 0) {
        bh_err("signalfd: %s", strerror(errno));
        return 1;
    }
    if (user && *user)
        make_home(user);
    write_resolv_conf();
    unsetenv("BULKHEAD_DNS");
    if (getenv("BULKHEAD_UPDATES_PROXY"))
        start_updates_forwarder();
    unsetenv("BULKHEAD_UPDATES_PROXY");

    char sock[256];
    snprintf(sock, sizeof sock, VCHAN_DIR "/vchan.%s.0.512.sock", qid ? qid : "0");
    int ino = -1;
    agent_pid = start_agent(qid);
    if (agent_pid > 0) {
        ino = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (ino >= 0)
            inotify_add_watch(ino, VCHAN_DIR, IN_CREATE | IN_MOVED_TO);
    }
    bool ready = agent_pid <= 0 || agent_socket_ready(sock);
    bool have_agent = agent_pid > 0;
    long restart_at = 0;
    int restarts = 0;
    for (;;) {
        if (ready && have_agent && agent_died && !restart_at) {
            agent_died = false;
            restart_at = now_ms() + (restarts < 5 ? 1000 : 10000);
        }
        if (restart_at && now_ms() >= restart_at) {
            restart_at = 0;
            restarts++;
            unlink(sock); /* a stale socket would look ready */
            agent_pid = start_agent(qid);
            if (agent_pid < 0)
                agent_died = true;
        }
        if (ready && ready_fd >= 0) {
            (void)!write(ready_fd, "R", 1);
            close(ready_fd);
            ready_fd = -1;
            if (ino >= 0)
                close(ino), ino = -1;
        }
        struct pollfd p[2] = { { .fd = sfd, .events = POLLIN }, { .fd = ino, .events = POLLIN } };
        /* inotify may miss a socket made before the watch: look again every 100ms. */
        int timeout = ready ? -1 : 100;
        if (restart_at) {
            long left = restart_at - now_ms();
            timeout = left < 0 ? 0 : (int)left;
        }
        int r = poll(p, ino >= 0 ? 2 : 1, timeout);
        if (r < 0 && errno != EINTR)
            return 1;
        if (ino >= 0 && (p[1].revents & POLLIN)) {
            char buf[4096];
            while (read(ino, buf, sizeof buf) > 0)
                ;
        }
        if (!ready && agent_socket_ready(sock))
            ready = true;
        struct signalfd_siginfo si;
        while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            if (si.ssi_signo == SIGCHLD) {
                reap_all();
                if (!ready && agent_pid < 0) {
                    bh_err("qrexec agent died before it was ready");
                    return 1; /* the host sees init exit during start: start fails */
                }
            } else if (si.ssi_signo != SIGHUP) {
                shutdown_qube(sfd);
            }
        }
    }
}
