/* What a qrexec call runs: "user:command" through a shell, or
 * "user:QUBESRPC service+arg source [name TARGET|keyword KW]" by finding the service in
 * the service directories (full "service+arg" first, then "service"), with $1 = arg and
 * the QREXEC_* environment. Used by the agent in a qube and by the host side for calls
 * whose target is dom0. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <sys/types.h>

/* Qubes' QREXEC_SERVICE_PATH, then ours */
#define BH_QX_DEFAULT_SERVICE_PATH "/run/qubes-rpc:/usr/local/etc/qubes-rpc:/etc/qubes-rpc:/usr/lib/bulkhead/qubes-rpc"

struct bh_qx_cmd {
    char *buf;          /* owned copy of the command line, fields point into it */
    const char *user;
    bool rpc;
    const char *command;      /* !rpc */
    const char *service_full; /* rpc: "service+arg" */
    const char *service;      /* rpc: "service" */
    const char *arg;          /* rpc: "arg" (may be empty) */
    const char *source;       /* rpc: calling qube */
    const char *req_target;   /* rpc: "name X" */
    const char *req_keyword;  /* rpc: "keyword X" */
};

int bh_qx_cmd_parse(const char *cmdline, struct bh_qx_cmd *out, bh_error *err);
void bh_qx_cmd_free(struct bh_qx_cmd *c);

struct bh_qx_spawn_opts {
    const char *service_path; /* colon-separated; NULL: $QREXEC_SERVICE_PATH or the default */
    bool switch_user;         /* as root: become the call's user (the agent in a qube) */
    bool no_stdio;            /* JUST_EXEC: /dev/null for all three */
};

/* Finds a service; returns a malloc'd path or NULL (errno ENOENT). */
char *bh_qx_find_service(const char *path_list, const char *service_full, const char *service);

/* Starts the command. On success *pid and the parent's ends of the child's stdin,
 * stdout, stderr (or -1 with no_stdio). Returns 0, -1 on error, or 127 when the
 * service does not exist (nothing started). */
int bh_qx_spawn(const struct bh_qx_cmd *c, const struct bh_qx_spawn_opts *o, pid_t *pid,
                int *in_fd, int *out_fd, int *err_fd, bh_error *err);
