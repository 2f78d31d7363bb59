/* A qube's call identity (the UID of its qrexec calls' dom0 processes) and its daemon
 * identity are per qid, and bulkheadd serves a peer of the call UID as the qube that
 * holds that qid (call_auth.c). qids are reused (model.c gives the lowest free one), so a
 * process of a halted qube's identity that outlived it (a call or dom0 service the qube
 * took over, forked and detached) would be served as the next qube with that qid. When
 * a qube has halted, every process of both UIDs is ended.
 *
 * How: a child drops to the UID (real and effective; with it every capability out of its
 * effective set) and calls kill(-1, SIGKILL), which reaches the processes whose real or
 * saved UID is that UID (kill(2)'s permission rule for an unprivileged sender) and those
 * in a user namespace that UID owns, never itself, nor root's or another UID's
 * otherwise. Repeated until the UID has no other task (uid_alone: one vfork) or, failing
 * that, /proc shows no live process of it. One child sweeps both identities, one after
 * the other, and what it could not finish runs again in a child per UID, which first
 * ends what it can as root (bh_qube_ids_reap_end, reap_begin, root_sweep). A process
 * with SIGKILL pending cannot fork, and kill(-1) walks the process list under the lock
 * that fork takes, so a fork bomb is ended within a few passes. kill(-1)'s own result
 * cannot tell when to stop: it is 0 whenever any other process exists, even if none
 * could be signalled (Linux counts every process it tried), so a loop waiting for ESRCH
 * ran all its passes and warned at every halt. The /proc scan does not count zombies:
 * they run nothing, and their parent (a relay, qrexec-daemon) collects them; but a
 * zombie leader whose other threads still run counts (they do run, with its UIDs:
 * proc_ids.c). */
#include "qube_ids_reap.h"
#include "io.h"
#include "log.h"
#include "loop.h"
#include "proc_ids.h"
#include "qrexec_ids.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/securebits.h>
#include <grp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/prctl.h>
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
    SWEEP_ODD = 6,  /* (bulkheadd's own) the child ended by itself without a result for
                     * the UID */
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

/* The sweep as uid: kill(-1) until the UID has no other process. The child's real and
 * effective UID are uid; its saved UID is uid too, or 0 while another UID is still to
 * be swept (below). */
