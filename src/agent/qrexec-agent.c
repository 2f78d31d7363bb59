/* qrexec-agent: runs inside a qube (started by bulkhead-init). It serves its qrexec-daemon
 * on the control channel (vchan port 512, the qube as server, dom0 as client):
 *   EXEC_CMDLINE / JUST_EXEC  -> run "user:command" or a QUBESRPC service, with a data
 *                                stream to <connect_domain>:<connect_port> (we are client)
 *   SERVICE_CONNECT           -> hand the data stream coordinates to the waiting local
 *                                qrexec-client-vm (which is the data stream's server)
 *   SERVICE_REFUSED           -> tell that qrexec-client-vm "refused" (it exits 126)
 * and it forwards the qube's own calls (from qrexec-client-vm on the trigger socket) to the
 * daemon as TRIGGER_SERVICE4 (protocol 4) or TRIGGER_SERVICE3 (a version-3 daemon).
 *
 * The trigger socket (/run/qubes/qrexec-agent) is Qubes' local interface, byte for byte:
 * qrexec-client-vm sends {u32 0x213, u32 len} {char source[64]; char target[64];
 * char ident[32]; char service[]} (Qubes R4.3+; R4.1-R4.2's 0x212 without source is
 * taken too); the answer is the raw {u32 domain; u32 port} of the data stream, or EOF
 * when refused. The client closing the socket ends the call (CONNECTION_TERMINATED).
 * Everything here is the qube's own business: the daemon treats what we send as
 * untrusted. */
#include "buf.h"
#include "cleanup.h"
#include "io.h"
#include "log.h"
#include "qrexec/proto.h"
#include "qrexec/service.h"
#include "qrexec/stream.h"
#include "qrexec/svc_user.h"
#include "qrexec/vchan.h"
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#define DEFAULT_TRIGGER "/run/qubes/qrexec-agent"
#define MAX_TRIGGERS 64
#define MAX_CHILDREN 256
/* a local request: the fixed part and a service+arg as long as Qubes allows */
#define TRIGGER_MAX_MSG (8 + 2 * BH_QX_TARGET_LEN + BH_QX_IDENT_LEN + BH_QX_MAX_SERVICE)

static const char *vchan_dir;
static int own_domid;
static struct bh_qx_spawn_opts spawn_opts;
static int data_timeout_ms = 10000;
static int ctrl = -1;
static uint32_t ctrl_version; /* agreed with the daemon */

/* A qrexec-client-vm waiting for its call to be connected or refused. */
struct trigger {
    int fd;
    bh_buf in;
    bool sent;               /* the trigger went to the daemon */
    char ident[BH_QX_IDENT_LEN];
    uint32_t domain, port;   /* after SERVICE_CONNECT: wait for EOF, then report */
    bool connected;
};
static struct trigger triggers[MAX_TRIGGERS];
static unsigned ident_counter;

/* Data-stream handlers we forked, to report CONNECTION_TERMINATED when they end. */
struct child {
    pid_t pid;
    uint32_t domain, port;
};
static struct child children[MAX_CHILDREN];

/* A handler forked ahead of time, waiting for the one call it will run: a call then does
 * not wait for a fork of this process (page tables copied, copy-on-write faults: the
 * largest single cost of a call on a paravirtualized guest). It is still one fresh
 * process per call, forked from this one and never reused: it gets the call's message
 * (type + body, as the daemon sent it) on a SOCK_SEQPACKET pair, parses it again itself,
 * runs the call and exits. Forked again after a call ends, so that forking it does not
 * compete with the call for the CPU, and only once this qube has had two calls: a qube
 * that gets one call (a disposable) never pays for a spare it would not use. Except its
 * first one: a disposable (BULKHEAD_DISPOSABLE=1 from the engine) forks one spare as
 * soon as its daemon connects, its default user already looked up. A preloaded
 * disposable so has its handler ready before it is handed out (the fork is done while
 * it waits, not in the call), a cold one forks it while its start is answered, and
 * neither forks another after the call. */
