#include "proc_ids.h"
#include "io.h"
#include "qrexec_ids.h"
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A zombie leader whose group still has live threads: the leader exited alone
 * (pthread_exit, or SYS_exit, in the main thread) and stays State Z until the last
 * thread ends, while those threads run on with the group's UIDs. Its Threads count (the
 * group's nr_threads) still includes them; a group that has wholly exited and waits
 * only to be reaped shows 1. No Threads line within the buffer (only a long Groups line
 * can push it out, and our identities have none) counts as live: a dead zombie taken for
 * live costs a skipped qid or another sweep pass until its parent reaps it, a live group
 * taken for dead would give its UIDs to a second qube. */
static bool zombie_group_lives(const char *buf)
{
    const char *t = strstr(buf, "\nThreads:\t");
    unsigned long n;
    return !t || sscanf(t + 10, "%lu", &n) != 1 || n > 1;
}

/* /proc/<pid>/status of one process: false when it is gone, dead, or a zombie whose
 * whole thread group has exited. A stack buffer: the Uid line is within the first 1 KiB
 * (no status line before it is long); a zombie has no Vm lines, so its Threads line is
 * within ~1 KiB too. */
static bool read_status(const char *pid, struct bh_proc_ids *p)
{
    char path[64], buf[2048];
    snprintf(path, sizeof path, "/proc/%s/status", pid);
    if (bh_read_small(path, buf, sizeof buf) <= 0)
        return false; /* gone meanwhile */
    const char *st = strstr(buf, "\nState:\t");
    if (st && (st[8] == 'X' || (st[8] == 'Z' && !zombie_group_lives(buf))))
        return false;
    const char *u = strstr(buf, "\nUid:\t");
    unsigned long real, eff, saved;
    p->known = u && sscanf(u + 6, "%lu %lu %lu", &real, &eff, &saved) == 3;
    if (p->known) {
        p->real = (uid_t)real;
        p->eff = (uid_t)eff;
        p->saved = (uid_t)saved;
    }
    return true;
}

bool bh_proc_ids_of(pid_t pid, struct bh_proc_ids *p)
{
    char name[24];
    snprintf(name, sizeof name, "%d", (int)pid);
    *p = (struct bh_proc_ids){ .pid = pid };
    return read_status(name, p);
}

int bh_proc_each(pid_t skip, bool (*fn)(const struct bh_proc_ids *p, void *ctx), void *ctx)
{
    DIR *d = opendir("/proc");
    if (!d)
        return -1;
    bool more = true;
    int ret = 0;
    while (more) {
        /* readdir's NULL is both the end and an error: only errno tells them apart, and
         * a walk cut short must not pass for a complete one (a held qid handed out, a
         * sweep ended with processes left) */
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            ret = errno ? -1 : 0;
            break;
        }
        if (e->d_name[0] < '1' || e->d_name[0] > '9')
            continue;
        struct bh_proc_ids p = { .pid = (pid_t)strtol(e->d_name, NULL, 10) };
        if (p.pid != skip && read_status(e->d_name, &p))
            more = fn(&p, ctx);
    }
    int saved = errno;
    closedir(d);
    errno = saved;
    return ret;
}

/* The qid whose identity host UID uid is, or -1: its UID range, or (qrexec_too) its
 * qrexec-daemon, call or procfs UID. */
static int64_t qid_of(uid_t uid, bool qrexec_too)
{
    if (uid >= BH_QUBE_UID_FIRST && (uint64_t)uid < BH_HOST_IDS_END)
        return (uid - BH_QUBE_UID_FIRST) / BH_QUBE_UID_RANGE;
    if (!qrexec_too)
        return -1;
    const uint32_t bases[] = { BH_QX_UNPRIV_ID_BASE, BH_QX_CALL_ID_BASE, BH_PROCFS_ID_BASE };
    for (size_t i = 0; i < sizeof bases / sizeof bases[0]; i++)
        if (uid >= bases[i] && uid - bases[i] <= BH_QID_MAX)
            return uid - bases[i];
    return -1;
}

struct live_ctx {
    struct bh_qid_set *set; /* mark every qid found; or */
    int64_t want;           /* stop at the first process of this qid */
    pid_t found;
    bool qrexec_too;
};

static bool mark(const struct bh_proc_ids *p, void *ctx)
{
    struct live_ctx *c = ctx;
    /* No UIDs read: nothing to say of any qid. Not taken as "holds every qid": a status
     * that was read at all has its Uid line (the kernel writes it within the first
     * ~300 bytes; a process gone mid-read reads as gone, ESRCH), so this is reached only
     * if the kernel's format changed, and then for every process at once: the
     * conservative answer would refuse every new qube on that host for good. */
    if (!p->known)
        return true;
    const uid_t ids[] = { p->real, p->eff, p->saved };
    for (size_t i = 0; i < 3; i++) {
        int64_t q = qid_of(ids[i], c->qrexec_too);
        if (q < 0)
            continue;
        if (c->set)
            c->set->w[q / 64] |= 1ull << (q % 64);
        else if (q == c->want) {
            c->found = p->pid;
            return false;
        }
    }
    return true;
}

/* A walk that readdir cut short is made again from the start: one transient error
 * (ENOMEM, say) need not refuse a create or the daemon's start. Only a walk that fails
 * every time fails (-1 and the last errno). */
#define WALK_TRIES 3

int bh_qids_live(struct bh_qid_set *s, bool qrexec_too)
{
    for (int t = 0; t < WALK_TRIES; t++) {
        memset(s, 0, sizeof *s);
        struct live_ctx c = { .set = s, .qrexec_too = qrexec_too };
        if (bh_proc_each(0, mark, &c) == 0)
            return 0;
    }
    return -1;
}

pid_t bh_qid_live_pid(uint32_t qid, bool qrexec_too)
{
    for (int t = 0; t < WALK_TRIES; t++) {
        struct live_ctx c = { .want = qid, .qrexec_too = qrexec_too };
        if (bh_proc_each(0, mark, &c) == 0) /* also when it stopped at a holder */
            return c.found;
    }
    return -1;
}
