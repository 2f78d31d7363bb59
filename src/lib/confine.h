/* Confining a helper process that handles bytes a qube or the network controls
 * (bulkhead-procfs, the network's resolver, qrexec-daemon's unprivileged side and call
 * processes, the storage import's e2fsck): each step one call, written once, so every
 * helper takes it the same way. Each helper calls the steps it needs in its own order;
 * the order matters (the bounding set before the UID change, which loses CAP_SETPCAP;
 * no_new_privs before an unprivileged seccomp load). Each returns 0, or -1 with err
 * filled (err may be NULL, as in a forked child that only exits on failure). */
#pragma once
#include "err.h"
#include "sanitized.h"
#include <seccomp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/resource.h>
#include <sys/types.h>

/* Empties the capability bounding set: nothing exec'd later can regain a capability.
 * Needs CAP_SETPCAP, so it comes before bh_confine_ids. */
int bh_confine_bounding_set(bh_error *err);

/* Drops to uid/gid for good: no supplementary groups, then the GID, then the UID (real,
 * effective and saved). With all three UIDs non-zero the kernel clears the effective
 * and permitted capability sets (not the inheritable one: bh_confine_clear_caps).
 * Checks afterwards that no supplementary group is left and every ID is the new one. */
int bh_confine_ids(uid_t uid, gid_t gid, bh_error *err);
/* Whether the real and effective UID are uid and the saved one saved_uid, and the same
 * for the GIDs, read back from the kernel (getresuid/getresgid): every ID switch checks
 * that it took before the process goes on, and fails closed otherwise. */
int bh_confine_ids_are(uid_t uid, gid_t gid, uid_t saved_uid, gid_t saved_gid, bh_error *err);

/* Empties the effective, permitted and inheritable capability sets. */
int bh_confine_clear_caps(bh_error *err);
/* Whether the effective, permitted and inheritable capability sets are all empty. */
bool bh_confine_caps_empty(void);

/* no_new_privs: no exec gains privileges (setuid files, file capabilities). */
int bh_confine_no_new_privs(bh_error *err);
/* Not dumpable: no ptrace or /proc/PID/mem even by the same UID, no core file. */
int bh_confine_undumpable(bh_error *err);

/* Sets each resource's soft and hard limit to its value. */
struct bh_rlimit {
    int resource; /* RLIMIT_* */
    rlim_t value;
};
int bh_confine_rlimits(const struct bh_rlimit *limits, size_t n, bh_error *err);

/* seccomp allowlists. The default action of an allowlist: kill the process; in
 * sanitizer builds (sanitized.h) log instead. */
uint32_t bh_allowlist_default(void);
/* A rule with action for each named system call (names this architecture lacks are
 * skipped): 0 or libseccomp's negative errno. */
int bh_seccomp_add_names(scmp_filter_ctx ctx, uint32_t action, const char *const names[], size_t n);
/* A new filter with default action def that allows the named calls, and mmap and
 * mprotect only without PROT_EXEC (malloc maps memory; nothing may become executable,
 * so no code can be brought in). The caller adds its own conditional rules, then loads
 * it with bh_seccomp_load. NULL with err set on failure. */
scmp_filter_ctx bh_allowlist_new(uint32_t def, const char *const names[], size_t n, bh_error *err);
/* Loads ctx unless rc (the result of the caller's own rules) is an error, and releases
 * it either way: 0, or -1 with err set. */
int bh_seccomp_load(scmp_filter_ctx ctx, int rc, bh_error *err);