static pid_t spare_pid;
static unsigned calls_run;
static bool disposable;
static int spare_fd = -1;

static void send_terminated(uint32_t domain, uint32_t port)
{
    if (ctrl < 0)
        return;
    uint8_t p[8] = { (uint8_t)domain, (uint8_t)(domain >> 8), (uint8_t)(domain >> 16), (uint8_t)(domain >> 24),
                     (uint8_t)port, (uint8_t)(port >> 8), (uint8_t)(port >> 16), (uint8_t)(port >> 24) };
    bh_qx_send(ctrl, BH_QX_MSG_CONNECTION_TERMINATED, p, 8);
}

static void trigger_close(struct trigger *t)
{
    if (t->fd >= 0)
        close(t->fd);
    bh_buf_free(&t->in);
    memset(t, 0, sizeof *t);
    t->fd = -1;
}

/* Child process: the executing end of one call. Never returns. */
static _Noreturn void run_call(uint32_t type, const struct bh_qx_exec *ex)
{
    bh_error err = { 0 };
    int code = 125;
    _cleanup_close_ int sock = bh_vchan_connect(vchan_dir, ex->connect_domain, (uint32_t)own_domid,
                                                ex->connect_port, data_timeout_ms, &err);
    if (sock < 0) {
        bh_err("data stream: %s", err.msg);
        _exit(125);
    }
    uint32_t ver;
    if (bh_qx_handshake(sock, BH_QX_FROM_DATA, &ver, &err) < 0) {
        bh_err("data stream: %s", err.msg);
        _exit(125);
    }
    struct bh_qx_cmd cmd;
    struct bh_qx_stream s = { .sock = sock, .is_service = true, .in_fd = -1, .out_fd = -1, .err_fd = -1,
                              .child = -1, .fixed_exit = 0 };
    if (bh_qx_cmd_parse(ex->cmdline, &cmd, &err) < 0) {
        bh_err("%s", err.msg);
        s.fixed_exit = 125;
    } else {
        struct bh_qx_spawn_opts o = spawn_opts;
        o.no_stdio = type == BH_QX_MSG_JUST_EXEC;
        pid_t pid;
        int r = bh_qx_spawn(&cmd, &o, &pid, &s.in_fd, &s.out_fd, &s.err_fd, &err);
        if (r == 127) {
            bh_warn("service %s not found", cmd.service_full);
            s.fixed_exit = 127;
        } else if (r < 0) {
            bh_err("%s", err.msg);
            s.fixed_exit = 125;
        } else if (type == BH_QX_MSG_JUST_EXEC) {
            s.fixed_exit = 0; /* JUST_EXEC reports a start, not an end */
        } else {
            s.child = pid;
        }
        bh_qx_cmd_free(&cmd);
    }
    code = bh_qx_stream_run(&s, &err);
    if (err.msg[0])
        bh_debug("stream: %s", err.msg);
    _exit(code & 0xff);
}

/* Resolves the call's user here, in the long-lived process, so that the handler forked
 * next finds it cached (svc_user.c) instead of reading passwd and group on every call. */
static void warm_user(const char *cmdline)
{
    if (!spawn_opts.switch_user || geteuid() != 0)
        return;
    if (!strncmp(cmdline, "nogui:", 6))
        cmdline += 6;
    size_t n = strcspn(cmdline, ":");
    char user[256];
    if (!cmdline[n] || n == 0 || n >= sizeof user)
        return;
    memcpy(user, cmdline, n);
    user[n] = '\0';
    (void)bh_qx_user_lookup(user);
}

static void close_inherited(void)
{
    close(ctrl);
    for (int i = 0; i < MAX_TRIGGERS; i++)
        if (triggers[i].fd >= 0)
            close(triggers[i].fd);
}

