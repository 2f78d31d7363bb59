/* qubes.VMExec (in the qube): runs the command that the argument encodes (vmexec.h),
 * directly, without a shell. The argument is the caller's ($1, as the agent runs
 * services), so it is decoded strictly; a bad one runs nothing. */
#include "qrexec/vmexec.h"
#include "log.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    bh_log_init("qubes.VMExec");
    const char *arg = argc > 1 ? argv[1] : getenv("QREXEC_SERVICE_ARGUMENT");
    if (!arg) {
        bh_err("no command (call qubes.VMExec+ENCODED-ARGS)");
        return 2;
    }
    char **cmd = NULL;
    bh_error err = { 0 };
    if (bh_vmexec_decode(arg, &cmd, NULL, &err) < 0) {
        bh_err("%s", err.msg);
        return 2;
    }
    execvp(cmd[0], cmd);
    int e = errno;
    /* the name is the caller's: not echoed (it may hold anything) */
    bh_err("cannot run the command: %s", strerror(e));
    free(cmd);
    return e == ENOENT ? 127 : 126;
}
