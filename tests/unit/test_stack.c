/* bh_stack_alloc (src/lib/stack.h): the clone stack bulkhead-init starts on has a
 * PROT_NONE guard below it. The whole usable range is writable (control), the byte
 * below it faults, and a clone(2) child with CLONE_VM that recurses without bound dies
 * of SIGSEGV; one that stays within the stack returns normally. */
#include "tap.h"
#include "stack.h"
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SIZE (256u * 1024)

/* How a forked child that writes one byte at p ends: 0 if it could, else the signal. */
static int write_at(char *p)
{
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGSEGV, SIG_DFL); /* a sanitizer's handler would report and abort */
        *(volatile char *)p = 1;
        _exit(0);
    }
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st);
}

static __attribute__((noinline)) int recurse(int depth, int limit)
{
    volatile char frame[1024];
    memset((char *)frame, depth & 0xff, sizeof frame);
    if (limit >= 0 && depth >= limit)
        return frame[0];
    return recurse(depth + 1, limit) + frame[1];
}

static int child_fn(void *arg)
{
    int limit = (int)(intptr_t)arg;
    signal(SIGSEGV, SIG_DFL); /* this child's own handlers (no CLONE_SIGHAND) */
    (void)recurse(0, limit);
    return 7;
}

/* How a CLONE_VM|CLONE_VFORK child on the stack ends: its exit code, or 100 + signal. */
static int clone_on(struct bh_stack *s, int limit)
{
    pid_t pid = clone(child_fn, bh_stack_top(s), CLONE_VM | CLONE_VFORK | SIGCHLD, (void *)(intptr_t)limit);
    int st = 0;
    if (pid < 0 || waitpid(pid, &st, 0) != pid)
        return -1;
    return WIFSIGNALED(st) ? 100 + WTERMSIG(st) : WEXITSTATUS(st);
}

int main(void)
{
    struct bh_stack s;
    CHECK(bh_stack_alloc(&s, SIZE) == 0);
    char *low = (char *)bh_stack_top(&s) - SIZE; /* the lowest usable byte */
    CHECK(write_at((char *)bh_stack_top(&s) - 1) == 0);
    CHECK(write_at(low) == 0);
    CHECK(write_at(low - 1) == SIGSEGV);                   /* the guard */
    CHECK(write_at(low - BH_STACK_GUARD) == SIGSEGV);      /* all of it */
    CHECK(clone_on(&s, 64) == 7);                           /* 64 KiB of frames: fine */
    CHECK(clone_on(&s, -1) == 100 + SIGSEGV);               /* no end: faults in the guard */
    bh_stack_free(&s);
    CHECK(s.map == NULL);
    return tap_done();
}