/* The spare's life: one message, or EOF when the agent is gone (or dropped it). */
static _Noreturn void spare_main(int fd)
{
    static uint8_t msg[4 + 8 + BH_QX_MAX_CMDLINE];
    ssize_t n;
    do
        n = recv(fd, msg, sizeof msg, MSG_TRUNC);
    while (n < 0 && errno == EINTR);
    if (n < 4 || (size_t)n > sizeof msg)
        _exit(0);
    close(fd);
    uint32_t type = (uint32_t)msg[0] | (uint32_t)msg[1] << 8 | (uint32_t)msg[2] << 16 | (uint32_t)msg[3] << 24;
    bh_error err = { 0 };
    struct bh_qx_exec ex;
    if ((type != BH_QX_MSG_EXEC_CMDLINE && type != BH_QX_MSG_JUST_EXEC) ||
        bh_qx_parse_exec(type, msg + 4, (size_t)n - 4, &ex, &err) < 0)
        _exit(125);
    run_call(type, &ex);
}

static void spare_fork(void)
{
    if (spare_pid > 0 || ctrl < 0 || (calls_run < 2 && !(disposable && calls_run == 0)))
        return;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0)
        return;
    int big = 4 + 8 + BH_QX_MAX_CMDLINE + 4096;
    setsockopt(sp[0], SOL_SOCKET, SO_SNDBUF, &big, sizeof big);
    pid_t pid = fork();
    if (pid == 0) {
        close(sp[0]);
        close_inherited();
        spare_main(sp[1]);
    }
    close(sp[1]);
    if (pid < 0) {
        close(sp[0]);
        return;
    }
    spare_pid = pid;
    spare_fd = sp[0];
}

static void spare_drop(void)
{
    if (spare_fd >= 0)
        close(spare_fd); /* EOF: it exits; reap() collects it */
    spare_fd = -1;
    spare_pid = 0;
}

/* Hands the call to the spare; its pid, or -1 (none, or it is gone: fork instead). */
static pid_t spare_take(uint32_t type, const uint8_t *body, size_t len)
{
    if (spare_pid <= 0)
        return -1;
    uint8_t t[4] = { (uint8_t)type, (uint8_t)(type >> 8), (uint8_t)(type >> 16), (uint8_t)(type >> 24) };
    struct iovec iov[2] = { { t, 4 }, { (void *)body, len } };
    struct msghdr m = { .msg_iov = iov, .msg_iovlen = 2 };
    pid_t pid = spare_pid;
    ssize_t n = sendmsg(spare_fd, &m, MSG_NOSIGNAL | MSG_DONTWAIT);
    spare_drop();
    return n == (ssize_t)(4 + len) ? pid : -1;
}

static void handle_exec(uint32_t type, const uint8_t *body, size_t len)
{
    bh_error err = { 0 };
    struct bh_qx_exec ex;
    if (bh_qx_parse_exec(type, body, len, &ex, &err) < 0) {
        bh_err("bad %s from daemon: %s", bh_qx_type_name(type), err.msg);
        return;
    }
    warm_user(ex.cmdline);
    int slot = -1;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (!children[i].pid) {
            slot = i;
            break;
        }
    if (slot < 0) {
        bh_err("too many calls at once");
        send_terminated(ex.connect_domain, ex.connect_port);
        return;
    }
    pid_t pid = spare_take(type, body, len);
    if (pid < 0)
        pid = fork();
    if (pid < 0) {
        bh_err("fork: %s", strerror(errno));
        send_terminated(ex.connect_domain, ex.connect_port);
        return;
    }
    if (pid == 0) {
        if (spare_fd >= 0)
            close(spare_fd);
        close_inherited();
        run_call(type, &ex);
    }
    children[slot] = (struct child){ pid, ex.connect_domain, ex.connect_port };
    calls_run++;
}

static struct trigger *find_ident(const char *ident)
{
    for (int i = 0; i < MAX_TRIGGERS; i++)
        if (triggers[i].fd >= 0 && triggers[i].sent && !triggers[i].connected &&
            !strcmp(triggers[i].ident, ident))
            return &triggers[i];
    return NULL;
}

