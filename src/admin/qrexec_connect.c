/* internal.qrexec.ConnectTarget: bulkheadd connects a qube's qrexec call to the target
 * qube's daemon, so that the call process (the calling qube's unprivileged call identity)
 * never reaches a daemon's socket itself. A daemon runs whatever command line its
 * client sends; the daemons' sockets are root's alone, and the one line a call may
 * send is built here: QUBESRPC of the service the call names, in the calling qube's
 * name (the peer's UID, never the request), as the user the policy names. call_auth.c
 * has checked before that the policy leads this call to the target (or that the target
 * is the disposable made for it).
 *
 * The event loop never waits on a daemon: the connect is non-blocking (a Unix socket's
 * connect completes at once or fails with EAGAIN when the backlog is full), and the
 * client's HELLO and the EXEC_CMDLINE line (a few hundred bytes) go out in one send
 * that must fit the socket's buffer at once. The daemon reads its client message by
 * message (HELLO, then the command) whatever the daemon's own HELLO has done, so the
 * two may precede reading it; the call process, which gets the connected socket with
 * the reply (SCM_RIGHTS), reads the daemon's HELLO and its {qid, port} answer. */
#include "qrexec_connect.h"
#include "call_auth.h"
#include "cleanup.h"
#include "qrexec/proto.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
    p[2] = (uint8_t)(v >> 16);
    p[3] = (uint8_t)(v >> 24);
}

/* The client's HELLO {3} and EXEC_CMDLINE {caller's qid, port 0, line}: *len bytes. */
static bool build_messages(uint8_t *out, size_t size, size_t *len, uint32_t caller_qid, const char *line)
{
    size_t n = strlen(line) + 1;
    if (28 + n > size)
        return false;
    put32(out, BH_QX_MSG_HELLO);
    put32(out + 4, 4);
    put32(out + 8, BH_QX_CLIENT_VERSION);
    put32(out + 12, BH_QX_MSG_EXEC_CMDLINE);
    put32(out + 16, (uint32_t)(8 + n));
    put32(out + 20, caller_qid);
    put32(out + 24, 0);
    memcpy(out + 28, line, n);
    *len = 28 + n;
    return true;
}

int bh_qrexec_connect_target(struct bh_call *c)
{
    struct bh_qube *q = c->call_qube, *t = c->dest;
    if (!q || !c->call_user[0]) /* dom0's tools (root) connect to a daemon themselves */
        return bh_exc(c->exc, "PermissionDenied", "only a qube's qrexec call process asks this");
    if (!c->conn)
        return bh_exc(c->exc, "QubesException", "no connection to pass the socket on");
    char svc[520], requested[80];
    if (!bh_call_payload_parse(c->req->payload, c->req->payload_len, svc, sizeof svc, requested, sizeof requested))
        return bh_exc(c->exc, "PermissionDenied", "payload is not 'SERVICE REQUESTED-TARGET'");
    if (t == q || t->klass == BH_ADMINVM)
        return bh_exc(c->exc, "PermissionDenied", "not a qube to call");
    if (!bh_qube_is_running(t))
        return bh_exc(c->exc, "QubesVMNotRunningError", "Domain is powered off: '%s'", t->name);
    /* as the call process built it: the target as the caller named it (the service's
     * QREXEC_REQUESTED_TARGET[_TYPE]) */
    char line[1024];
    bool keyword = requested[0] == '@';
    int n = snprintf(line, sizeof line, "%s:QUBESRPC %s %s %s %s", c->call_user, svc, q->name,
                     keyword ? "keyword" : "name", requested + keyword);
    uint8_t msg[1100];
    size_t len = 0;
    if (n < 0 || (size_t)n >= sizeof line || !build_messages(msg, sizeof msg, &len, q->qid, line))
        return bh_exc(c->exc, "QubesException", "call line too long");
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    n = snprintf(sa.sun_path, sizeof sa.sun_path, "%s/qubes/%s/qrexec.sock", c->app->runtime_dir, t->name);
    if (n < 0 || (size_t)n >= sizeof sa.sun_path)
        return bh_exc(c->exc, "QubesException", "socket path too long");
    _cleanup_close_ int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return bh_exc(c->exc, "QubesException", "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        /* no daemon (yet): the call process waits for a target it started; a full
         * backlog (EAGAIN) is not waited for here */
        int e = errno;
        if (e == ENOENT || e == ECONNREFUSED)
            return bh_exc(c->exc, "QubesVMNotRunningError", "qrexec not running in '%s'", t->name);
        return bh_exc(c->exc, "QubesException", "connecting to %s's qrexec daemon: %s", t->name, strerror(e));
    }
    ssize_t w = send(fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (w < 0 || (size_t)w != len)
        return bh_exc(c->exc, "QubesException", "%s's qrexec daemon does not take the call: %s", t->name,
                      w < 0 ? strerror(errno) : "short write");
    /* the call process reads it with blocking reads (and its timeouts) */
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0)
        return bh_exc(c->exc, "QubesException", "fcntl: %s", strerror(errno));
    bh_server_pass_fd(c->conn, fd);
    fd = -1;
    return 0;
}
