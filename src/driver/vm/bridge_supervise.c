/* The host side of bulkhead-vchan-bridge runs as two processes: this supervisor, which
 * parses nothing, and a worker (the bridge proper), which parses every byte the guest
 * writes. If the worker ends while QEMU still runs (a protocol violation by the guest,
 * a crash, a kill from outside), the qube has lost qrexec for good: the supervisor then
 * kills QEMU, and bulkheadd (watching QEMU's pidfd) reports the qube stopped
 * unexpectedly, as for a guest kernel panic. A qube is never left Running without
 * qrexec. Why not restart the worker: the guest side and QEMU's queues still hold
 * frames of the old connection, cut at arbitrary bytes; resynchronising both streams
 * is a protocol of its own, and a guest that broke the protocol once is not owed it.
 *
 * The reason goes to stderr (the qube's bridge.log). SIGUSR1 (Shutdown) is passed on. */
#include "bridge_supervise.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static void say(const char *fmt, int v)
{
    fprintf(stderr, "bulkhead-vchan-bridge (host): ");
    fprintf(stderr, fmt, v);
    fputc('\n', stderr);
}

void bh_bridge_supervise(pid_t qemu)
{
    int qfd = pidfd_open(qemu);
    if (qfd < 0) {
        say("QEMU (pid %d) is not running", (int)qemu);
        exit(1);
    }
    sigset_t usr1;
    sigemptyset(&usr1);
    sigaddset(&usr1, SIGUSR1);
    sigprocmask(SIG_BLOCK, &usr1, NULL); /* before the fork: no Shutdown is lost */
    int sfd = signalfd(-1, &usr1, SFD_CLOEXEC | SFD_NONBLOCK);
    pid_t self = getpid();
    pid_t w = fork();
    if (w == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != self)
            _exit(1);
        close(qfd);
        close(sfd);
        return; /* the worker; SIGUSR1 stays blocked for its signalfd */
    }
    int wfd = w > 0 ? pidfd_open(w) : -1;
    if (sfd < 0 || wfd < 0) {
        say("cannot watch the worker (errno %d)", errno);
        if (w > 0)
            kill(w, SIGKILL);
        syscall(SYS_pidfd_send_signal, qfd, SIGKILL, NULL, 0);
        exit(1);
    }
    exit(bh_bridge_supervise_loop(w, wfd, sfd, qfd));
}

/* Stops the qube: the worker and QEMU get SIGKILL. */
static int stop_qube(pid_t w, int qfd)
{
    kill(w, SIGKILL);
    while (waitpid(w, NULL, 0) < 0 && errno == EINTR)
        ;
    syscall(SYS_pidfd_send_signal, qfd, SIGKILL, NULL, 0);
    return 1;
}

int bh_bridge_supervise_loop(pid_t w, int wfd, int sfd, int qfd)
{
    /* poll failing (ENOMEM) is retried with a growing pause, never at full speed; if it
     * keeps failing for ~15 s the supervisor can no longer do its job: stop the qube. An
     * error on one of its fds (POLLERR, POLLNVAL) never clears: stop the qube at once,
     * as for a dead worker (before, both cases spun at 100% CPU forever). */
    int backoff_ms = 0, failures = 0;
    for (;;) {
        struct pollfd p[2] = { { .fd = wfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
        int r = poll(p, 2, -1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno;
            if (++failures > 40) {
                say("poll keeps failing (errno %d): stopping the qube, nobody would watch its bridge", e);
                return stop_qube(w, qfd);
            }
            backoff_ms = backoff_ms ? (backoff_ms * 2 > 500 ? 500 : backoff_ms * 2) : 10;
            usleep((useconds_t)backoff_ms * 1000);
            continue;
        }
        failures = 0;
        backoff_ms = 0;
        if ((p[0].revents | p[1].revents) & (POLLERR | POLLNVAL)) {
            say("an fd of the supervisor failed (revents 0x%x): stopping the qube, nobody would watch its bridge",
                (p[0].revents | p[1].revents) & 0xffff);
            return stop_qube(w, qfd);
        }
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                kill(w, SIGUSR1);
        }
        if (!(p[0].revents & (POLLIN | POLLHUP)))
            continue;
        int st = 0;
        while (waitpid(w, &st, 0) < 0 && errno == EINTR)
            ;
        struct pollfd q = { .fd = qfd, .events = POLLIN };
        bool qemu_gone = poll(&q, 1, 0) == 1;
        /* exit 0: the worker saw QEMU close the port, the qube is going anyway */
        if (qemu_gone || (WIFEXITED(st) && WEXITSTATUS(st) == 0))
            return 0;
        if (WIFSIGNALED(st))
            say("the bridge was killed (signal %d): stopping the qube, it has no qrexec without it", WTERMSIG(st));
        else
            say("the bridge failed (status %d): stopping the qube, it has no qrexec without it", WEXITSTATUS(st));
        syscall(SYS_pidfd_send_signal, qfd, SIGKILL, NULL, 0);
        return 1;
    }
}
