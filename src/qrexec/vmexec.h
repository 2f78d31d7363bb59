/* qubes.VMExec's argument: a command line as Qubes encodes it (qubesadmin's
 * encode_for_vmexec): the arguments joined by '+', each byte outside [A-Za-z0-9_.]
 * written as "-XX" (upper-case hex), '-' itself as "--". The service runs the decoded
 * argv directly, without a shell, so no quoting can go wrong.
 *
 * The argument is chosen by the caller (a qube, for qube-to-qube calls): decoding is
 * strict (nothing but the alphabet, only well-formed escapes, no NUL, bounded). */
#pragma once
#include "err.h"
#include <stddef.h>

#define BH_VMEXEC_MAX_ARGS 4096
#define BH_VMEXEC_MAX_LEN 65000 /* the service argument, as BH_QX_MAX_SERVICE */

/* Encodes argv[0..argc) into out; returns the length, or -1 if it does not fit. */
int bh_vmexec_encode(char *const *argv, size_t argc, char *out, size_t size);

/* Decodes into a NULL-terminated, malloc'd argv (one allocation: free(*argv_out)).
 * Refuses an empty command, a bad byte or escape, an escaped NUL, too many arguments. */
int bh_vmexec_decode(const char *arg, char ***argv_out, size_t *argc_out, bh_error *err);
