/* The host user and group IDs that Bulkhead takes for itself. None has an /etc/passwd
 * entry; they must be nobody else's, which bulkheadd checks at start against the
 * subordinate ranges that /etc/subuid and /etc/subgid give to users (bh_subid_check):
 * a user given one of these IDs could map it in a user namespace of their own and
 * become a qube's root, a qrexec process, or the group that reaches bulkheadd's socket.
 *
 *   [2^19, 2^20)                    qrexec-daemon and bulkhead-procfs identities per
 *                                   qube (qrexec_ids.h)
 *   [2^20, 2^20 + 2^16 * (qid+1))   qube qid's 65536 UIDs/GIDs (its user namespace) */
#pragma once
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/types.h>

#define BH_HOST_IDS_FIRST (1u << 19)
#define BH_QUBE_UID_FIRST (1u << 20)
#define BH_QUBE_UID_RANGE 65536u
/* The highest qid: its range must end below (uid_t)-1, which is no ID (2^20 + 65519 *
 * 2^16 is exactly 2^32 - 2^16, so qid 65518's range ends at 2^32 - 2^16 - 1). */
#define BH_QID_MAX 65518u
#define BH_HOST_IDS_END ((uint64_t)BH_QUBE_UID_FIRST + (uint64_t)(BH_QID_MAX + 1) * BH_QUBE_UID_RANGE)
_Static_assert(BH_HOST_IDS_END < 0xffffffffull, "qube ID ranges must not reach (uid_t)-1");

/* A host UID given on a command line (--agent-uid): decimal digits only, below
 * (uid_t)-1. strtoul alone reads "" or "x" as 0, and a peer check against the range
 * from 0 would take root and every system UID as the qube. */
static inline bool bh_parse_host_uid(const char *s, uid_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v >= (unsigned long long)(uid_t)-1)
        return false;
    *out = (uid_t)v;
    return true;
}
