/* nftables through libnftables: one script, one atomic transaction, in a given network
 * namespace. Nothing is shelled out. */
#pragma once
#include "err.h"

/* Runs script (nft syntax) as one transaction inside nsfd (-1: the caller's
 * namespace). Either all of it takes effect or none. Through the helper process when
 * bh_nft_helper_start made one (nft_helper.c), else in this process. */
int bh_nft_run(int nsfd, const char *script, bh_error *err);

/* The same, always in this process (the helper's own runs). */
int bh_nft_run_here(int nsfd, const char *script, bh_error *err);

/* bulkheadd, once at its start: forks the helper that runs every later bh_nft_run
 * (why: nft_helper.c). Without it (or once it failed) runs are made in process. */
int bh_nft_helper_start(bh_error *err);

/* bulkheadd's clean exit: closes the helper's socket (it ends on EOF) and reaps it. */
void bh_nft_helper_stop(void);

