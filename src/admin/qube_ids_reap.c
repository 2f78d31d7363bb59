/* A qube's call identity (the UID of its qrexec calls' dom0 processes) and its daemon
 * identity are per qid, and bulkheadd serves a peer of the call UID as the qube that
 * holds that qid (call_auth.c). qids are reused (model.c gives the lowest free one), so a
 * process of a halted qube's identity that outlived it (a call or dom0 service the qube
 * took over, forked and detached) would be served as the next qube with that qid. When
 * a qube has halted, every process of both UIDs is ended.
 *
 * How: a child drops to the UID (real, effective and saved; with it every capability)
 * and calls kill(-1, SIGKILL), which reaches exactly the processes whose real or saved
 * UID is that UID (kill(2)'s permission rule for an unprivileged sender), never itself,
 * root's or another UID's. Repeated until nothing is left to signal: a process with
 * SIGKILL pending cannot fork, and kill(-1) walks the process list under the lock that
 * fork takes, so a fork bomb is ended within a few passes. */
#include "qube_ids_reap.h"
#include "log.h"
#include "qrexec_ids.h"
#include <errno.h>
#include <grp.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define REAP_PASSES 64

static int reap_uid(uid_t uid)
{
    pid_t pid = fork();
    if (pid < 0) {
        bh_warn("ending processes of uid %u: fork: %s", (unsigned)uid, strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* gid first, while still root; then the uid, which drops every capability */
        if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
            _exit(2);
        if (getuid() != uid || geteuid() != uid)
            _exit(2);
        for (int i = 0; i < REAP_PASSES; i++)
            if (kill(-1, SIGKILL) < 0)
                _exit(errno == ESRCH ? 0 : 3);
        _exit(4); /* still something to signal after every pass */
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR) {
            bh_warn("ending processes of uid %u: waitpid: %s", (unsigned)uid, strerror(errno));
            return -1;
        }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        bh_warn("ending processes of uid %u: the sweep did not finish (status %d)", (unsigned)uid, st);
        return -1;
    }
    return 0;
}

int bh_qube_ids_reap(uint32_t qid)
{
    if (qid == 0)
        return 0; /* dom0 never halts; its UID 2^19 + 2^16 has no call of a qube's */
    int r = 0;
    if (reap_uid((uid_t)(BH_QX_CALL_ID_BASE + (qid & 0xffffu))) < 0)
        r = -1;
    if (reap_uid((uid_t)(BH_QX_UNPRIV_ID_BASE + (qid & 0xffffu))) < 0)
        r = -1;
    return r;
}
