/* Privilege separation of qrexec-daemon (OpenSSH's model): the process that reads what
 * a qube sends runs as an unprivileged host identity of its own, without capabilities,
 * with no_new_privs, undumpable, under an allowlist seccomp filter. Only a small root
 * parent (the monitor) keeps what needs root: forking the call processes that reach
 * bulkheadd, other qubes' daemons and vchan dirs, and dom0 services. */
#pragma once
#include "err.h"
#include "qrexec_ids.h"
#include <stdint.h>
#include <sys/types.h>

/* The identities (qrexec_ids.h): the reader and relays 2^19 + qid; the call processes
 * 2^19 + 2^16 + qid in group BH_QX_CALL_GID. */
uid_t bh_qx_unpriv_id(uint32_t qid);
uid_t bh_qx_call_uid(uint32_t qid);

/* Drops every privilege for good: supplementary groups, gid/uid (real, effective, saved)
 * to id, hence every capability; then no_new_privs and not dumpable. Checks that the
 * effective capability set is empty afterwards. Without root: the switch to the saved
 * IDs a bh_qx_drop_to_keeping parent left; with other saved IDs it fails (the daemon
 * must run as root). Every switch is read back (getresuid/getresgid) before it counts. */
int bh_qx_drop_privileges(uid_t id, bh_error *err);
/* The same to uid and gid (no supplementary groups). */
int bh_qx_drop_to(uid_t uid, gid_t gid, bh_error *err);
/* The same, but `later` stays the saved UID and GID: a fork of this process (never a
 * program it executes: execve makes the saved IDs the effective ones) can then become
 * `later` for good with bh_qx_drop_privileges(later), without root. A call process keeps
 * its qube's unprivileged identity so, for the relay and dom0 pump it forks, which must
 * not keep the call identity (bulkheadd's socket, the daemons'). */
int bh_qx_drop_to_keeping(uid_t uid, gid_t gid, uid_t later, bh_error *err);

/* The allowlist filter of the unprivileged processes: what they use to move bytes over
 * fds they were given (read/write/poll/accept/sendmsg...), memory, time, exiting. No
 * open, no socket, no connect, no fork or exec, no kill. Everything else kills the
 * process (in sanitizer builds it is logged instead: their runtimes use more). */
int bh_qx_seccomp_unpriv(bh_error *err);

/* The allowlist of a call process whose target is a qube (no dom0 program to run):
 * Unix sockets, the target's runtime and vchan dirs, the relay child; no exec, no
 * kill, no other socket family. Kills the process on anything else (logs instead in
 * sanitizer builds, or with $BULKHEAD_QREXEC_CALL_FILTER_LOG set, to find what is
 * missing). Stacks on the monitor's denylist. */
int bh_qx_seccomp_call(bh_error *err);

/* The filter of the root side (the monitor and the call processes it forks, hence the
 * dom0 services they run): a denylist, since those processes reach bulkheadd, other
 * qubes' daemons and run programs, but none of them changes mounts or namespaces,
 * touches another process's memory, loads kernel code or BPF, uses keyrings or io_uring:
 * those fail with EPERM. Defence in depth: the root side parses no qube byte itself. */
int bh_qx_seccomp_root(bh_error *err);
