/* A qube's call identity (the UID of its qrexec calls' dom0 processes) and its daemon
 * identity are per qid, and bulkheadd serves a peer of the call UID as the qube that
 * holds that qid (call_auth.c). qids are reused (model.c gives the lowest free one), so a
 * process of a halted qube's identity that outlived it (a call or dom0 service the qube
 * took over, forked and detached) would be served as the next qube with that qid. When
 * a qube has halted, every process of both UIDs is ended.
 *
 * How: a child drops to the UID (real and effective; with it every capability out of
 * its effective set) and calls kill(-1, SIGKILL), which reaches exactly the processes
 * whose real or saved UID is that UID (kill(2)'s permission rule for an unprivileged
 * sender), never itself, root's or another UID's. Repeated until the UID has no other
 * task (uid_alone: one vfork) or, failing that, /proc shows no live process of it. One
 * child sweeps both identities, one after the other (reap_begin). A process with
 * SIGKILL pending cannot fork, and kill(-1) walks the process list under the lock that
 * fork takes, so a fork bomb is ended within a few passes. kill(-1)'s own result cannot
 * tell when to stop: it is 0 whenever any other process exists, even if none could be
 * signalled (Linux counts every process it tried), so a loop waiting for ESRCH ran all
 * its passes and warned at every halt. The /proc scan does not count zombies: they run
 * nothing, and their parent (a relay, qrexec-daemon) collects them; but a zombie leader
 * whose other threads still run counts (they do run, with its UIDs: proc_ids.c). */
#include "qube_ids_reap.h"
#include "io.h"
#include "log.h"
#include "proc_ids.h"
#include "qrexec_ids.h"
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define REAP_PASSES 64

struct uid_search {
    uid_t uid;
    bool found;
};

/* Whether p is one kill(-1) as uid reaches (its real or saved UID is uid); a status
 * that did not parse counts as one: assume the worst, another pass. */
static bool of_uid(const struct bh_proc_ids *p, void *ctx)
{
    struct uid_search *c = ctx;
    c->found = !p->known || p->real == c->uid || p->saved == c->uid;
    return !c->found;
}

/* In the dropped child: is any live process of uid left but this one? */
static bool uid_has_processes(uid_t uid)
{
    struct uid_search c = { uid, false };
    if (bh_proc_each(getpid(), of_uid, &c) < 0)
        return true;
    return c.found;
}

/* In the dropped child, whose RLIMIT_NPROC is 2: is it the only task of its UID? The
 * kernel counts every task whose real UID is this one (threads and zombies too, and the
 * tasks of user namespaces such tasks made) against that limit, so the vfork succeeds
 * only while no other exists: one system call instead of reading every
 * /proc/<pid>/status. kill(-1) also reaches tasks whose saved UID alone is this one, and
 * the count misses tasks of a namespace that someone else made and mapped onto the UID;
 * neither comes from the identities' own processes: every call and daemon process runs
 * with no_new_privs (no set-user-ID exec can lend it a UID) and the identities are in no
 * qube's map. A zombie fails this test and sends the caller to the /proc scan. */
static bool uid_alone(void)
{
    pid_t p = vfork();
    if (p == 0)
        _exit(0);
    if (p < 0)
        return false;
    while (waitpid(p, NULL, 0) < 0 && errno == EINTR)
        ;
    return true;
}

/* The sweep child's exit status: which step failed, named in bulkheadd's warning. A
 * step that fails with an errno (the setup: close_range, the drop) also logs it from the
 * child, whose stdio is still bulkheadd's. */
enum {
    SWEEP_DONE = 0,
    SWEEP_FDS = 2,  /* close_range of bulkheadd's fds (EPERM: a seccomp filter that does
                     * not know the call, as some container runtimes have) */
    SWEEP_DROP = 3, /* setgroups/setresgid/setresuid to the UID */
    SWEEP_KILL = 4, /* kill(-1) itself */
    SWEEP_LEFT = 5, /* processes of the UID still alive after every pass */
};

