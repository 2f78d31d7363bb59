/* bh_late_reap (src/lib/late_reap.h): a child that has ended is reaped at once; one that
 * has not is held by its pidfd and reaped by a later tick once it has ended, and not
 * before; a process that is not our child is only let go (its pidfd closed); an entry
 * never reaps a later child that got a reaped one's PID (it holds a pidfd, not a PID). */
#include "tap.h"
#include "late_reap.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int pidfd_of(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }

static pid_t child_that_waits(const int p[2])
{
    pid_t pid = fork();
    if (pid == 0) {
        char c;
        close(p[1]);
        (void)read(p[0], &c, 1); /* until the test closes its end */
        _exit(7);
    }
    return pid;
}

static int fd_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

int main(void)
{
    /* ended already: reaped now, the pidfd closed */
    pid_t a = fork();
    if (a == 0)
        _exit(0);
    int afd = pidfd_of(a);
    CHECK(afd >= 0);
    siginfo_t si = { 0 };
    CHECK(waitid(P_PID, (id_t)a, &si, WEXITED | WNOWAIT) == 0); /* ended, not reaped */
    CHECK(bh_late_reap(afd) == 1);
    CHECK(!fd_open(afd));
    CHECK(waitpid(a, NULL, WNOHANG) < 0 && errno == ECHILD);

    /* not ended: held, a tick before its end leaves it, a tick after reaps it */
    int p[2];
    CHECK(pipe(p) == 0);
    pid_t b = child_that_waits(p);
    int bfd = pidfd_of(b);
    CHECK(bfd >= 0);
    CHECK(bh_late_reap(bfd) == 0);
    CHECK(bh_late_reap_pending() == 1);
    bh_late_reap_tick();
    CHECK(bh_late_reap_pending() == 1);
    CHECK(kill(b, 0) == 0); /* still there, not reaped behind its back */
    close(p[1]);
    CHECK(waitid(P_PID, (id_t)b, &si, WEXITED | WNOWAIT) == 0); /* ended now */
    bh_late_reap_tick();
    CHECK(bh_late_reap_pending() == 0);
    CHECK(!fd_open(bfd));
    CHECK(waitpid(b, NULL, WNOHANG) < 0 && errno == ECHILD);
    close(p[0]);

    /* reaped by someone else first: the entry goes without touching another child */
    CHECK(pipe(p) == 0);
    pid_t c = child_that_waits(p);
    int cfd = pidfd_of(c);
    CHECK(bh_late_reap(cfd) == 0);
    close(p[1]);
    CHECK(waitpid(c, NULL, 0) == c); /* the caller's own waitpid won */
    pid_t d = child_that_waits(p); /* another child (whatever its PID) ends meanwhile */
    CHECK(waitid(P_PID, (id_t)d, &si, WEXITED | WNOWAIT) == 0);
    bh_late_reap_tick();
    CHECK(bh_late_reap_pending() == 0);
    int st = 0;
    CHECK(waitpid(d, &st, 0) == d && WIFEXITED(st) && WEXITSTATUS(st) == 7); /* d's status is still ours */
    close(p[0]);

    /* not our child (our parent, alive): let go, nothing held */
    int ppfd = pidfd_of(getppid());
    CHECK(ppfd >= 0);
    CHECK(bh_late_reap(ppfd) == 1);
    CHECK(!fd_open(ppfd));
    CHECK(bh_late_reap_pending() == 0);
    return tap_done();
}