static void handle_service_connect(const uint8_t *body, size_t len)
{
    bh_error err = { 0 };
    struct bh_qx_exec ex;
    if (bh_qx_parse_exec(BH_QX_MSG_SERVICE_CONNECT, body, len, &ex, &err) < 0) {
        bh_err("bad SERVICE_CONNECT: %s", err.msg);
        return;
    }
    struct trigger *t = find_ident(ex.cmdline);
    if (!t) {
        bh_warn("SERVICE_CONNECT for unknown request %s", ex.cmdline);
        send_terminated(ex.connect_domain, ex.connect_port);
        return;
    }
    /* Qubes' agent answers qrexec-client-vm with the raw {domain, port}. */
    uint8_t p[8] = { (uint8_t)ex.connect_domain, (uint8_t)(ex.connect_domain >> 8),
                     (uint8_t)(ex.connect_domain >> 16), (uint8_t)(ex.connect_domain >> 24),
                     (uint8_t)ex.connect_port, (uint8_t)(ex.connect_port >> 8),
                     (uint8_t)(ex.connect_port >> 16), (uint8_t)(ex.connect_port >> 24) };
    if (bh_write_all(t->fd, p, 8) < 0) {
        send_terminated(ex.connect_domain, ex.connect_port);
        trigger_close(t);
        return;
    }
    t->connected = true;
    t->domain = ex.connect_domain;
    t->port = ex.connect_port;
}

static void handle_refused(const uint8_t *body, size_t len)
{
    bh_error err = { 0 };
    char ident[BH_QX_IDENT_LEN];
    if (bh_qx_parse_refused(body, len, ident, &err) < 0) {
        bh_err("bad SERVICE_REFUSED: %s", err.msg);
        return;
    }
    struct trigger *t = find_ident(ident);
    if (t)
        trigger_close(t); /* EOF before exec_params: the client reports "refused" */
}

/* Returns -1 when the daemon connection must be dropped. */
static int handle_ctrl(void)
{
    bh_error err = { 0 };
    struct bh_qx_hdr h;
    uint8_t *body = NULL;
    int r = bh_qx_recv(ctrl, BH_QX_FROM_DAEMON, &h, &body, &err);
    if (r != 0) {
        if (r < 0)
            bh_err("control channel: %s", err.msg);
        return -1;
    }
    switch (h.type) {
    case BH_QX_MSG_EXEC_CMDLINE:
    case BH_QX_MSG_JUST_EXEC:
        handle_exec(h.type, body, h.len);
        break;
    case BH_QX_MSG_SERVICE_CONNECT:
        handle_service_connect(body, h.len);
        break;
    case BH_QX_MSG_SERVICE_REFUSED:
        handle_refused(body, h.len);
        break;
    default:
        bh_err("unexpected %s from daemon", bh_qx_type_name(h.type));
        free(body);
        return -1;
    }
    free(body);
    return 0;
}

