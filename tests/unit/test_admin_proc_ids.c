/* proc_ids.c: which processes the /proc walk counts as live, and that a walk cut short
 * by a readdir error fails instead of passing for a complete one. */
#include "tap.h"
#include "proc_ids.h"
#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* readdir as proc_ids.c calls it (the header redirects it to readdir64 under
 * _FILE_OFFSET_BITS=64, this definition with it), failing with EIO once armed */
static int fail_after = -1; /* entries read before the failure; -1: never */
static bool fail_once;      /* disarmed by its failure: the next walk reads through */
struct dirent *readdir(DIR *d)
{
    static struct dirent *(*real)(DIR *);
    if (!real)
        *(void **)&real = dlsym(RTLD_NEXT, "readdir64");
    if (fail_after == 0) {
        if (fail_once)
            fail_after = -1;
        errno = EIO;
        return NULL;
    }
    if (fail_after > 0)
        fail_after--;
    return real(d);
}

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

    /* readdir failing part way: -1 and its errno, not a short walk taken as whole */
    struct find f = { .pid = -1 };
    fail_after = 5;
    errno = 0;
    CHECK(bh_proc_each(0, find_pid, &f) == -1 && errno == EIO);
    CHECK(f.calls <= 5);
    struct bh_qid_set s;
    fail_after = 5;
    CHECK(bh_qids_live(&s, true) == -1 && errno == EIO);
    fail_after = 0;
    CHECK(bh_qid_live_pid(BH_QID_MAX, true) == -1 && errno == EIO);
    fail_after = -1;
    f = (struct find){ .pid = -1 };
    CHECK(bh_proc_each(0, find_pid, &f) == 0 && f.calls > 0);

    /* one transient failure: the walk is made again, and answers */
    fail_once = true;
    fail_after = 5;
    CHECK(bh_qids_live(&s, true) == 0);
    CHECK(fail_after == -1);
    fail_after = 0;
    CHECK(bh_qid_live_pid(BH_QID_MAX, true) == 0);
    CHECK(fail_after == -1);
    fail_once = false;
    return tap_done();
}
