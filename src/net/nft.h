/* nftables through libnftables: one script, one atomic transaction, in a given network
 * namespace. Nothing is shelled out. */
#pragma once
#include "err.h"

/* Runs script (nft syntax) as one transaction inside nsfd (-1: the caller's
 * namespace). Either all of it takes effect or none. Through the helper process when
 * bh_nft_helper_start made one (nft_helper.c), else in this process. */
int bh_nft_run(int nsfd, const char *script, bh_error *err);

/* The same in two halves, for a caller with other work to do while the transaction
 * runs (a qube's start: its table goes in while the engine prepares the qube).
 * bh_nft_submit hands the script over and returns at once with a ticket (> 0); the
 * helper runs transactions in the order they were handed over, so one submitted
 * before a later bh_nft_run takes effect first. Without a helper it runs here at once
 * and the ticket holds its result. -1 (err): nothing was submitted. */
int bh_nft_submit(int nsfd, const char *script, bh_error *err);
/* Waits for the ticket's transaction: its result as bh_nft_run's. The ticket is gone
 * after (also a ticket that is not, or no longer, known: -1). */
int bh_nft_collect(int ticket, bh_error *err);
/* The ticket's result will not be collected (its caller gave up): it is dropped when
 * it comes, a failure said in the log. */
void bh_nft_forget(int ticket);

/* The same, always in this process (the helper's own runs). */
int bh_nft_run_here(int nsfd, const char *script, bh_error *err);

/* bulkheadd, once at its start: forks the helper that runs every later bh_nft_run
 * (why: nft_helper.c). Without it (or once it failed) runs are made in process. */
int bh_nft_helper_start(bh_error *err);

/* bulkheadd's clean exit: closes the helper's socket (it ends on EOF) and reaps it. */
void bh_nft_helper_stop(void);

