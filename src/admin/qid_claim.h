/* Host-wide claims on qids. A qid is a qube's host identity (host_ids.h, qrexec_ids.h:
 * its UID range, its qrexec and procfs UIDs), so two bulkheadd instances on one host
 * (two test runs, a test beside `make run`) must never give the same qid to a qube:
 * their qubes would share host UIDs, and one daemon's sweep of a halted qube's UIDs
 * (qube_ids_reap.c) would kill the other's processes.
 *
 * Every qid a bulkheadd holds (each qube in its store but dom0, whose qid-0 identities
 * no process ever takes) is claimed with an open file description lock (F_OFD_SETLK) on
 * byte <qid> of one host file, BH_QID_CLAIMS_PATH. The kernel does the bookkeeping: a
 * claim held elsewhere is refused at once, and every claim of a daemon goes when it
 * exits, however it exits (a crash included), so there is nothing stale to collect.
 * Anything else that takes a qid's identities on this host claims it the same way (the
 * tests do for the qids they give engines directly: tests/integration/qid_slots.py); a
 * classic POSIX record lock on the byte conflicts with these locks as well. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stdint.h>

#define BH_QID_CLAIMS_PATH "/run/bulkhead-qids"

/* Opens (creating, 0600) the claims file at path: an fd (close-on-exec), or -1. */
int bh_qid_claims_open(const char *path, bh_error *err);

/* Claims qid for the open file description fd. 0: claimed (or already ours); -1 with
 * err->errnum EAGAIN when another holds it (the message says who, where the kernel
 * tells: a POSIX lock's holder pid; an OFD lock, i.e. another bulkheadd, has none), or
 * another errno when the lock call itself failed. */
int bh_qid_claim(int fd, uint32_t qid, bh_error *err);

/* Gives the claim up (a removed qube's qid may be any daemon's again). */
void bh_qid_release(int fd, uint32_t qid);
