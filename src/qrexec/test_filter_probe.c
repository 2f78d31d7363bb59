/* test-qrexec-filter-probe FILTER OP: loads one of qrexec-daemon's seccomp filters
 * ("call": a call process whose target is a qube; "root": the monitor's, which its call
 * processes and dom0 services inherit) in a child, tries OP there, and prints how it
 * ended: "exit N" (0 done, 1 EPERM, 2 ENOSYS, 3 another error) or "signal N" (31: the
 * filter killed it). For tests/attack/test_qrexec_clone_flags.py. */
#include "privsep.h"
#include <errno.h>
#include <linux/sched.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int code(long r)
{
    return r >= 0 ? 0 : errno == EPERM ? 1 : errno == ENOSYS ? 2 : 3;
}

/* A raw clone with these flags; the child ends at once. */
static int try_clone(unsigned long flags)
{
    long r = syscall(SYS_clone, flags | SIGCHLD, 0, NULL, NULL, 0);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    return code(r);
}

static int try_clone3(void)
{
#ifdef SYS_clone3
    struct clone_args a;
    memset(&a, 0, sizeof a);
    a.exit_signal = SIGCHLD;
    long r = syscall(SYS_clone3, &a, sizeof a);
    if (r == 0)
        _exit(0);
    if (r > 0)
        waitpid((pid_t)r, NULL, 0);
    return code(r);
#else
    return 2;
#endif
}

int main(int argc, char **argv)
{
    if (argc != 3)
        return 64;
    pid_t pid = fork();
    if (pid == 0) {
        bh_error err = { 0 };
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            _exit(70);
        int r = !strcmp(argv[1], "call") ? bh_qx_seccomp_call(&err) : !strcmp(argv[1], "root") ? bh_qx_seccomp_root(&err) : -1;
        if (r < 0)
            _exit(71);
        const char *op = argv[2];
        if (!strcmp(op, "fork")) {
            pid_t c = fork();
            if (c == 0)
                _exit(0);
            if (c > 0)
                waitpid(c, NULL, 0);
            _exit(c > 0 ? 0 : code(-1));
        }
        if (!strcmp(op, "clone-plain"))
            _exit(try_clone(0));
        if (!strcmp(op, "clone-newuser"))
            _exit(try_clone(CLONE_NEWUSER));
        if (!strcmp(op, "clone-newns"))
            _exit(try_clone(CLONE_NEWNS));
        if (!strcmp(op, "clone-newnet"))
            _exit(try_clone(CLONE_NEWNET));
        if (!strcmp(op, "clone-files"))
            _exit(try_clone(CLONE_FILES));
        if (!strcmp(op, "clone3"))
            _exit(try_clone3());
        _exit(65);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0)
        return 1;
    if (WIFSIGNALED(st))
        printf("signal %d\n", WTERMSIG(st));
    else
        printf("exit %d\n", WEXITSTATUS(st));
    return 0;
}
