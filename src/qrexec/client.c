#include "client.h"
#include "cleanup.h"
#include "daemon_paths.h"
#include "daemon_peer.h"
#include "host_ids.h"
#include "io.h"
#include "proto.h"
#include "stream.h"
#include "vchan.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

int bh_qx_call_run(const struct bh_qx_call *c)
{
    signal(SIGPIPE, SIG_IGN);
    const char *rt = bh_qx_runtime(c->runtime);
    char spath[4096], vdir[4096];
    if (bh_qx_qube_path(spath, sizeof spath, rt, c->qube, "qrexec.sock") < 0 ||
        bh_qx_qube_path(vdir, sizeof vdir, rt, c->qube, "vchan") < 0) {
        fprintf(stderr, "qrexec-client: path too long\n");
        return 125;
    }
    bh_error err = { 0 };
    _cleanup_close_ int d = bh_unix_connect(spath, &err);
    if (d < 0) {
        fprintf(stderr, "qrexec-client: qube %s: qrexec not available (%s)\n", c->qube, err.msg);
        return 125;
    }
    uint32_t ver, theirs = 0;
    size_t n = strlen(c->cmdline) + 1;
    if (n < 2 || n > BH_QX_MAX_CMDLINE) {
        fprintf(stderr, "qrexec-client: command line empty or too long\n");
        return 125;
    }
    /* Our HELLO and the command go out together, before the daemon's HELLO is read: one
     * round trip less per call (the command does not depend on the version agreed; a
     * daemon that refuses our version closes, and we say so below). */
    uint32_t type = c->just_exec ? BH_QX_MSG_JUST_EXEC : BH_QX_MSG_EXEC_CMDLINE;
    if (bh_qx_send_hello_v(d, BH_QX_VERSION) < 0 || bh_qx_send_exec(d, type, 0, 0, c->cmdline, n) < 0) {
        perror("qrexec-client: sending command");
        return 125;
    }
    if (bh_qx_recv_hello(d, BH_QX_FROM_CLIENT, &theirs, &err) < 0 ||
        bh_qx_negotiate(BH_QX_VERSION, theirs, &ver, &err) < 0) {
        fprintf(stderr, "qrexec-client: %s\n", err.msg);
        return 125;
    }
    uint8_t rep[16];
    if (bh_read_all(d, rep, 16) != 16 || get32(rep) != type || get32(rep + 4) != 8) {
        fprintf(stderr, "qrexec-client: the daemon refused the command\n");
        return 125;
    }
    uint32_t qid = get32(rep + 8), port = get32(rep + 12);
    /* Who may connect to our data socket: the qube's side only (its agent or VM bridge,
     * one of its host UIDs, which bulkheadd gave its daemon as --agent-uid). Another
     * qube's call process reaches the qube's vchan dir too (1777, or 1770 with the call
     * group) and would otherwise take this command's stream: it is dropped. A daemon
     * without --agent-uid (no bulkheadd: the test stub's world) names no UIDs. */
    struct bh_qx_daemon_peer peer = { .agent_uid = (uid_t)-1 };
    bool known = bh_qx_daemon_peer(d, &peer) == 0;
    if (known && peer.agent_uid != (uid_t)-1 && peer.qid != qid) {
        fprintf(stderr, "qrexec-client: the daemon of %s answered qid %u, not its %u: refused\n", c->qube, qid,
                peer.qid);
        return 125;
    }
    _cleanup_close_ int lfd = bh_vchan_listen(vdir, 0, qid, port, &err);
    if (lfd < 0) {
        fprintf(stderr, "qrexec-client: %s\n", err.msg);
        return 125;
    }
    int sock = bh_vchan_accept_peer(lfd, vdir, 0, qid, port, known ? peer.agent_uid : (uid_t)-1, BH_QUBE_UID_RANGE,
                                    c->timeout_s > 0 ? c->timeout_s * 1000 : -1, &err);
    if (sock < 0) {
        /* nobody (or only refused peers) came within the timeout: the name is taken out
         * of the qube's small vchan tmpfs again (dom0's reserved inodes there are few) */
        char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
        if (bh_vchan_path(path, sizeof path, vdir, 0, qid, port) == 0)
            (void)unlink(path);
        fprintf(stderr, "qrexec-client: %s\n", err.msg);
        return 125;
    }
    if (bh_qx_handshake(sock, BH_QX_FROM_DATA, &ver, &err) < 0) {
        fprintf(stderr, "qrexec-client: %s\n", err.msg);
        close(sock);
        return 125;
    }
    struct bh_qx_stream s = { .sock = sock, .is_service = false, .in_fd = c->out_fd, .out_fd = c->in_fd,
                              .err_fd = c->err_fd, .child = -1, .filter_out = c->filter_out,
                              .filter_err = c->filter_err };
    pid_t child = -1;
    if (c->just_exec) {
        s.out_fd = -1;
    } else if (c->local_argv) {
        /* b (program stdout -> remote) is a pipe: the stream splices it to the socket */
        int a[2], b[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) < 0 || pipe2(b, O_CLOEXEC) < 0) {
            perror("socketpair");
            close(sock);
            return 125;
        }
        child = fork();
        if (child == 0) {
            signal(SIGPIPE, SIG_DFL);
            dup2(a[1], 0);
            dup2(b[1], 1);
            execvp(c->local_argv[0], c->local_argv);
            fprintf(stderr, "qrexec-client: exec %s: %s\n", c->local_argv[0], strerror(errno));
            _exit(127);
        }
        close(a[1]);
        close(b[1]);
        int big = 1 << 20; /* bulk transfers (file copy): fewer wakeups */
        setsockopt(a[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
        fcntl(b[0], F_SETPIPE_SZ, big);
        s.in_fd = a[0];
        s.out_fd = b[0];
    }
    int code = bh_qx_stream_run(&s, &err);
    close(sock);
    if (err.msg[0])
        fprintf(stderr, "qrexec-client: %s\n", err.msg);
    if (child > 0) { /* the local program's verdict is the call's (as qrexec-client-vm) */
        int st;
        if (waitpid(child, &st, 0) == child)
            code = bh_wait_status_code(st);
    }
    return code;
}
