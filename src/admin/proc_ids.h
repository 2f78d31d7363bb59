/* Which host identities live processes hold now: one walk of /proc, each process's
 * status read once (State, and the real, effective and saved UIDs). Read by the halt's
 * sweep of a qube's qrexec UIDs (qube_ids_reap.c) and by the qid choice, which must not
 * give a qube host UIDs that another daemon's running qube still uses (model.c,
 * docs/architecture.md "Host identities"). */
#pragma once
#include "host_ids.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct bh_proc_ids {
    pid_t pid;
    bool known; /* false: its status did not parse (the UIDs are unset) */
    uid_t real, eff, saved;
};

/* Calls fn for every live process in /proc but skip (0: none), until fn returns false.
 * Live: not dead, and not a zombie unless it is the leader of a thread group whose other
 * threads still run (its Threads count above 1: they hold its UIDs). -1 (errno set) when
 * /proc cannot be listed or its listing fails part way (fn has then seen only some).
 * Allocates nothing but opendir's directory stream: it also runs in the sweep's child,
 * dropped to a UID. */
int bh_proc_each(pid_t skip, bool (*fn)(const struct bh_proc_ids *p, void *ctx), void *ctx);

/* The one process pid, as bh_proc_each sees it; false when it is not live. */
bool bh_proc_ids_of(pid_t pid, struct bh_proc_ids *p);

/* A set of qids, one bit each (8 KiB). */
struct bh_qid_set {
    uint64_t w[(BH_QID_MAX + 64) / 64];
};
static inline bool bh_qid_set_has(const struct bh_qid_set *s, uint32_t qid)
{
    return qid <= BH_QID_MAX && (s->w[qid / 64] >> (qid % 64)) & 1;
}

/* Which qids' identities live processes hold, in one walk: a qid is in s when a live
 * process has as real, effective or saved UID one in its UID range (2^20 + 2^16 * qid,
 * host_ids.h) or, with qrexec_too, its qrexec-daemon, call or procfs UID (qrexec_ids.h).
 * -1 (errno set) when /proc cannot be read through (a walk cut short is made again,
 * up to three times). */
int bh_qids_live(struct bh_qid_set *s, bool qrexec_too);

/* The first live process found holding qid's identities (as bh_qids_live), 0 if none,
 * -1 (errno set) when /proc could not be read through without finding one (three
 * walks, as bh_qids_live). */
pid_t bh_qid_live_pid(uint32_t qid, bool qrexec_too);
