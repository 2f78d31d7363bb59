/* Ending every host process left with a halted qube's qrexec identities, before its qid
 * can be given to another qube (docs/qrexec.md, "Privilege separation"). */
#pragma once
#include <stdint.h>
#include <sys/types.h>

/* Kills (SIGKILL) every process whose real or saved UID is qid's call identity
 * (BH_QX_CALL_ID_BASE + qid) or its unprivileged daemon identity (BH_QX_UNPRIV_ID_BASE
 * + qid). Returns 0, or -1 if a UID could not be swept (warned). */
int bh_qube_ids_reap(uint32_t qid);

/* The same in two steps, for a caller with other work to do while the sweep runs (the
 * Kill's child: the qube dies meanwhile). begin forks the sweep's child and never waits;
 * end waits for it (retried if held past its deadline) and gives what bh_qube_ids_reap
 * would. */
struct bh_ids_kid {
    pid_t pid;    /* the child sweeping the UIDs of run[0..n-1] (n 0: none) */
    int progress; /* the read end of its progress pipe */
    int run[2], n;
};
struct bh_ids_sweep {
    uid_t uids[2];
    int res[2]; /* 0 done, -1 failed, 1 to run (again) */
    struct bh_ids_kid kids[2];
    int nkids;
};
void bh_qube_ids_reap_begin(uint32_t qid, struct bh_ids_sweep *s);
int bh_qube_ids_reap_end(struct bh_ids_sweep *s);
