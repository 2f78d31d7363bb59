/* proc_ids.c: which processes the /proc walk counts as live. */
#include "tap.h"
#include "proc_ids.h"
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct find {
    pid_t pid;
    bool seen;
    int calls;
};

static bool find_pid(const struct bh_proc_ids *p, void *ctx)
{
    struct find *f = ctx;
    f->calls++;
    if (p->pid == f->pid)
        f->seen = true;
    return true;
}

static bool seen(pid_t pid)
{
    struct find f = { .pid = pid };
    return bh_proc_each(0, find_pid, &f) == 0 && f.seen;
}

static void *sleeper(void *arg)
{
    (void)arg;
    pause();
    return NULL;
}

/* A child whose main thread ends alone (SYS_exit, not exit_group) while another thread
 * lives: its leader is a zombie (State Z) with Threads: 2. */
static pid_t half_dead(void)
{
    pid_t c = fork();
    if (c == 0) {
        pthread_t t;
        if (pthread_create(&t, NULL, sleeper, NULL) != 0)
            _exit(1);
        syscall(SYS_exit, 0);
    }
    return c;
}

static bool status_has(pid_t pid, const char *a, const char *b)
{
    char path[64], buf[4096];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, a) && strstr(buf, b);
}

static bool wait_status(pid_t pid, const char *a, const char *b)
{
    for (int i = 0; i < 500; i++) {
        if (status_has(pid, a, b))
            return true;
        nanosleep(&(struct timespec){ .tv_nsec = 10 * 1000 * 1000 }, NULL);
    }
    return false;
}

int main(void)
{
    /* a complete walk sees this process */
    CHECK(seen(getpid()));

    /* a zombie leader whose other thread lives is live; killed, the unreaped zombie
     * (Threads: 1) is not */
    pid_t c = half_dead();
    CHECK(c > 0);
    CHECK(wait_status(c, "\nState:\tZ", "\nThreads:\t2\n"));
    CHECK(seen(c));
    kill(c, SIGKILL);
    CHECK(wait_status(c, "\nState:\tZ", "\nThreads:\t1\n"));
    CHECK(!seen(c));
    CHECK(waitpid(c, NULL, 0) == c);

    return tap_done();
}
