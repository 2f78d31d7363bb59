/* The dom0 end of a call to a qube (qrexec-client, qvm-run, qvm-console, qvm-copy-to-vm in
 * dom0): ask the qube's daemon for a data port, serve the data stream in the qube's vchan
 * dir, pump stdio, return the remote exit code (125: qrexec itself failed). */
#pragma once
#include <stdbool.h>

struct bh_qx_call {
    const char *runtime;   /* NULL: $BULKHEAD_RUNTIME or /run/bulkhead */
    const char *qube;
    const char *cmdline;   /* "USER:command" or "USER:QUBESRPC service+arg dom0" */
    bool just_exec;        /* -e: JUST_EXEC, do not stream */
    int in_fd, out_fd, err_fd; /* local ends: what we send (stdin), where output goes */
    bool filter_out, filter_err;
    int timeout_s;         /* data connection timeout */
    char *const *local_argv; /* run this locally with its stdin/stdout as the call's */
};

int bh_qx_call_run(const struct bh_qx_call *c);
