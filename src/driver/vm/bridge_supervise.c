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
    for (;;) {
        struct pollfd p[2] = { { .fd = wfd, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
        if (poll(p, 2, -1) < 0 && errno != EINTR)
            continue;
        if (p[1].revents & POLLIN) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si)
                kill(w, SIGUSR1);
        }
        if (!(p[0].revents & POLLIN))
            continue;
        int st = 0;
        while (waitpid(w, &st, 0) < 0 && errno == EINTR)
            ;
        struct pollfd q = { .fd = qfd, .events = POLLIN };
        bool qemu_gone = poll(&q, 1, 0) == 1;
        /* exit 0: the worker saw QEMU close the port, the qube is going anyway */
        if (qemu_gone || (WIFEXITED(st) && WEXITSTATUS(st) == 0))
            exit(0);
        if (WIFSIGNALED(st))
            say("the bridge was killed (signal %d): stopping the qube, it has no qrexec without it", WTERMSIG(st));
        else
            say("the bridge failed (status %d): stopping the qube, it has no qrexec without it", WEXITSTATUS(st));
        syscall(SYS_pidfd_send_signal, qfd, SIGKILL, NULL, 0);
        exit(1);
    }
}
