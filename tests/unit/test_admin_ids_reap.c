/* qube_ids_reap.c: a sweep whose child cannot set itself up says which step failed, and
 * says it of the UID it failed for: one child sweeps both identities, each UID's result
 * is its own, a UID a child could not finish is swept again in a child of its own, and
 * that child first ends as root what it finds of the UID (a leftover that kills every
 * child before its kill(-1) is ended all the same). */
#include "tap.h"
#include "host_ids.h"
#include "qrexec_ids.h"
#include "qube_ids_reap.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

/* close_range as the sweep's child calls it, failing as under a seccomp filter that does
 * not know the call (EPERM) once armed; else the kernel's */
static bool fail_close_range;
int close_range(unsigned int first, unsigned int last, int flags)
{
    if (fail_close_range) {
        errno = EPERM;
        return -1;
    }
    return (int)syscall(SYS_close_range, first, last, flags);
}

/* setresuid refused for this real UID (0: none), as for a UID a policy forbids */
static uid_t refuse_uid;
int setresuid(uid_t r, uid_t e, uid_t s)
{
    if (refuse_uid && r == refuse_uid) {
        errno = EPERM;
        return -1;
    }
    return (int)syscall(SYS_setresuid, r, e, s);
}

/* kill(-1) as this UID (0: none) kills the sweep's child itself, once (a marker file
 * remembers across its forks) or, with die_always, every time, as a process of the UID
 * can just before the sweep's own kill(-1) */
static uid_t die_as_uid;
static bool die_always;
static char marker[64];
int kill(pid_t pid, int sig)
{
    if (pid == -1 && die_as_uid && getuid() == die_as_uid) {
        int fd = die_always ? -1 : open(marker, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0600);
        if (fd >= 0)
            close(fd);
        if (die_always || fd >= 0)
            syscall(SYS_kill, getpid(), SIGKILL);
    }
    return (int)syscall(SYS_kill, pid, sig);
}

/* A process of uid (0: root's) that waits; returned once it has its identity. */
static pid_t as_uid(uid_t uid)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[0]);
        if (uid == 0 || (syscall(SYS_setgroups, 0, NULL) == 0 && syscall(SYS_setresgid, uid, uid, uid) == 0 &&
                         syscall(SYS_setresuid, uid, uid, uid) == 0)) {
            (void)!write(p[1], "x", 1);
            close(p[1]);
            pause();
        }
        _exit(1);
    }
    close(p[1]);
    char c;
    bool ok = pid > 0 && read(p[0], &c, 1) == 1;
    close(p[0]);
    if (pid > 0 && !ok) {
        syscall(SYS_kill, pid, SIGKILL);
        waitpid(pid, NULL, 0);
    }
    return ok ? pid : -1;
}

/* What bh_qube_ids_reap(qid) writes to stderr. */
static char *reap_log(uint32_t qid, int *ret)
{
    char path[] = "/tmp/bh-ids-reap-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    unlink(path);
    dup2(fd, 2);
    *ret = bh_qube_ids_reap(qid);
    dup2(saved, 2);
    close(saved);
    static char buf[8192];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    return buf;
}

static bool has(const char *log, const char *fmt, unsigned uid)
{
    char want[256];
    snprintf(want, sizeof want, fmt, uid);
    return strstr(log, want) != NULL;
}

int main(void)
{
    uint32_t qid = BH_QID_MAX; /* no process holds its identities */
    unsigned daemon_uid = BH_QX_UNPRIV_ID_BASE + (qid & 0xffffu), call_uid = BH_QX_CALL_ID_BASE + (qid & 0xffffu);
    int r;

    fail_close_range = true;
    const char *log = reap_log(qid, &r);
    CHECK(r == -1);
    CHECK(strstr(log, "the sweep failed: its child could not close bulkheadd's fds (close_range)") != NULL);
    CHECK(strstr(log, "close_range: Operation not permitted") != NULL);
    fail_close_range = false;
    if (tap_failed)
        fprintf(stderr, "log:\n%s", log);

    if (geteuid() != 0) {
        printf("# the drops need root: the rest skipped\n");
        return tap_done();
    }
    int before = tap_failed;
    log = reap_log(qid, &r);
    CHECK(r == 0); /* control: both swept */
    CHECK(strstr(log, "ending processes") == NULL);

    /* the first UID refused: the second is swept all the same, and only the first is
     * named */
    refuse_uid = daemon_uid;
    log = reap_log(qid, &r);
    CHECK(r == -1);
    CHECK(has(log, "uid %u: the sweep failed: its child could not drop to the UID", daemon_uid));
    CHECK(!has(log, "uid %u: the sweep failed", call_uid));
    /* the second refused: the first was swept */
    refuse_uid = call_uid;
    log = reap_log(qid, &r);
    CHECK(r == -1);
    CHECK(has(log, "uid %u: the sweep failed: its child could not drop to the UID", call_uid));
    CHECK(!has(log, "uid %u: the sweep failed", daemon_uid));
    refuse_uid = 0;

    /* the child killed as the second UID, once: the first UID's result came through its
     * progress pipe and is kept; the second is swept again in a child of its own */
    snprintf(marker, sizeof marker, "/tmp/bh-ids-reap-died-%d", (int)getpid());
    die_as_uid = call_uid;
    log = reap_log(qid, &r);
    CHECK(r == 0);
    CHECK(has(log, "uid %u: the sweep's child was killed (signal 9): once more", call_uid));
    CHECK(!has(log, "uid %u: the sweep", daemon_uid));
    CHECK(access(marker, F_OK) == 0); /* control: it did die once */
    unlink(marker);
    /* killed as the first UID: both run again, apart */
    die_as_uid = daemon_uid;
    log = reap_log(qid, &r);
    CHECK(r == 0);
    CHECK(has(log, "uid %u: the sweep's child was killed (signal 9): once more", daemon_uid));
    CHECK(has(log, "uid %u: the sweep's child was killed (signal 9): once more", call_uid));
    unlink(marker);

    /* a leftover of the call UID that wins the race against every try (each child dies
     * before its kill(-1) as the UID): the retries' pass as root ends it all the same,
     * and nothing else: a process of the next qid's call UID and one of root's stay */
    pid_t victim = as_uid(call_uid), other = as_uid(call_uid - 1), mine = as_uid(0);
    CHECK(victim > 0 && other > 0 && mine > 0);
    die_as_uid = call_uid;
    die_always = true;
    log = reap_log(qid, &r);
    CHECK(r == -1); /* its own kill(-1) never ran */
    CHECK(has(log, "uid %u: not swept after 3 tries", call_uid));
    int vst = 0;
    pid_t w = 0;
    for (int i = 0; i < 100 && (w = waitpid(victim, &vst, WNOHANG)) == 0; i++)
        usleep(10 * 1000);
    CHECK(w == victim && WIFSIGNALED(vst) && WTERMSIG(vst) == SIGKILL);
    CHECK(waitpid(other, NULL, WNOHANG) == 0 && waitpid(mine, NULL, WNOHANG) == 0);
    for (pid_t *p = (pid_t[]){ victim, other, mine, 0 }; *p; p++)
        if (*p > 0 && (*p != victim || w == 0)) {
            syscall(SYS_kill, *p, SIGKILL);
            waitpid(*p, NULL, 0);
        }
    die_always = false;
    die_as_uid = 0;
    if (tap_failed > before)
        fprintf(stderr, "log:\n%s", log);
    return tap_done();
}