static const char *sweep_failed(int code)
{
    switch (code) {
    case SWEEP_FDS:
        return "its child could not close bulkheadd's fds (close_range)";
    case SWEEP_DROP:
        return "its child could not drop to the UID";
    case SWEEP_KILL:
        return "kill(-1) as the UID failed";
    case SWEEP_LEFT:
        return "processes of the UID were still alive after every pass";
    default:
        return "its child ended unexpectedly";
    }
}

/* One pass set of the sweep as uid: kill(-1) until the UID has no other process. The
 * child's real and effective UID are uid; its saved UID is uid too, or 0 while another
 * UID is still to be swept (below). */
static int sweep_uid(uid_t uid, bool fast)
{
    if (getuid() != uid || geteuid() != uid)
        return SWEEP_DROP;
    for (int i = 0; i < REAP_PASSES; i++) {
        if (kill(-1, SIGKILL) < 0 && errno != ESRCH)
            return SWEEP_KILL;
        if ((fast && uid_alone()) || !uid_has_processes(uid))
            return SWEEP_DONE;
        /* a killed process still tearing down its memory is listed a little
         * longer: from the fourth pass on, give it a millisecond */
        if (i >= 3)
            nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
    }
    return SWEEP_LEFT;
}

/* The child's exit status holds a result per UID, 3 bits each, in the order given. */
#define SWEEP_BITS 3
#define SWEEP_MASK 7

/* One child sweeps the n UIDs one after the other (a fork of bulkheadd costs
 * milliseconds on a guest where page faults trap; one pass of a sweep with nothing left
 * to end, a kill(-1) and a vfork, costs tens of microseconds). For every UID but the
 * last it keeps 0 as its saved UID, so that it can become root again and drop to the
 * next: kill(-1) reaches the same processes (kill(2)'s rule looks at the sender's real
 * and effective UID, and every capability is out of its effective set meanwhile), and a
 * process of the swept UID cannot ptrace it (the tracer's UID must equal all three of
 * the target's) or take its memory (the change of effective UID made it non-dumpable). */
static pid_t reap_begin(const uid_t *uids, int n)
{
    pid_t pid = fork();
    if (pid < 0) {
        bh_warn("ending processes of uid %u: fork: %s", (unsigned)uids[0], strerror(errno));
        return -1;
    }
    if (pid == 0) {
        int code = 0;
        /* It becomes the qube's UIDs: it holds none of bulkheadd's fds (close-on-exec does
         * nothing here, the child never execs); stdio stays. */
        if (close_range(3, ~0U, 0) < 0) {
            bh_warn("ending processes of uid %u: close_range: %s", (unsigned)uids[0], strerror(errno));
            for (int i = 0; i < n; i++)
                code |= SWEEP_FDS << (SWEEP_BITS * i);
            _exit(code);
        }
        /* without the limit a vfork always succeeds: the fast test would say "alone". Set
         * before the drop: from the drop on, every process of the UID may signal this
         * one, so its first kill(-1) comes right after it. */
        bool fast = setrlimit(RLIMIT_NPROC, &(struct rlimit){ 2, 2 }) == 0;
        bool dropped = setgroups(0, NULL) == 0;
        for (int i = 0; i < n; i++) {
            uid_t uid = uids[i], keep = i + 1 < n ? 0 : uid;
            int r;
            /* gid first, while still root; then the uid, which takes every capability out
             * of the effective set (and, with the last UID, out of every set) */
            if (!dropped || setresgid(uid, uid, keep) < 0 || setresuid(uid, uid, keep) < 0) {
                bh_warn("ending processes of uid %u: dropping to it: %s", (unsigned)uid, strerror(errno));
                r = SWEEP_DROP;
            } else {
                r = sweep_uid(uid, fast);
            }
            code |= r << (SWEEP_BITS * i);
            /* back to root for the next UID (allowed: 0 is the saved UID) */
            if (i + 1 < n && (setresuid(0, 0, 0) < 0 || setresgid(0, 0, 0) < 0))
                dropped = false;
        }
        _exit(code);
    }
    return pid;
}

/* The sweep child runs as the UIDs it sweeps, so a process of one can stop it (SIGSTOP)
 * in the moment between its drop and its first kill(-1), and bulkheadd would wait for it
 * forever. A sweep takes milliseconds: one that has not ended within this (per UID) is
 * killed and started again. */