/* Local request from qrexec-client-vm: read without blocking; forward when complete. */
static void handle_trigger_input(struct trigger *t)
{
    char buf[4096];
    ssize_t r = read(t->fd, buf, sizeof buf);
    if (r <= 0) {
        if (r < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (t->connected)
            send_terminated(t->domain, t->port);
        trigger_close(t);
        return;
    }
    if (t->sent) { /* nothing more is expected from the client */
        if (t->connected)
            send_terminated(t->domain, t->port);
        trigger_close(t);
        return;
    }
    if (bh_buf_add(&t->in, buf, (size_t)r) < 0) {
        trigger_close(t);
        return;
    }
    if (t->in.len < 8)
        return;
    struct bh_qx_hdr h;
    bh_error err = { 0 };
    bh_qx_hdr_decode((const uint8_t *)t->in.data, &h);
    if ((h.type != BH_QX_MSG_TRIGGER_SERVICE4 && h.type != BH_QX_MSG_TRIGGER_SERVICE3) ||
        bh_qx_check_header(&h, BH_QX_FROM_AGENT, &err) < 0 || h.len > TRIGGER_MAX_MSG - 8) {
        bh_warn("invalid request received from qrexec-client-vm (type 0x%x, %u bytes)", h.type, h.len);
        trigger_close(t);
        return;
    }
    if (t->in.len < 8 + (size_t)h.len)
        return;
    struct bh_qx_trigger tr;
    if (bh_qx_parse_trigger(h.type, (const uint8_t *)t->in.data + 8, h.len, &tr, &err) < 0) {
        bh_warn("bad request from qrexec-client-vm: %s", err.msg);
        trigger_close(t);
        return;
    }
    if (ctrl < 0) {
        trigger_close(t); /* no daemon: refused */
        return;
    }
    /* The ident is ours, unique per pending call; the client's is ignored. */
    snprintf(t->ident, sizeof t->ident, "SOCKET%u", ++ident_counter);
    int r2;
    if (ctrl_version >= 4) {
        r2 = bh_qx_send_trigger4(ctrl, tr.source, tr.target, t->ident, tr.service);
    } else if (tr.source[0]) {
        bh_warn("call as %s refused: the daemon speaks protocol 3, which has no source", tr.source);
        trigger_close(t);
        return;
    } else {
        r2 = bh_qx_send_trigger3(ctrl, tr.target, t->ident, tr.service);
    }
    if (r2 < 0) {
        trigger_close(t);
        return;
    }
    t->sent = true;
}

static void reap(void)
{
    int st;
    pid_t pid;
    bool ended = false;
    while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
        if (pid == spare_pid) /* died unused (killed from inside the qube): fork another */
            spare_drop();
        for (int i = 0; i < MAX_CHILDREN; i++)
            if (children[i].pid == pid) {
                send_terminated(children[i].domain, children[i].port);
                children[i].pid = 0;
                ended = true;
            }
    }
    if (ended)
        spare_fork();
}

