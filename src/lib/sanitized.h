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