#define REAP_DEADLINE_MS 2000
#define REAP_TRIES 3

/* Waits for the child sweeping the n UIDs and sets res[i] for each: 0 done, -1 failed,
 * 1 to run again (held past the deadline and killed, or killed by a process of a UID) */
static void reap_end(pid_t pid, const uid_t *uids, int n, int *res)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        int r = bh_pidfd_wait(pfd, REAP_DEADLINE_MS * n);
        close(pfd);
        if (r == 0) {
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
            for (int i = 0; i < n; i++) {
                bh_warn("ending processes of uid %u: the sweep was held for %d ms (stopped by one of them?): killed",
                        (unsigned)uids[i], REAP_DEADLINE_MS * n);
                res[i] = 1;
            }
            return;
        }
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            for (int i = 0; i < n; i++) {
                bh_warn("ending processes of uid %u: waitpid: %s", (unsigned)uids[i], strerror(errno));
                res[i] = -1;
            }
            return;
        }
    for (int i = 0; i < n; i++) {
        if (WIFSIGNALED(st)) {
            /* once dropped, the child is the UID's too: a process of it can kill it before
             * its first kill(-1) (a leftover that loops on kill(-1) itself); try again */
            bh_warn("ending processes of uid %u: the sweep's child was killed (signal %d): once more",
                    (unsigned)uids[i], WTERMSIG(st));
            res[i] = 1;
            continue;
        }
        int code = WIFEXITED(st) ? WEXITSTATUS(st) >> (SWEEP_BITS * i) & SWEEP_MASK : -1;
        if (code != SWEEP_DONE) {
            bh_warn("ending processes of uid %u: the sweep failed: %s", (unsigned)uids[i], sweep_failed(code));
            res[i] = -1;
        } else {
            res[i] = 0;
        }
    }
}

/* Forks the child for the UIDs still to run (res 1); their pid goes to s->pid. */
static void sweep_start(struct bh_ids_sweep *s)
{
    s->n = 0;
    for (int i = 0; i < 2; i++)
        if (s->res[i] == 1)
            s->run[s->n++] = i;
    s->pid = -1;
    if (!s->n)
        return;
    uid_t uids[2];
    for (int i = 0; i < s->n; i++)
        uids[i] = s->uids[s->run[i]];
    if ((s->pid = reap_begin(uids, s->n)) < 0)
        for (int i = 0; i < s->n; i++)
            s->res[s->run[i]] = -1;
}

void bh_qube_ids_reap_begin(uint32_t qid, struct bh_ids_sweep *s)
{
    *s = (struct bh_ids_sweep){ .uids = { (uid_t)(BH_QX_CALL_ID_BASE + (qid & 0xffffu)),
                                          (uid_t)(BH_QX_UNPRIV_ID_BASE + (qid & 0xffffu)) },
                                .pid = -1,
                                .res = { 1, 1 } };
    if (qid == 0) {
        s->res[0] = s->res[1] = 0; /* dom0 never halts; its UID 2^19 + 2^16 has no call of a qube's */
        return;
    }
    sweep_start(s);
}

int bh_qube_ids_reap_end(struct bh_ids_sweep *s)
{
    for (int t = 0;; t++) {
        if (s->pid > 0) {
            uid_t uids[2];
            int res[2];
            for (int i = 0; i < s->n; i++)
                uids[i] = s->uids[s->run[i]];
            reap_end(s->pid, uids, s->n, res);
            for (int i = 0; i < s->n; i++)
                s->res[s->run[i]] = res[i];
            s->pid = -1;
        }
        if (t + 1 >= REAP_TRIES || (s->res[0] != 1 && s->res[1] != 1))
            break;
        sweep_start(s); /* held past the deadline, or killed: once more */
    }
    return s->res[0] == 0 && s->res[1] == 0 ? 0 : -1;
}

int bh_qube_ids_reap(uint32_t qid)
{
    struct bh_ids_sweep s;
    bh_qube_ids_reap_begin(qid, &s);
    return bh_qube_ids_reap_end(&s);
}