static void usage(void)
{
    fprintf(stderr, "usage: qrexec-agent [--vchan-dir DIR] [--domid N] [--trigger-socket PATH]\n"
                    "                    [--service-path DIRS] [--no-user-switch] [--data-timeout MS]\n"
                    "Environment: VCHAN_SOCKET_DIR, VCHAN_DOMAIN, QREXEC_SERVICE_PATH.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bh_log_init("qrexec-agent");
    const char *trigger_path = getenv("QREXEC_AGENT_SOCKET");
    if (!trigger_path || !*trigger_path)
        trigger_path = DEFAULT_TRIGGER;
    vchan_dir = bh_vchan_dir();
    own_domid = -1;
    spawn_opts.switch_user = true;
    static const struct option lo[] = {
        { "vchan-dir", required_argument, 0, 'v' }, { "domid", required_argument, 0, 'd' },
        { "trigger-socket", required_argument, 0, 't' }, { "service-path", required_argument, 0, 's' },
        { "no-user-switch", no_argument, 0, 'n' }, { "data-timeout", required_argument, 0, 'w' },
        { "help", no_argument, 0, 'h' }, { 0, 0, 0, 0 } };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'v': vchan_dir = optarg; break;
        case 'd': own_domid = atoi(optarg); break;
        case 't': trigger_path = optarg; break;
        case 's': spawn_opts.service_path = optarg; break;
        case 'n': spawn_opts.switch_user = false; break;
        case 'w': data_timeout_ms = atoi(optarg); break;
        default: usage();
        }
    }
    if (own_domid < 0) {
        /* bulkhead-init passes the qid as BULKHEAD_QID; libvchan-socket's name is VCHAN_DOMAIN */
        const char *e = getenv("VCHAN_DOMAIN");
        if (!e || !*e)
            e = getenv("BULKHEAD_QID");
        if (!e || !*e) {
            bh_err("own domain id unknown: set VCHAN_DOMAIN (or BULKHEAD_QID) or --domid");
            return 1;
        }
        own_domid = atoi(e);
    }
    const char *disp = getenv("BULKHEAD_DISPOSABLE");
    disposable = disp && !strcmp(disp, "1");
    unsetenv("BULKHEAD_DISPOSABLE");
    /* Services started by us inherit these, so qrexec-client-vm finds its way. */
    char dom[16];
    snprintf(dom, sizeof dom, "%d", own_domid);
    setenv("VCHAN_DOMAIN", dom, 1);
    setenv("VCHAN_SOCKET_DIR", vchan_dir, 1);
    setenv("QREXEC_AGENT_SOCKET", trigger_path, 1);
    char apid[16]; /* as Qubes' agent gives its services */
    snprintf(apid, sizeof apid, "%d", (int)getpid());
    setenv("QREXEC_AGENT_PID", apid, 1);
    /* X programs run by qvm-run find the qube's own X server, which the gui-agent
     * starts at :0 (as in a Qubes qube); the host's display is never reachable. */
    if (!getenv("DISPLAY"))
        setenv("DISPLAY", ":0", 1);
    signal(SIGPIPE, SIG_IGN);
    for (int i = 0; i < MAX_TRIGGERS; i++)
        triggers[i].fd = -1;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    _cleanup_close_ int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);

    bh_error err = { 0 };
    _cleanup_close_ int tl = bh_unix_listen(trigger_path, 0666, &err);
    if (tl < 0) {
        bh_err("trigger socket: %s", err.msg);
        return 1;
    }
    _cleanup_close_ int cl = bh_vchan_listen(vchan_dir, (uint32_t)own_domid, 0, BH_QX_VCHAN_BASE_PORT, &err);
    if (cl < 0) {
        bh_err("control socket: %s", err.msg);
        return 1;
    }
    bh_info("listening (domid %d, %s)", own_domid, vchan_dir);

    for (;;) {
        struct pollfd p[3 + MAX_TRIGGERS];
        int n = 0;
        p[n++] = (struct pollfd){ .fd = sfd, .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = tl, .events = POLLIN };
        p[n++] = (struct pollfd){ .fd = ctrl >= 0 ? ctrl : cl, .events = POLLIN };
        int map[MAX_TRIGGERS];
        for (int i = 0; i < MAX_TRIGGERS; i++)
            if (triggers[i].fd >= 0) {
                map[n - 3] = i;
                p[n++] = (struct pollfd){ .fd = triggers[i].fd, .events = POLLIN };
            }
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            bh_err("poll: %s", strerror(errno));
            return 1;
        }
        if (p[0].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            reap();
        }
        if (p[2].revents) {
            if (ctrl < 0) {
                /* A new daemon (first start, or bulkheadd restarted it). */
                int fd = accept4(cl, NULL, NULL, SOCK_CLOEXEC);
                if (fd >= 0) {
                    uint32_t ver;
                    if (bh_qx_handshake(fd, BH_QX_FROM_DAEMON, &ver, &err) < 0) {
                        bh_err("daemon handshake: %s", err.msg);
                        close(fd);
                    } else {
                        ctrl = fd;
                        ctrl_version = ver;
                        bh_info("daemon connected, protocol %u", ver);
                        if (disposable && calls_run == 0) {
                            const char *u = getenv("BULKHEAD_USER");
                            char line[80];
                            snprintf(line, sizeof line, "%s:", u && *u ? u : "user");
                            warm_user(line);
                            spare_fork();
                        }
                    }
                }
            } else if (handle_ctrl() < 0) {
                bh_info("daemon disconnected");
                close(ctrl);
                ctrl = -1;
                for (int i = 0; i < MAX_TRIGGERS; i++)
                    if (triggers[i].fd >= 0)
                        trigger_close(&triggers[i]);
            }
        }
        if (p[1].revents) {
            int fd = accept4(tl, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0) {
                int slot = -1;
                for (int i = 0; i < MAX_TRIGGERS; i++)
                    if (triggers[i].fd < 0) {
                        slot = i;
                        break;
                    }
                if (slot < 0) {
                    close(fd);
                } else {
                    triggers[slot].fd = fd;
                    bh_buf_init(&triggers[slot].in, TRIGGER_MAX_MSG);
                }
            }
        }
        for (int k = 3; k < n; k++)
            if (p[k].revents && triggers[map[k - 3]].fd == p[k].fd)
                handle_trigger_input(&triggers[map[k - 3]]);
    }
}
