/* Bulkhead's host IDs (host_ids.h) against the subordinate ID ranges that the host gives
 * its users (/etc/subuid, /etc/subgid, shadow's subid(5) format NAME:START:COUNT). */
#pragma once
#include "err.h"
#include <stdint.h>

/* 0 when no range in the file at path meets [lo, hi) (a missing file has none); -1 and
 * an error naming the first user and range that does. Lines that are not NAME:START:COUNT
 * with decimal numbers are skipped, as newuidmap skips them. */
int bh_subid_check(const char *path, uint64_t lo, uint64_t hi, bh_error *err);