static int sweep_uid(uid_t uid, bool fast)
{
    if (geteuid() != uid)
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

/* The child gives each UID's result on its progress pipe (fd 3) as soon as it has one, a
 * byte of index << 4 | result, so that a child held or killed in its second UID still
 * tells how its first went; only a result told counts. Its exit status is SWEEP_FDS when
 * it could not set itself up (nothing told), else 0. */
static void tell(int i, int r)
{
    uint8_t b = (uint8_t)(i << 4 | r);
    (void)!write(3, &b, 1);
}

/* A retry's pass as root, before any drop (a process of the UID held or killed the last
 * child in the moment between its drop and its kill(-1)): every process whose real or
 * saved UID is uid, found in /proc, gets SIGKILL through a pidfd, its UIDs read again
 * once the pidfd pins it (the pid may have been reused since the walk read them). No
 * process of the UID can signal root: nothing holds this pass. A few passes end what
 * they forked meanwhile; kill(-1) as the UID does the rest. */
struct root_pass {
    uid_t uid;
    int hit;
    int64_t until; /* bh_now_ms */
};

/* The pass's own bound: processes that fork ahead of a walk in pid order could keep it
 * going; kill(-1) as the UID (atomic against fork) ends what it leaves. */
#define ROOT_PASS_MS 200

static bool root_kill(const struct bh_proc_ids *p, void *ctx)
{
    struct root_pass *c = ctx;
    if (!p->known || (p->real != c->uid && p->saved != c->uid))
        return true;
    int fd = (int)syscall(SYS_pidfd_open, p->pid, 0);
    if (fd < 0)
        return true;
    struct bh_proc_ids now;
    if (bh_proc_ids_of(p->pid, &now) && now.known && (now.real == c->uid || now.saved == c->uid) &&
        syscall(SYS_pidfd_send_signal, fd, SIGKILL, NULL, 0) == 0)
        c->hit++;
    close(fd);
    return bh_now_ms() < c->until;
}

static void root_sweep(uid_t uid)
{
    struct root_pass c = { .uid = uid, .until = bh_now_ms() + ROOT_PASS_MS };
    for (int i = 0; i < 4 && bh_now_ms() < c.until; i++) {
        c.hit = 0;
        if (bh_proc_each(getpid(), root_kill, &c) < 0 || c.hit == 0)
            break;
    }
}

/* One child sweeps the n UIDs one after the other (a fork of bulkheadd costs
 * milliseconds on a guest where page faults trap; one pass of a sweep with nothing left
 * to end, a kill(-1) and a vfork, costs tens of microseconds). For every UID but the
 * last it keeps 0 as its saved UID and GID, so that it can become root again and drop to
 * the next: kill(-1) reaches the same processes (kill(2)'s rule looks at the sender's
 * real and effective UID; its effective capability set is empty meanwhile: it drops only
 * from euid 0 without SECBIT_NO_SETUID_FIXUP, and such a drop empties it), and a process
 * of that UID cannot trace it or read its memory (a tracer's UID must equal all three of
 * the target's; and it is made non-dumpable while its saved UID is 0). Meanwhile it
 * holds root's permitted capabilities: it runs nothing but the loop below and reads
 * nothing of the qube's but /proc's status lines (proc_ids.c). The last UID it takes
 * entirely. A process of the UID it holds can signal it (its real UID is that UID): stop
 * it before its kill(-1), or kill it; a process of the other UID cannot while it holds
 * the first. bulkheadd's caller (bh_qube_ids_reap_end) then sweeps what was left in a
 * child per UID, so that one UID's processes never keep the other's from being swept.
 * The daemon identity goes first: the call identity, which a qube's calls to dom0 run
 * as, cannot hold the child there. */
static pid_t reap_begin(const uid_t *uids, int n, int progress, bool root_first)
{
    pid_t pid = fork();
    if (pid < 0) {
        for (int i = 0; i < n; i++)
            bh_warn("ending processes of uid %u: fork: %s", (unsigned)uids[i], strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* It becomes the qube's UIDs: it holds none of bulkheadd's fds (close-on-exec does
         * nothing here, the child never execs) but its progress pipe, as fd 3; stdio
         * stays. */
        if ((progress != 3 && dup2(progress, 3) != 3) || close_range(4, ~0U, 0) < 0) {
            bh_warn("ending processes of uid %u: close_range: %s", (unsigned)uids[0], strerror(errno));
            _exit(SWEEP_FDS);
        }
        /* without the limit a vfork always succeeds: the fast test would say "alone". Set
         * before the drop: from the drop on, every process of the UID may signal this
         * one, so its first kill(-1) comes right after it. */
        bool fast = setrlimit(RLIMIT_NPROC, &(struct rlimit){ 2, 2 }) == 0;
        /* the drop must empty the effective capability set (kill(-1) with CAP_KILL would
         * reach every process of the host): it does unless SECBIT_NO_SETUID_FIXUP was
         * inherited (a service manager's SecureBits=, say) */
        int secbits = prctl(PR_GET_SECUREBITS);
        bool root = geteuid() == 0 && secbits >= 0 && !(secbits & SECBIT_NO_SETUID_FIXUP);
        if (!root)
            bh_warn("ending processes of uid %u: a drop from euid %u with securebits 0x%x would keep capabilities",
                    (unsigned)uids[0], (unsigned)geteuid(), (unsigned)secbits);
        else if (setgroups(0, NULL) < 0) {
            bh_warn("ending processes of uid %u: setgroups: %s", (unsigned)uids[0], strerror(errno));
            root = false;
        }
        /* Signals: a process of the UID can send them once the child has dropped; none
         * but SIGKILL and SIGSTOP do anything here (the deadline covers those), and no
         * core of it is ever written. What runs between the drop and the first kill(-1)
         * is what such a process can stop: its first system calls are made once here,
         * while none can. */
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        (void)setrlimit(RLIMIT_CORE, &(struct rlimit){ 0, 0 });
        (void)prctl(PR_GET_DUMPABLE);
        (void)geteuid();
        for (int i = 0; root && root_first && i < n; i++)
            root_sweep(uids[i]);
        for (int i = 0; i < n; i++) {
            uid_t uid = uids[i];
            bool last = i + 1 == n;
            int r = SWEEP_DROP;
            /* gid first, while still root; then the uid, which takes every capability out
             * of the effective set; its saved UID stays 0 until the child is non-dumpable
             * (a change of effective UID resets that to fs.suid_dumpable, and with saved
             * UID 0 no process of the UID can trace it meanwhile), and for the last UID it
             * then goes too, with every capability */
            if (!root)
                ;
            else if (setresgid(uid, uid, last ? uid : 0) < 0 || setresuid(uid, uid, 0) < 0)
                bh_warn("ending processes of uid %u: dropping to it: %s", (unsigned)uid, strerror(errno));
            else if (prctl(PR_SET_DUMPABLE, 0) < 0)
                bh_warn("ending processes of uid %u: PR_SET_DUMPABLE: %s", (unsigned)uid, strerror(errno));
            else if (last && setresuid(uid, uid, uid) < 0)
                bh_warn("ending processes of uid %u: dropping to it: %s", (unsigned)uid, strerror(errno));
            else
                r = sweep_uid(uid, fast);
            tell(i, r);
            /* back to root for the next UID (allowed: 0 is the saved UID) */
            if (!last && root && (setresuid(0, 0, 0) < 0 || setresgid(0, 0, 0) < 0)) {
                bh_warn("ending processes of uid %u: back to root after it: %s", (unsigned)uid, strerror(errno));
                root = false;
            }
        }
        _exit(0);
    }
    return pid;
}

/* A sweep takes milliseconds: a try whose children have not ended within this is over
 * (they are killed: held by a process of a UID they had taken, see reap_begin) and what
 * they had not done is run again. */
#define REAP_DEADLINE_MS 2000
#define REAP_TRIES 3

/* Reads what the child told of its UIDs (res[i] set for those it finished). */
static void read_progress(int fd, int n, int *res)
{
    uint8_t b[8];
    ssize_t got;
    while ((got = read(fd, b, sizeof b)) > 0)
        for (ssize_t k = 0; k < got; k++)
            if ((b[k] >> 4) < n)
                res[b[k] >> 4] = b[k] & 0xf;
}

/* Waits up to ms for the child sweeping the n UIDs and sets res[i] for each: 0 done, -1
 * failed, 1 to run again (held past the deadline and killed, or killed by a process of a
 * UID, before it had finished that UID) */
static void reap_end(pid_t pid, int progress, const uid_t *uids, int n, int ms, int *res)
{
    int told[2] = { -1, -1 }, st = 0;
    bool held = false, waited = false;
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd >= 0) {
        held = bh_pidfd_wait(pfd, ms) != 1;
        close(pfd);
    } else {
        /* no pidfd (EMFILE): the same deadline, by polling */
        pid_t w = 0;
        for (int t = 0; t <= ms && w == 0; t++) {
            w = waitpid(pid, &st, WNOHANG);
            if (w < 0 && errno == EINTR)
                w = 0;
            if (w == 0)
                nanosleep(&(struct timespec){ .tv_nsec = 1000000 }, NULL);
        }
        waited = w == pid;
        held = w == 0;
    }
    if (held)
        kill(pid, SIGKILL);
    while (!waited) {
        if (waitpid(pid, &st, 0) == pid) {
            waited = true;
        } else if (errno != EINTR) {
            for (int i = 0; i < n; i++)
                bh_warn("ending processes of uid %u: waitpid: %s", (unsigned)uids[i], strerror(errno));
            break;
        }
    }
    read_progress(progress, n, told);
    for (int i = 0; i < n; i++) {
        /* what it told; nothing told by a child that ended by itself is a failure (its
         * exit status says which), by one held or killed a try to run again */
        int code = told[i];
        if (code < 0 && waited && WIFEXITED(st))
            code = WEXITSTATUS(st) ? WEXITSTATUS(st) : SWEEP_ODD;
        if (code == SWEEP_DONE) {
            res[i] = 0;
        } else if (code > 0 || !waited) {
            bh_warn("ending processes of uid %u: the sweep failed: %s", (unsigned)uids[i], sweep_failed(code));
            res[i] = -1;
        } else if (held) {
            bh_warn("ending processes of uid %u: the sweep was held for %d ms (stopped by one of them?): killed",
                    (unsigned)uids[i], REAP_DEADLINE_MS);
            res[i] = 1;
        } else {
            /* once dropped, the child is the UID's too: a process of it can kill it before
             * its first kill(-1) (a leftover that loops on kill(-1) itself); try again */
            bh_warn("ending processes of uid %u: the sweep's child was killed (signal %d): once more",
                    (unsigned)uids[i], WIFSIGNALED(st) ? WTERMSIG(st) : 0);
            res[i] = 1;
        }
    }
}

/* Forks the children for the UIDs still to run (res 1): one for all of them on the first
 * try, one per UID on the next (so that a UID whose processes hold the child cannot keep
 * the other from being swept), which then first ends what it finds of its UID as root
 * (root_sweep: nothing of the UID can hold that). */
static void sweep_start(struct bh_ids_sweep *s, bool apart)
{
    s->nkids = 0;
    for (int i = 0; i < 2; i++) {
        if (s->res[i] != 1)
            continue;
        if (apart || s->nkids == 0)
            s->kids[s->nkids++] = (struct bh_ids_kid){ .pid = -1, .progress = -1 };
        struct bh_ids_kid *k = &s->kids[s->nkids - 1];
        k->run[k->n++] = i;
    }
    for (int j = 0; j < s->nkids; j++) {
        struct bh_ids_kid *k = &s->kids[j];
        uid_t uids[2];
        for (int i = 0; i < k->n; i++)
            uids[i] = s->uids[k->run[i]];
        int p[2];
        if (pipe2(p, O_CLOEXEC | O_NONBLOCK) < 0) {
            for (int i = 0; i < k->n; i++) {
                bh_warn("ending processes of uid %u: pipe: %s", (unsigned)uids[i], strerror(errno));
                s->res[k->run[i]] = -1;
            }
            k->n = 0;
            continue;
        }
        k->pid = reap_begin(uids, k->n, p[1], apart);
        close(p[1]);
        k->progress = p[0];
        if (k->pid < 0) {
            for (int i = 0; i < k->n; i++)
                s->res[k->run[i]] = -1;
            close(k->progress);
            k->progress = -1;
            k->n = 0;
        }
    }
}

void bh_qube_ids_reap_begin(uint32_t qid, struct bh_ids_sweep *s)
{
    /* the daemon identity first (see reap_begin) */
    *s = (struct bh_ids_sweep){ .uids = { (uid_t)(BH_QX_UNPRIV_ID_BASE + (qid & 0xffffu)),
                                          (uid_t)(BH_QX_CALL_ID_BASE + (qid & 0xffffu)) },
                                .res = { 1, 1 } };
    if (qid == 0) {
        s->res[0] = s->res[1] = 0; /* dom0 never halts; its UID 2^19 + 2^16 has no call of a qube's */
        return;
    }
    sweep_start(s, false);
}

int bh_qube_ids_reap_end(struct bh_ids_sweep *s)
{
    for (int t = 0;; t++) {
        /* one deadline per try, whatever number of children it has */
        int64_t t0 = bh_now_ms();
        for (int j = 0; j < s->nkids; j++) {
            struct bh_ids_kid *k = &s->kids[j];
            if (k->n == 0)
                continue;
            uid_t uids[2];
            int res[2];
            for (int i = 0; i < k->n; i++)
                uids[i] = s->uids[k->run[i]];
            int64_t spent = bh_now_ms() - t0;
            int left = spent >= REAP_DEADLINE_MS ? 0 : REAP_DEADLINE_MS - (int)spent;
            reap_end(k->pid, k->progress, uids, k->n, left, res);
            close(k->progress);
            for (int i = 0; i < k->n; i++)
                s->res[k->run[i]] = res[i];
            k->n = 0;
        }
        s->nkids = 0;
        if (t + 1 >= REAP_TRIES || (s->res[0] != 1 && s->res[1] != 1))
            break;
        sweep_start(s, true); /* held past the deadline, or killed: once more, a child per UID */
    }
    for (int i = 0; i < 2; i++)
        if (s->res[i] == 1)
            bh_warn("ending processes of uid %u: not swept after %d tries", (unsigned)s->uids[i], REAP_TRIES);
    return s->res[0] == 0 && s->res[1] == 0 ? 0 : -1;
}

int bh_qube_ids_reap(uint32_t qid)
{
    struct bh_ids_sweep s;
    bh_qube_ids_reap_begin(qid, &s);
    return bh_qube_ids_reap_end(&s);
}
