/* Who serves a connection to a qube's qrexec.sock, asked of the kernel rather than of
 * the daemon: the peer of such a connection (SO_PEERCRED) is the process that listened
 * on it, the qube's root monitor, which bulkheadd started with --name, --domid and
 * --agent-uid on its command line. Its unprivileged side, which a compromised qube
 * controls, can change neither that process's memory nor its credentials. */
#pragma once
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

struct bh_qx_daemon_peer {
    char name[64];
    uint32_t qid;
    /* the host UID the qube's agent (or VM bridge) runs as, the first of the qube's
     * BH_QUBE_UID_RANGE; (uid_t)-1 when the daemon was started without --agent-uid (the
     * test stub's world, no bulkheadd): then nothing is known of the qube's UIDs */
    uid_t agent_uid;
};

/* 0 and *out filled if the peer of fd is a real-UID-root process with --name and
 * --domid on its command line; -1 otherwise. */
int bh_qx_daemon_peer(int fd, struct bh_qx_daemon_peer *out);
