/* nftables through libnftables: one script, one atomic transaction, in a given network
 * namespace. Nothing is shelled out. */
#pragma once
#include "err.h"

/* Runs script (nft syntax) as one transaction inside nsfd (-1: the caller's
 * namespace). Either all of it takes effect or none. */
int bh_nft_run(int nsfd, const char *script, bh_error *err);
