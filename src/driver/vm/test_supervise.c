/* Unit tests of the host bridge's supervisor loop (bridge_supervise.c): a dead worker
 * stops the qube, a worker that ends cleanly does not, and an fd of the supervisor that
 * fails (POLLNVAL here) stops the qube instead of spinning at 100% CPU forever.
 * "QEMU" and the worker are sleeping children; each case runs the loop in a child of
 * its own and must end within 5 s. */
#include "driver/vm/bridge_supervise.h"
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static int pidfd(pid_t p) { return (int)syscall(SYS_pidfd_open, p, 0); }

static pid_t sleeper(int exit_after_ms, int status)
{
    pid_t p = fork();
    if (p == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* never outlives a case that failed */
        if (exit_after_ms >= 0) {
            usleep((useconds_t)exit_after_ms * 1000);
            _exit(status);
        }
        for (;;)
            pause();
    }
    return p;
}

enum fault { NONE, BAD_SIGNALFD, BAD_WORKER_FD };

/* Runs the loop in a child; returns its exit status (-1: still running after 5 s, the
 * loop spun or hung) and whether "QEMU" was killed. */
static int run_case(int worker_exit_ms, int worker_status, enum fault f, bool *qemu_killed)
{
    pid_t qemu = sleeper(-1, 0);
    pid_t sup = fork();
    if (sup == 0) {
        sigset_t usr1;
        sigemptyset(&usr1);
        sigaddset(&usr1, SIGUSR1);
        sigprocmask(SIG_BLOCK, &usr1, NULL);
        int sfd = signalfd(-1, &usr1, SFD_CLOEXEC | SFD_NONBLOCK);
        pid_t w = sleeper(worker_exit_ms, worker_status);
        int wfd = pidfd(w), qfd = pidfd(qemu);
        if (f == BAD_SIGNALFD) {
            close(sfd); /* the number is now invalid: poll reports POLLNVAL for it */
        } else if (f == BAD_WORKER_FD) {
            close(wfd);
        }
        _exit(bh_bridge_supervise_loop(w, wfd, sfd, qfd));
    }
    int sfd = pidfd(sup);
    struct pollfd p = { .fd = sfd, .events = POLLIN };
    int st = -1;
    if (poll(&p, 1, 5000) == 1) {
        waitpid(sup, &st, 0);
        st = WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
    } else {
        kill(sup, SIGKILL);
        waitpid(sup, NULL, 0);
    }
    close(sfd);
    int qs = 0, qfd = pidfd(qemu); /* a SIGKILL sent takes a moment to land */
    struct pollfd qp = { .fd = qfd, .events = POLLIN };
    (void)poll(&qp, 1, 1000);
    close(qfd);
    *qemu_killed = waitpid(qemu, &qs, WNOHANG) == qemu && WIFSIGNALED(qs) && WTERMSIG(qs) == SIGKILL;
    if (!*qemu_killed) {
        kill(qemu, SIGKILL);
        waitpid(qemu, NULL, 0);
    }
    return st;
}

int main(void)
{
    bool killed;
    /* positive controls: the worker fails -> the qube is stopped; it ends cleanly -> not */
    CHECK(run_case(100, 3, NONE, &killed) == 1);
    CHECK(killed);
    CHECK(run_case(100, 0, NONE, &killed) == 0);
    CHECK(!killed);
    /* a failed fd stops the qube at once (before the fix: spun, never returned) */
    CHECK(run_case(-1, 0, BAD_SIGNALFD, &killed) == 1);
    CHECK(killed);
    CHECK(run_case(-1, 0, BAD_WORKER_FD, &killed) == 1);
    CHECK(killed);
    if (fails)
        return 1;
    printf("ok\n");
    return 0;
}
