/* BH_SANITIZED is defined in AddressSanitizer builds (gcc and clang spell it
 * differently). Allowlist filters log instead of killing there, and the root side of
 * qrexec-daemon keeps ptrace: the sanitizers' runtimes make system calls (clone, ptrace,
 * /proc reads) at a report and at exit that the program itself never makes. */
#pragma once

#if defined(__SANITIZE_ADDRESS__)
#define BH_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BH_SANITIZED 1
#endif
#endif

/* Whether a child may share the daemon's memory until its exec (clone(CLONE_VM |
 * CLONE_VFORK) on a stack of its own: init, bulkhead-procfs, qrexec-daemon). Not in
 * sanitizer builds, which take the copy (fork) instead: ASan's runtime does not know
 * such a task's stack ("ignoring requested __asan_handle_no_return ... false positive
 * error reports may follow"), and CI's sanitizer run saw starts fail that way. */
#ifdef BH_SANITIZED
#define BH_SHARED_LAUNCH_OK 0
#else
#define BH_SHARED_LAUNCH_OK 1
#endif
