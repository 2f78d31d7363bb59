/* qrexec-daemon: the host side of one running qube (bulkheadd spawns one per qube).
 *
 *  - connects to the qube's agent control socket <vchan-dir>/vchan.<qid>.0.512.sock and
 *    waits for the agent's HELLO, answering with the lower of its version and ours (4);
 *  - listens on <runtime>/qubes/<name>/qrexec.sock for dom0 clients (qrexec-client, and
 *    other daemons connecting calls to this qube); for each EXEC_CMDLINE/JUST_EXEC it
 *    allocates a data port, answers {qid, port} and forwards the command to the agent;
 *  - handles the qube's own calls (TRIGGER_SERVICE3, and TRIGGER_SERVICE4 under protocol
 *    4): the source is this daemon's qube, never a name from the message; policy decides
 *    (decide.c); if allowed, a child connects the call to the target's daemon and relays
 *    the two halves of the data stream between the two qubes' vchan dirs (each qube only
 *    ever sees its own dir).
 *
 * Everything from the agent is read without blocking (reader.c) and parsed by proto.c
 * with hard limits. A message that is unknown, breaks a limit or is not valid refuses
 * that one request (SERVICE_REFUSED when it names one), with a log line naming the qube
 * and the type; the daemon and the qube's other calls go on. */
#include "admin_client.h"
#include "cleanup.h"
#include "daemon_paths.h"
#include "daemon_peer.h"
#include "decide.h"
#include "host_ids.h"
#include "io.h"
#include "log.h"
#include "names.h"
#include "proto.h"
#include "monitor_proto.h"
#include "privsep.h"
#include "reader.h"
#include "relay.h"
#include "service.h"
#include "stream.h"
#include "vchan.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <grp.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_PORTS 256
#define MAX_CLIENTS 128
#define MAX_TRIGGERS 256 /* the most pending calls $BULKHEAD_QREXEC_MAX_PENDING may allow */
#define DEFAULT_PENDING 64
#define FIRST_DATA_PORT (BH_QX_VCHAN_BASE_PORT + 1)

static const char *qube_name, *runtime, *vchan_dir, *sock_path, *default_user = "user";
static const char *dom0_service_path;
static uint32_t qid;
static int ctrl = -1;
static int mon = -1;     /* the channel between the unprivileged process and the monitor */
static volatile sig_atomic_t stop;
static void on_term(int s) { (void)s; stop = 1; }
static uint32_t ctrl_version;          /* negotiated with the agent: 3 or 4 */
static struct bh_qx_reader ctrl_reader;
static int call_timeout_s = 60;
/* The host UID that must be listening on this qube's agent name (--agent-uid: the
 * qube's uid_base, as which its agent or VM bridge runs); its data names may be bound by
 * any of the qube's UIDs (a call's process in the qube, as the call's user binds them).
 * (uid_t)-1: not checked (the test stub's world, agents of any UID). */
static uid_t agent_uid = (uid_t)-1;
static int max_pending = DEFAULT_PENDING; /* calls of this qube in flight at once */
static struct bh_qx_policy_ctx policy_ctx = { .keep_fd = -1 };

struct port { bool used; uint32_t domain; int client; };
static struct port ports[MAX_PORTS];

enum cstate { C_FREE, C_HELLO, C_CMD, C_RUNNING };
struct client { int fd; enum cstate st; int port; };
static struct client clients[MAX_CLIENTS];

struct trig {
    bool busy;          /* asked the monitor for a call process; until it reports DONE */
    int sp;             /* call process -> us: {domain, port} when connected; EOF = refused */
    char ident[BH_QX_IDENT_LEN];
    int dom0_port;      /* reserved for a dom0 target */
    bool answered, used_dom0;
};
static struct trig trigs[MAX_TRIGGERS];

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

/* Bounds both directions: a peer that stops reading or stalls mid-message makes our
 * read/write fail instead of blocking the whole daemon. */
static void set_rcv_timeout(int fd, int sec)
{
    struct timeval tv = { .tv_sec = sec };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

/* Ports are per daemon, but a qube pair (X, C) has two daemons allocating: as in Qubes,
 * the lower qid's daemon takes even slots and the higher's odd ones, so that one side's
 * CONNECTION_TERMINATED can never free the other side's port. dom0 calls use any slot. */
static int port_alloc(uint32_t domain, int client)
{
    int start = 0, step = 1;
    if (domain != 0) {
        start = domain > qid ? 1 : 0;
        step = 2;
    }
    for (int i = start; i < MAX_PORTS; i += step)
        if (!ports[i].used) {
            ports[i] = (struct port){ true, domain, client };
            return FIRST_DATA_PORT + i;
        }
    return -1;
}

static void client_close(int ci)
{
    if (clients[ci].fd >= 0)
        close(clients[ci].fd);
    for (int i = 0; i < MAX_PORTS; i++)
        if (ports[i].used && ports[i].client == ci)
            ports[i].client = -1;
    clients[ci] = (struct client){ -1, C_FREE, -1 };
}

static void port_release(uint32_t domain, uint32_t port)
{
    if (port < FIRST_DATA_PORT || port >= FIRST_DATA_PORT + MAX_PORTS)
        return;
    struct port *p = &ports[port - FIRST_DATA_PORT];
    if (!p->used || p->domain != domain)
        return; /* the agent may lie; it can only free its own ports */
    if (p->client >= 0)
        client_close(p->client); /* EOF tells the client its connection ended */
    *p = (struct port){ false, 0, -1 };
}

static _Noreturn void ctrl_fail(const char *what, const char *msg)
{
    bh_err("agent of %s: %s: %s; exiting", qube_name, what, msg);
    exit(1); /* the monitor removes the socket */
}

static void send_refused(const char *ident)
{
    char id[BH_QX_IDENT_LEN];
    memset(id, 0, sizeof id);
    snprintf(id, sizeof id, "%s", ident);
    if (bh_qx_send(ctrl, BH_QX_MSG_SERVICE_REFUSED, id, sizeof id) < 0)
        ctrl_fail("send", strerror(errno));
}

/* ---- dom0 clients ------------------------------------------------------------------ */

static void handle_client_cmd(int ci)
{
    bh_error err = { 0 };
    struct bh_qx_hdr h;
    _cleanup_free_ uint8_t *body = NULL;
    int r = bh_qx_recv(clients[ci].fd, BH_QX_FROM_CLIENT, &h, &body, &err);
    if (r != 0) {
        if (r < 0)
            bh_warn("client: %s", err.msg);
        client_close(ci);
        return;
    }
    if (clients[ci].st == C_HELLO) {
        uint32_t v, use;
        if (h.type != BH_QX_MSG_HELLO || bh_qx_parse_hello(body, h.len, &v, &err) < 0 ||
            bh_qx_negotiate(BH_QX_CLIENT_VERSION, v, &use, &err) < 0) {
            bh_warn("client HELLO refused: %s", err.msg[0] ? err.msg : "not a HELLO");
            client_close(ci);
            return;
        }
        clients[ci].st = C_CMD;
        return;
    }
    if (clients[ci].st != C_CMD || (h.type != BH_QX_MSG_EXEC_CMDLINE && h.type != BH_QX_MSG_JUST_EXEC)) {
        bh_warn("client sent %s in the wrong state", bh_qx_type_name(h.type));
        client_close(ci);
        return;
    }
    struct bh_qx_exec ex;
    if (bh_qx_parse_exec(h.type, body, h.len, &ex, &err) < 0 || ex.connect_port != 0) {
        bh_warn("client command refused: %s", err.msg[0] ? err.msg : "port preset");
        client_close(ci);
        return;
    }
    int port = port_alloc(ex.connect_domain, ci);
    if (port < 0) {
        bh_warn("no free data port for %s", qube_name);
        client_close(ci);
        return;
    }
    uint8_t rep[8];
    put32(rep, qid);
    put32(rep + 4, (uint32_t)port);
    if (bh_qx_send(clients[ci].fd, h.type, rep, 8) < 0) {
        port_release(ex.connect_domain, (uint32_t)port);
        return;
    }
    clients[ci].st = C_RUNNING;
    clients[ci].port = port;
    /* "DEFAULT:" is the qube's default user, filled in here as Qubes' daemon does. */
    _cleanup_free_ char *line = NULL;
    const char *cmd = ex.cmdline;
    if (!strncmp(cmd, "DEFAULT:", 8)) {
        if (asprintf(&line, "%s:%s", default_user, cmd + 8) < 0)
            ctrl_fail("asprintf", strerror(errno));
        cmd = line;
    }
    bh_debug("exec for domain %u port %d: %s", ex.connect_domain, port, cmd);
    if (bh_qx_send_exec(ctrl, h.type, ex.connect_domain, (uint32_t)port, cmd, strlen(cmd) + 1) < 0)
        ctrl_fail("send", strerror(errno));
}

/* ---- the qube's own calls ------------------------------------------------------------ */

/* "SERVICE REQUESTED-TARGET": the call as the caller made it, with which bulkheadd checks
 * each step a call process asks of it against the policy (it speaks for the calling
 * qube only: src/admin/call_auth.h). */
#define BH_CALL_SERVICE_MAX 520 /* SERVICE[+ARG] with its NUL, as bulkheadd's call_auth.c takes it */
static char g_call_payload[BH_CALL_SERVICE_MAX + BH_QX_TARGET_LEN + 8];

/* The target's daemon, connected by bulkheadd (internal.qrexec.ConnectTarget): the
 * daemons' sockets are root's, and a daemon runs whatever line its client sends, so
 * the call process (which the calling qube may have taken over) never speaks to one
 * itself. bulkheadd checks the call against the policy, connects, sends the client's
 * HELLO and the QUBESRPC line it builds (this qube's name, the service and requested
 * target of g_call_payload, the policy's user), and passes the socket back: what is
 * left here is to read the daemon's HELLO and its answer. *not_running: the target
 * has no daemon (yet). */
static int connect_through_bulkheadd(const char *target, bool *not_running, bh_error *err)
{
    struct bh_admin_reply rep _cleanup_reply_ = { 0 };
    int fd = -1;
    *not_running = false;
    if (bh_admin_call_fd("internal.qrexec.ConnectTarget", "", target, g_call_payload, strlen(g_call_payload), &rep,
                         &fd, err) < 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    if (rep.ok && fd >= 0)
        return fd;
    if (fd >= 0)
        close(fd);
    *not_running = rep.exc_type && !strcmp(rep.exc_type, "QubesVMNotRunningError");
    return bh_fail(err, *not_running ? ENOENT : EACCES, "connecting to %s: %s", target,
                   rep.ok ? "no socket in bulkheadd's reply" : rep.exc_msg ? rep.exc_msg : "refused");
}

/* Connects to a running qube's daemon (starting the qube first when allowed); *sent:
 * the client's HELLO and the call's line went out already (through bulkheadd). Only
 * the test stub's world (--test-allow: no bulkheadd, sockets left to the dom0-qrexec
 * group) connects directly. */
static int connect_target_daemon(const char *target, bool autostart, bool *sent, bh_error *err)
{
    char path[4096];
    bool not_running = false;
    *sent = !policy_ctx.stub_allow;
    if (bh_qx_qube_path(path, sizeof path, runtime, target, "qrexec.sock") < 0)
        return bh_fail_errno(err, "path");
    int fd = *sent ? connect_through_bulkheadd(target, &not_running, err) : bh_unix_connect(path, err);
    if (fd >= 0 || !autostart || (*sent && !not_running))
        return fd;
    struct bh_admin_reply rep _cleanup_reply_ = { 0 };
    bh_error e2 = { 0 };
    if (bh_admin_call("internal.qrexec.StartTarget", "", target, g_call_payload, strlen(g_call_payload), &rep, &e2) < 0)
        return bh_fail(err, e2.errnum, "starting %s: %s", target, e2.msg);
    if (!rep.ok) /* refused (not enough memory, no template...): say so now, not in 60 s */
        return bh_fail(err, EAGAIN, "starting %s: %s", target, rep.exc_msg ? rep.exc_msg : "refused");
    long long deadline = bh_now_ms() + call_timeout_s * 1000LL;
    while (bh_now_ms() < deadline) {
        fd = *sent ? connect_through_bulkheadd(target, &not_running, err) : bh_unix_connect(path, err);
        if (fd >= 0 || (*sent && !not_running))
            return fd;
        usleep(50 * 1000);
    }
    return bh_fail(err, ETIMEDOUT, "%s did not start qrexec in %d s", target, call_timeout_s);
}

/* The calling qube's bytes (HELLO and the data stream) are parsed by an unprivileged
 * child; this root process only spawned the dom0 service and waits for it, passing its
 * exit code on a pipe. When the stream ends first (the caller went away) it stops
 * waiting: the service gets EOF as it did before. */
static _Noreturn void run_dom0_stream(struct bh_qx_stream *s)
{
    int ep[2] = { -1, -1 };
    if (s->child > 0 && pipe2(ep, O_CLOEXEC) < 0)
        _exit(1);
    pid_t pump = fork();
    if (pump < 0)
        _exit(1);
    if (pump == 0) {
        bh_error err = { 0 };
        uint32_t ver;
        if (ep[1] >= 0)
            close(ep[1]);
        if (s->child > 0) {
            s->exit_from_fd = true;
            s->exit_fd = ep[0];
            s->child = -1;
        }
        s->no_splice = true; /* the filter below has no ioctl (stream.c's FIONREAD) */
        if (bh_qx_drop_privileges(bh_qx_unpriv_id(qid), &err) < 0 || bh_qx_seccomp_unpriv(&err) < 0) {
            bh_err("call to dom0: %s", err.msg);
            _exit(1);
        }
        if (bh_qx_handshake(s->sock, BH_QX_FROM_DATA, &ver, &err) < 0) {
            bh_err("call to dom0: %s", err.msg);
            _exit(0);
        }
        bh_qx_stream_run(s, &err);
        _exit(0);
    }
    close(s->sock);
    int *local[] = { &s->in_fd, &s->out_fd, &s->err_fd };
    for (size_t i = 0; i < 3; i++)
        if (*local[i] >= 0)
            close(*local[i]);
    if (ep[0] >= 0)
        close(ep[0]);
    for (;;) {
        int st;
        pid_t w = waitpid(-1, &st, 0);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 || w == pump)
            _exit(0);
        if (w == s->child) {
            int code = bh_wait_status_code(st);
            (void)bh_write_all(ep[1], &code, sizeof code);
            close(ep[1]);
            ep[1] = -1;
        }
    }
}

static _Noreturn void trigger_child_dom0(int sp, const char *target, int port, const char *service_full,
                                         const struct bh_qx_decision *d)
{
    bh_error err = { 0 };
    uint8_t msg[8];
    put32(msg, 0);
    put32(msg + 4, (uint32_t)port);
    if (bh_write_all(sp, msg, 8) < 0)
        _exit(1);
    close(sp);
    int sock = bh_vchan_connect_peer(vchan_dir, qid, 0, (uint32_t)port, agent_uid, BH_QUBE_UID_RANGE, call_timeout_s * 1000, &err);
    if (sock < 0) {
        bh_err("call to dom0: %s", err.msg);
        _exit(0);
    }
    char line[BH_QX_MAX_SERVICE + 128];
    /* the requested target reaches the service (admin.* calls name their subject so) */
    snprintf(line, sizeof line, "%s:QUBESRPC %s %s %s %s", strcmp(d->user, "DEFAULT") ? d->user : "root",
             service_full, qube_name, target[0] == '@' ? "keyword" : "name", target[0] == '@' ? target + 1 : target);
    struct bh_qx_cmd cmd;
    struct bh_qx_stream s = { .sock = sock, .is_service = true, .in_fd = -1, .out_fd = -1, .err_fd = -1,
                              .child = -1, .fixed_exit = 127 };
    if (bh_qx_cmd_parse(line, &cmd, &err) == 0) {
        struct bh_qx_spawn_opts o = { .service_path = dom0_service_path ? dom0_service_path : "/etc/qubes-rpc",
                                      .switch_user = false };
        pid_t pid;
        int r = bh_qx_spawn(&cmd, &o, &pid, &s.in_fd, &s.out_fd, &s.err_fd, &err);
        char self[4096], fwd[4200];
        ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
        /* Qubes' misc services (qubes/api/misc.py) go to qubesd the same way. */
        bool misc = !strcmp(service_full, "qubes.FeaturesRequest") || !strcmp(service_full, "qubes.NotifyTools") ||
                    !strcmp(service_full, "qubes.NotifyUpdates");
        if (r == 127 && (!strncmp(service_full, "admin.", 6) || misc) && n > 0) {
            /* Admin API over qrexec: no service file of its own -> forward to bulkheadd as
             * the calling qube (every name here was validated: no shell syntax possible). */
            self[n] = '\0';
            *strrchr(self, '/') = '\0';
            const char *dest = !strcmp(target, "@adminvm") || !strcmp(target, "dom0") ? "dom0" : target;
            /* Qubes' dom0 program for admin.vm.volume.Import[WithSize]: the data does not
             * pass through bulkheadd (qubesd-import.c) */
            bool import = !strncmp(service_full, "admin.vm.volume.Import+", 23) ||
                          !strncmp(service_full, "admin.vm.volume.ImportWithSize+", 31);
            /* and for admin.vm.Console: the console's relay (qubesd-console.c) */
            bool console = !strcmp(service_full, "admin.vm.Console") || !strcmp(service_full, "admin.vm.Console+");
            snprintf(fwd, sizeof fwd, "root:exec '%s/%s' %s %s %s", self,
                     import ? "qubesd-import" : console ? "qubesd-console" : "qubesd-query", qube_name,
                     console ? "admin.vm.Console" : service_full, dest);
            /* admin.vm.List is filtered by the same policy: this process evaluated it
             * for each qube bulkheadd has now, qubesd-query lists only those (a qube
             * made in between is left out; no list at all without a policy) */
            _cleanup_free_ char *seen = NULL;
            bh_error le = { 0 };
            if (!strcmp(service_full, "admin.vm.List") || !strcmp(service_full, "admin.vm.List+")) {
                if (bh_qx_policy_list_allowed(&policy_ctx, qube_name, &seen, &le) == 0)
                    setenv("BULKHEAD_LIST_ALLOWED", seen, 1);
                else
                    bh_warn("admin.vm.List from %s: %s", qube_name, le.msg);
            }
            struct bh_qx_cmd fc;
            if (!strchr(self, '\'') && bh_qube_name_valid(dest[0] == '@' ? "x" : dest, NULL) &&
                bh_qx_cmd_parse(fwd, &fc, &err) == 0) {
                r = bh_qx_spawn(&fc, &o, &pid, &s.in_fd, &s.out_fd, &s.err_fd, &err);
                bh_qx_cmd_free(&fc);
            }
        }
        if (r == 0)
            s.child = pid;
        else if (r < 0)
            s.fixed_exit = 125;
    }
    run_dom0_stream(&s);
}

/* The disposable created for the current call (trigger child only), ended on exit. */
static char g_disp[64];
static _Noreturn void call_exit(int code)
{
    if (g_disp[0]) {
        bh_error e = { 0 };
        struct bh_admin_reply k _cleanup_reply_ = { 0 };
        bh_admin_call("internal.qrexec.KillDisposable", "", g_disp, "", 0, &k, &e);
    }
    _exit(code);
}

static void unlink_listen_name(const char *tdir, uint32_t tqid, uint32_t port)
{
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (bh_vchan_path(path, sizeof path, tdir, qid, tqid, port) == 0)
        (void)unlink(path);
}

/* Inodes of a target's vchan dir (a 64-inode tmpfs) that qube-to-qube calls never take:
 * dom0's calls (qrexec-client binds its data socket there) always find room, however
 * many calls other qubes hold toward the target. $BULKHEAD_VCHAN_DOM0_RESERVE. */
#define BH_QX_DOM0_RESERVE 16
static unsigned long dom0_reserve(void)
{
    const char *e = getenv("BULKHEAD_VCHAN_DOM0_RESERVE");
    return e && *e ? strtoul(e, NULL, 10) : BH_QX_DOM0_RESERVE;
}

/* The qube's runtime dir (its sockets, pid files, vchan dir) becomes 0711: every call
 * identity may still reach the names it needs in it (this daemon's socket's name, the
 * vchan dir) but none may list it, so another qube's calls learn nothing of what is
 * there. */
static void hide_runtime_dir(void)
{
    char dir[4096];
    if (bh_qx_qube_path(dir, sizeof dir, runtime, qube_name, "") < 0)
        return;
    if (chmod(dir, 0711) < 0)
        bh_warn("%s: runtime dir left listable: %s", qube_name, strerror(errno));
}

/* Binds this call's name in the target's vchan dir unless that would eat into dom0's
 * reserve. Bound first, counted after: a name that left fewer free inodes than the
 * reserve is removed again and the call refused. Concurrent calls then see each other's
 * names and refuse more, never fewer, and no lock is needed (a lock that every qube's
 * call processes take could be held forever by one that a qube has taken over, and
 * every call into the target would hang). */
static int listen_in_target(const char *target, const char *tdir, uint32_t tqid, uint32_t port, bh_error *err)
{
    int fd = bh_vchan_listen(tdir, qid, tqid, port, err);
    if (fd < 0)
        return -1;
    struct statvfs sv;
    bool full = statvfs(tdir, &sv) < 0 || (sv.f_files && sv.f_ffree < dom0_reserve());
    if (!full)
        return fd;
    char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
    if (bh_vchan_path(path, sizeof path, tdir, qid, tqid, port) == 0)
        unlink(path);
    close(fd);
    return bh_fail(err, ENOSPC, "%s's vchan dir keeps its last %lu inodes for dom0's calls", target, dom0_reserve());
}

/* Whether the daemon at the other end of fd serves the qube `target` as qid_seen
 * (daemon_peer.h: asked of the kernel, not of that daemon); *uid_out: the host UID its
 * agent runs as (the first of the target's range), (uid_t)-1 if not known. */
static bool target_qid_matches(int fd, const char *target, uint32_t qid_seen, uid_t *uid_out)
{
    struct bh_qx_daemon_peer p;
    if (bh_qx_daemon_peer(fd, &p) < 0 || strcmp(p.name, target) || p.qid != qid_seen)
        return false;
    *uid_out = p.agent_uid;
    return true;
}

/* "/proc/self/fd/N" for a directory or file opened here, as root, before the call
 * process gives up root: the path through it is checked from that point on only, so
 * what lies under a parent the call identity may not search (bulkheadd's 0700 state
 * dir holding policy.d, a test's private tmp dir) stays reachable, and nothing else
 * there is. */
static const char *reach_through_fd(const char *path, int flags, int *fd_out)
{
    static char bufs[6][32];
    static int used;
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0 || used == 6) {
        bh_err("call of %s: %s: %s", qube_name, path, strerror(errno));
        _exit(1);
    }
    if (fd_out)
        *fd_out = fd;
    snprintf(bufs[used], sizeof bufs[used], "/proc/self/fd/%d", fd);
    return bufs[used++];
}


/* A copy of the X session's cookie file ($XAUTHORITY: root's, 0600) in a memfd, for the
 * ask program's window: a program reopens the file by name (/proc/self/fd/N), and a
 * reopen checks the file's mode, which the memfd's allows. -1 without one. */
static int session_cookie_copy(void)
{
    const char *xa = getenv("XAUTHORITY");
    if (!xa || !*xa)
        return -1;
    size_t len = 0;
    _cleanup_free_ char *data = bh_read_file(xa, 65536, &len);
    int fd = data ? memfd_create("xauthority", MFD_CLOEXEC | MFD_ALLOW_SEALING) : -1;
    if (fd < 0)
        return -1;
    if (bh_write_all(fd, data, len) < 0 || lseek(fd, 0, SEEK_SET) < 0 ||
        fcntl(fd, F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

/* The call process gives up root for good, before it evaluates policy: from here on it
 * is the qube's call identity (bh_qx_call_uid, group BH_QX_CALL_GID), and so is every
 * program it runs (the ask prompt, dom0 services). The group reaches bulkheadd's socket
 * and the prompt agent's socket (not the daemons': bulkheadd connects a call to its
 * target, connect_through_bulkheadd). Done here, as root, beforehand:
 * policy.d is loaded (the root side did, before the fork: bh_qx_policy_refresh); the runtime and vchan dirs (and the test stub's file) are opened,
 * to be reached through those fds; the X session's cookie ($XAUTHORITY, root's) is
 * copied into a sealed memfd that only the ask program inherits. Nothing a call does
 * needs root afterwards: what it does in another qube's vchan dir any user may do (an
 * ns qube's is a 1777 tmpfs; a vm qube's host side is 1770 with the call group). */
static void enter_call_identity(void)
{
    bh_error err = { 0 };
    runtime = reach_through_fd(runtime, O_PATH | O_DIRECTORY, NULL);
    vchan_dir = reach_through_fd(vchan_dir, O_PATH | O_DIRECTORY, NULL);
    bh_qx_policy_preload(&policy_ctx);
    if (policy_ctx.stub_allow)
        policy_ctx.stub_allow = reach_through_fd(policy_ctx.stub_allow, O_RDONLY, NULL);
    int xfd = session_cookie_copy();
    if (xfd >= 0) {
        char v[32];
        snprintf(v, sizeof v, "/proc/self/fd/%d", xfd);
        setenv("XAUTHORITY", v, 1);
        policy_ctx.keep_fd = xfd;
    }
    /* the qube's unprivileged identity stays saved: the relay or pump forked later
     * becomes it, shedding this one */
    if (bh_qx_drop_to_keeping(bh_qx_call_uid(qid), BH_QX_CALL_GID, bh_qx_unpriv_id(qid), &err) < 0) {
        bh_err("call of %s: %s", qube_name, err.msg);
        _exit(1);
    }
    /* bulkheadd hears this identity for the qube alone: its requests say so */
    bh_admin_set_source(qube_name);
}

static _Noreturn void trigger_child(int sp, const char *ident, const char *target, const char *service_full,
                                    int dom0_port)
{
    bh_log_init("qrexec-daemon-call");
    bh_error err = { 0 };
    struct bh_qx_decision d;
    /* For a test only: a call process held in its root phase, before its drop to the
     * call identity, as a busy host may hold one (tests/attack/test_qrexec_call_reap.py:
     * the qube's halt must end it, though no sweep of the identity can reach it). */
    if (getenv("BULKHEAD_QREXEC_TEST_CALL_STOP"))
        raise(SIGSTOP);
    enter_call_identity();
    snprintf(g_call_payload, sizeof g_call_payload, "%s %s", service_full, target[0] ? target : "@default");
    if (bh_qx_policy_decide(&policy_ctx, qube_name, target, service_full, &d, &err) < 0 || d.verdict != BH_QX_ALLOW) {
        bh_info("call %s -> %s %s denied by %s", qube_name, target, service_full, d.rule);
        _exit(1);
    }
    bh_info("call %s -> %s (%s) %s allowed by %s", qube_name, target, d.target, service_full, d.rule);
    /* The X cookie was for the ask program alone, which has run: the processes that
     * come next (a relay or pump moving the qube's bytes, a dom0 service) must not be
     * able to read it from an inherited descriptor. */
    if (policy_ctx.keep_fd >= 0) {
        close(policy_ctx.keep_fd);
        policy_ctx.keep_fd = -1;
        unsetenv("XAUTHORITY");
    }
    if (!strcmp(d.target, "dom0"))
        trigger_child_dom0(sp, target, dom0_port, service_full, &d);
    /* bulkheadd checks (and builds the target's line from) the call as g_call_payload
     * names it: a service name it cannot hold whole is refused, not cut short */
    if (!policy_ctx.stub_allow && strlen(service_full) >= BH_CALL_SERVICE_MAX) {
        bh_warn("call %s -> %s: service name longer than %d bytes refused", qube_name, d.target,
                BH_CALL_SERVICE_MAX - 1);
        _exit(1);
    }
    /* a qube (or a disposable) serves the call: nothing is executed from here on */
    if (bh_qx_seccomp_call(&err) < 0) {
        bh_err("call of %s: %s", qube_name, err.msg);
        _exit(1);
    }
    if (d.dispvm) {
        /* A new disposable serves this one call and is killed when the call ends
         * (bulkheadd removes it: internal.auto-cleanup). */
        struct bh_admin_reply rep _cleanup_reply_ = { 0 };
        if (!bh_qube_name_valid(d.dispvm_template, NULL) ||
            bh_admin_call("internal.qrexec.CreateDisposable", "", d.dispvm_template, g_call_payload,
                          strlen(g_call_payload), &rep, &err) < 0 || !rep.ok) {
            bh_warn("cannot create a disposable from %s: %s", d.dispvm_template,
                    rep.exc_msg ? rep.exc_msg : err.msg);
            _exit(1);
        }
        snprintf(g_disp, sizeof g_disp, "%.*s", (int)strcspn(rep.body, " \n"), rep.body);
        snprintf(d.target, sizeof d.target, "%s", g_disp);
        d.autostart = true;
        bh_info("call %s -> %s runs in new disposable %s", qube_name, target, g_disp);
    }
    if (!bh_qube_name_valid(d.target, NULL) || !strcmp(d.target, qube_name)) {
        bh_warn("policy resolved to an invalid target '%s'", d.target);
        call_exit(1);
    }
    bool sent = false;
    _cleanup_close_ int tfd = connect_target_daemon(d.target, d.autostart, &sent, &err);
    if (tfd < 0) {
        bh_warn("target %s: %s", d.target, err.msg);
        call_exit(1);
    }
    set_rcv_timeout(tfd, call_timeout_s);
    uint32_t theirs = 0, ver;
    /* we are that daemon's local client: its HELLO comes first, ours says 3 (sent by
     * bulkheadd with the call's line, or here in the stub's world) */
    if ((!sent && bh_qx_send_hello_v(tfd, BH_QX_CLIENT_VERSION) < 0) ||
        bh_qx_recv_hello(tfd, BH_QX_FROM_CLIENT, &theirs, &err) < 0 ||
        bh_qx_negotiate(BH_QX_CLIENT_VERSION, theirs, &ver, &err) < 0) {
        bh_warn("target %s: %s", d.target, err.msg[0] ? err.msg : strerror(errno));
        call_exit(1);
    }
    if (!sent) {
        char line[BH_QX_MAX_SERVICE + 128];
        /* The target as the caller asked for it, for the service's QREXEC_REQUESTED_TARGET*. */
        int n = target[0] == '@'
                    ? snprintf(line, sizeof line, "%s:QUBESRPC %s %s keyword %s", d.user, service_full, qube_name, target + 1)
                    : snprintf(line, sizeof line, "%s:QUBESRPC %s %s name %s", d.user, service_full, qube_name, target);
        if (bh_qx_send_exec(tfd, BH_QX_MSG_EXEC_CMDLINE, qid, 0, line, (size_t)n + 1) < 0)
            call_exit(1);
    }
    uint8_t rep[16];
    if (bh_read_all(tfd, rep, 16) != 16 || get32(rep) != BH_QX_MSG_EXEC_CMDLINE || get32(rep + 4) != 8) {
        bh_warn("target daemon %s did not accept the call", d.target);
        call_exit(1);
    }
    uint32_t tqid = get32(rep + 8), port = get32(rep + 12);
    uid_t target_uid = (uid_t)-1;
    /* The answer comes from the target's unprivileged side, which a compromised target
     * controls: a foreign qid would point this root relay at the name of one of the
     * caller's calls to ANOTHER qube (in the caller's own vchan dir) and hand that stream
     * to this target. The qid must be the target's own. */
    if (!target_qid_matches(tfd, d.target, tqid, &target_uid) || port < FIRST_DATA_PORT || port >= FIRST_DATA_PORT + MAX_PORTS) {
        bh_warn("target daemon %s answered a foreign qid %u or port %u: call refused", d.target, tqid, port);
        call_exit(1);
    }
    /* The target agent connects (as client) to this name in ITS dir; we stand in for the
     * calling qube's qrexec-client-vm, which listens under the same name in OUR dir. */
    char tdir[4096];
    bh_qx_qube_path(tdir, sizeof tdir, runtime, d.target, "vchan");
    _cleanup_close_ int lfd = listen_in_target(d.target, tdir, tqid, port, &err);
    if (lfd < 0) {
        bh_warn("relay: %s", err.msg);
        call_exit(1);
    }
    uint8_t msg[8];
    put32(msg, tqid);
    put32(msg + 4, port);
    if (bh_write_all(sp, msg, 8) < 0) {
        unlink_listen_name(tdir, tqid, port);
        call_exit(1);
    }
    close(sp);
    /* The target's side first: its agent connects at once (it got the command), so the
     * name in the target's small vchan tmpfs goes away now and never waits on the
     * caller, who decides when (or whether) its own side shows up. A name that nobody
     * connected to within the timeout is removed too: what a call holds in the target's
     * dir is released when the call ends or times out. Only the target's side may
     * connect (its agent or VM bridge, as one of the target's host UIDs): another
     * qube's call process can reach the name too (the dir is 1777, or 1770 with the
     * call group), and would otherwise take the caller's stream and answer for the
     * target; it is dropped and the name stays for the target. */
    _cleanup_close_ int dst = bh_vchan_accept_peer(lfd, tdir, qid, tqid, port, target_uid, BH_QUBE_UID_RANGE,
                                                   call_timeout_s * 1000, &err);
    if (dst < 0) {
        unlink_listen_name(tdir, tqid, port);
        bh_warn("relay (target side): %s", err.msg);
        call_exit(0);
    }
    close(lfd); /* a listening socket holds its tmpfs inode even once unlinked */
    lfd = -1;
    _cleanup_close_ int src = bh_vchan_connect_peer(vchan_dir, qid, tqid, port, agent_uid, BH_QUBE_UID_RANGE, call_timeout_s * 1000, &err);
    if (src < 0) {
        bh_warn("relay (source side): %s", err.msg);
        call_exit(0);
    }
    /* The relay needs nothing but its two fds: it moves qube bytes unprivileged, in a
     * child of its own, so that this (root) process can still end a disposable afterwards. */
    pid_t rp = fork();
    if (rp == 0) {
        close(tfd); /* the target daemon's client connection: not the relay's */
        bh_error perr = { 0 };
        if (bh_qx_drop_privileges(bh_qx_unpriv_id(qid), &perr) < 0 || bh_qx_seccomp_unpriv(&perr) < 0) {
            bh_err("relay: %s", perr.msg);
            _exit(1);
        }
        bh_relay(src, dst);
        _exit(0);
    }
    close(src);
    close(dst);
    src = dst = -1;
    if (rp > 0)
        waitpid(rp, NULL, 0);
    call_exit(0);
}

/* Log lines about a qube's bad messages are the qube's to cause: at most a few per
 * second reach the log, the rest are counted. */
static void refusal_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void refusal_log(const char *fmt, ...)
{
    static long long window;
    static unsigned in_window, dropped;
    long long now = bh_now_ms();
    if (now - window >= 1000) {
        if (dropped)
            bh_warn("%s: %u more refused messages not logged", qube_name, dropped);
        window = now;
        in_window = dropped = 0;
    }
    if (++in_window > 10) {
        dropped++;
        return;
    }
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    bh_warn("%s", line);
}

/* A trigger's ident, if the (possibly bad) message has a readable one: the refusal
 * names the request, so the caller's qrexec-client-vm learns "refused" at once. */
static bool trigger_ident(uint32_t type, const uint8_t *p, size_t len, char ident[BH_QX_IDENT_LEN])
{
    size_t off = type == BH_QX_MSG_TRIGGER_SERVICE4 ? 2 * BH_QX_TARGET_LEN
               : type == BH_QX_MSG_TRIGGER_SERVICE3 ? BH_QX_TARGET_LEN : 0;
    if (!off || len < off + BH_QX_IDENT_LEN || !memchr(p + off, 0, BH_QX_IDENT_LEN))
        return false;
    memcpy(ident, p + off, BH_QX_IDENT_LEN);
    return bh_qx_ident_valid(ident);
}

/* p/len: the message's first bytes (all of it, or what a skipped one kept); total: its
 * announced length. */
static void refuse_message(uint32_t type, uint32_t total, const uint8_t *p, size_t len, const char *why)
{
    char ident[BH_QX_IDENT_LEN];
    bool named = trigger_ident(type, p, len, ident);
    refusal_log("%s: refused %s message (type 0x%x, %u bytes) from its agent: %s%s%s", qube_name,
                bh_qx_type_name(type), type, total, why, named ? "; refused request " : "", named ? ident : "");
    if (named)
        send_refused(ident);
}

/* Calls per second this qube may make (token bucket: sustained rate, burst of 3 s):
 * each allowed or denied call costs the host a fork, a policy evaluation and Admin API
 * queries, none of it in the qube's cgroup. Past the bucket a call is refused at once,
 * before any of that work. $BULKHEAD_QREXEC_CALL_RATE, default BH_QX_CALL_RATE. */
#define BH_QX_CALL_RATE 10
struct rate_bucket {
    double tokens, rate, burst;
    long long last;
};

static double call_rate(void)
{
    const char *e = getenv("BULKHEAD_QREXEC_CALL_RATE");
    return e && atof(e) > 0 ? atof(e) : BH_QX_CALL_RATE;
}

static bool bucket_take(struct rate_bucket *b, double extra_burst)
{
    long long now = bh_now_ms();
    if (b->rate <= 0) {
        b->rate = call_rate();
        b->burst = 3 * b->rate + extra_burst;
        b->tokens = b->burst;
        b->last = now;
    }
    b->tokens += (double)(now - b->last) * b->rate / 1000.0;
    if (b->tokens > b->burst)
        b->tokens = b->burst;
    b->last = now;
    if (b->tokens < 1)
        return false;
    b->tokens -= 1;
    return true;
}

/* The unprivileged side's own limit: refuses before asking the monitor. */
static bool call_rate_ok(void)
{
    static struct rate_bucket b;
    return bucket_take(&b, 0);
}

static void handle_trigger(const uint8_t *body, size_t len, uint32_t type)
{
    bh_error err = { 0 };
    struct bh_qx_trigger t;
    if (type == BH_QX_MSG_TRIGGER_SERVICE4 && ctrl_version < 4) {
        refuse_message(type, (uint32_t)len, body, len, "TRIGGER_SERVICE4 needs protocol 4, the agent agreed on 3");
        return;
    }
    if (bh_qx_parse_trigger(type, body, len, &t, &err) < 0) {
        refuse_message(type, (uint32_t)len, body, len, err.msg);
        return;
    }
    if (t.source[0]) {
        /* As Qubes' policy: a requested source is only for a RemoteVM whose relay is the
         * caller. Bulkhead has no RemoteVM, so a qube can only call as itself. */
        refuse_message(type, (uint32_t)len, body, len, "a requested source is only authorized for a RemoteVM");
        return;
    }
    /* BULKHEAD_QREXEC_TEST_UNLIMITED_READER (tests only, set by nothing else): the
     * unprivileged side skips its limits, as a compromised one would, so that tests can
     * show the monitor's own limits hold. */
    static int unlimited = -1;
    if (unlimited < 0)
        unlimited = getenv("BULKHEAD_QREXEC_TEST_UNLIMITED_READER") != NULL;
    if (!unlimited && !call_rate_ok()) {
        refusal_log("%s: call %s to %s refused: over the call rate", qube_name, t.service, t.target);
        send_refused(t.ident);
        return;
    }
    int slot = -1;
    for (int i = 0; i < (unlimited ? MAX_TRIGGERS : max_pending); i++)
        if (!trigs[i].busy) {
            slot = i;
            break;
        }
    if (slot < 0) { /* a flood from one qube costs that qube its own calls only */
        bh_warn("%s: too many pending calls, refusing", qube_name);
        send_refused(t.ident);
        return;
    }
    int dport = port_alloc(0, -1);
    if (bh_qx_mon_send_call(mon, (uint32_t)slot, dport, t.ident, t.target, t.service) < 0) {
        if (dport > 0)
            port_release(0, (uint32_t)dport);
        send_refused(t.ident);
        return;
    }
    trigs[slot] = (struct trig){ .busy = true, .sp = -1, .dom0_port = dport };
    snprintf(trigs[slot].ident, sizeof trigs[slot].ident, "%s", t.ident);
}

static void handle_trig_answer(struct trig *t)
{
    uint8_t m[8];
    set_rcv_timeout(t->sp, 1); /* the call process is ours, but never block the loop */
    ssize_t r = bh_read_all(t->sp, m, 8);
    close(t->sp);
    t->sp = -1;
    t->answered = true;
    if (r != 8) {
        send_refused(t->ident);
        return;
    }
    t->used_dom0 = get32(m) == 0;
    char id[BH_QX_IDENT_LEN];
    memset(id, 0, sizeof id);
    snprintf(id, sizeof id, "%s", t->ident);
    if (bh_qx_send2(ctrl, BH_QX_MSG_SERVICE_CONNECT, m, 8, id, sizeof id) < 0)
        ctrl_fail("send", strerror(errno));
}

static void dispatch_agent_message(const struct bh_qx_hdr *h, const uint8_t *body)
{
    bh_error err = { 0 };
    switch (h->type) {
    case BH_QX_MSG_TRIGGER_SERVICE3:
    case BH_QX_MSG_TRIGGER_SERVICE4:
        handle_trigger(body, h->len, h->type);
        break;
    case BH_QX_MSG_CONNECTION_TERMINATED: {
        uint32_t dom, port;
        if (bh_qx_parse_terminated(body, h->len, &dom, &port, &err) == 0)
            port_release(dom, port);
        break;
    }
    default: /* HELLO again: the header check lets it through for the handshake only */
        refuse_message(h->type, h->len, body, h->len, "not expected after the handshake");
    }
}

/* Reads what the agent has sent so far (non-blocking) and handles every whole message. */
static void handle_agent(void)
{
    static uint8_t buf[65536];
    /* never blocks (whatever the agent does); the fd itself stays blocking for writes,
     * which SO_SNDTIMEO bounds */
    ssize_t r = recv(ctrl, buf, sizeof buf, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (r <= 0) {
        if (r < 0)
            ctrl_fail("read", strerror(errno));
        if (bh_qx_reader_partial(&ctrl_reader))
            bh_warn("agent of %s hung up in the middle of a message", qube_name);
        bh_info("agent of %s disconnected", qube_name);
        exit(0);
    }
    size_t off = 0;
    while (off < (size_t)r) {
        enum bh_qx_read_event ev;
        long k = bh_qx_reader_feed(&ctrl_reader, buf + off, (size_t)r - off, &ev);
        if (k < 0)
            ctrl_fail("reading", "out of memory");
        off += (size_t)k;
        if (ev == BH_QX_READ_MSG) {
            dispatch_agent_message(&ctrl_reader.hdr, ctrl_reader.body);
            bh_qx_reader_free(&ctrl_reader);
        } else if (ev == BH_QX_READ_SKIPPED) {
            refuse_message(ctrl_reader.hdr.type, ctrl_reader.hdr.len, ctrl_reader.prefix, ctrl_reader.prefix_have,
                           ctrl_reader.why.msg);
        }
    }
}

/* The monitor's reports: a call process started (with the socket it answers on), or a
 * call process ended (or never started). */
static void handle_monitor(void)
{
    struct bh_qx_mon_msg m;
    int fd = -1;
    int r = bh_qx_mon_recv(mon, &m, &fd);
    if (r == 0) { /* the monitor is gone: so are we */
        bh_warn("%s: monitor gone; exiting", qube_name);
        exit(1);
    }
    if (r < 0 || m.slot >= MAX_TRIGGERS || !trigs[m.slot].busy) {
        if (fd >= 0)
            close(fd);
        return;
    }
    struct trig *t = &trigs[m.slot];
    if (m.op == BH_QX_MON_STARTED) {
        if (t->sp >= 0 || t->answered || fd < 0) {
            if (fd >= 0)
                close(fd);
            return;
        }
        t->sp = fd;
        return;
    }
    if (fd >= 0)
        close(fd);
    if (m.op != BH_QX_MON_DONE)
        return;
    if (!t->answered) {
        if (t->sp >= 0)
            handle_trig_answer(t); /* what it wrote before it ended, or EOF = refused */
        else {
            t->answered = true;
            send_refused(t->ident);
        }
    }
    /* a dom0 call's port is freed by the agent's CONNECTION_TERMINATED */
    if (t->dom0_port > 0 && !t->used_dom0)
        ports[t->dom0_port - FIRST_DATA_PORT] = (struct port){ false, 0, -1 };
    *t = (struct trig){ .sp = -1 };
}


/* ---- the root monitor ------------------------------------------------------------------ */

/* Call processes by slot, as the monitor knows them (it never trusts the unprivileged
 * side's idea of which slots are busy). */
static pid_t call_pids[MAX_TRIGGERS];

static pid_t mon_up = -1; /* the unprivileged side */
static int mon_sfd = -1;  /* the monitor's signalfd */

static _Noreturn void monitor_exit(pid_t up, int code);

/* Replies never block the monitor: a side that asks for calls but does not read their
 * answers fills the socket; it is then broken (or compromised) and is ended. */
static void mon_reply(uint32_t op, uint32_t slot, int pass_fd)
{
    /* A busy but healthy side gets 5 s to make room (its queue holds only a few
     * messages: max_dgram_qlen) */
    for (int waited = 0; bh_qx_mon_send(mon, op, slot, pass_fd) < 0; waited++) {
        if (errno != EAGAIN || waited == 50)
            goto broken;
        struct timespec ts = { 0, 100 * 1000000L };
        nanosleep(&ts, NULL);
    }
    return;
broken:
    bh_warn("%s: the unprivileged side does not take the monitor's answers (%s): ending it", qube_name,
            strerror(errno));
    if (mon_up > 0)
        kill(mon_up, SIGKILL);
    monitor_exit(mon_up, -1);
}

static void start_call(const struct bh_qx_mon_call *c)
{
    if (call_pids[c->slot]) {
        bh_warn("%s: call for busy slot %u refused", qube_name, c->slot);
        return;
    }
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) < 0) {
        mon_reply(BH_QX_MON_DONE, c->slot, -1);
        return;
    }
    /* policy.d as it is now, loaded again only if it changed since the last call: the
     * call process inherits it (bh_qx_policy_preload then has nothing to do) */
    bh_qx_policy_refresh(&policy_ctx);
    pid_t pid = fork();
    if (pid < 0) {
        close(sp[0]), close(sp[1]);
        mon_reply(BH_QX_MON_DONE, c->slot, -1);
        return;
    }
    if (pid == 0) {
        close(sp[0]);
        close(mon);
        close(mon_sfd);
        signal(SIGCHLD, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        signal(SIGINT, SIG_DFL);
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        trigger_child(sp[1], c->ident, c->target, c->service, c->dom0_port);
    }
    close(sp[1]);
    call_pids[c->slot] = pid;
    int fd = sp[0];
    mon_reply(BH_QX_MON_STARTED, c->slot, fd);
    close(fd);
}

/* The monitor's one hand-off to the unprivileged side at start: the agent's connection
 * and the clients' listening socket, as one message 'S' with the two fds (bh_send_fds). */
static int recv_setup_fds(int sock, int *a, int *b)
{
    char tag = 0;
    struct iovec iov = { &tag, 1 };
    union {
        char buf[CMSG_SPACE(2 * sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf, .msg_controllen = sizeof u.buf };
    ssize_t n;
    while ((n = recvmsg(sock, &m, MSG_CMSG_CLOEXEC)) < 0 && errno == EINTR && !stop)
        ;
    struct cmsghdr *c = n == 1 ? CMSG_FIRSTHDR(&m) : NULL;
    if (!c || tag != 'S' || (m.msg_flags & (MSG_CTRUNC | MSG_TRUNC)) || c->cmsg_level != SOL_SOCKET ||
        c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(2 * sizeof(int))) {
        if (c && c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
            /* close whatever came */
            size_t k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            int fds[8];
            memcpy(fds, CMSG_DATA(c), (k < 8 ? k : 8) * sizeof(int));
            for (size_t i = 0; i < k && i < 8; i++)
                close(fds[i]);
        }
        return -1;
    }
    int fds[2];
    memcpy(fds, CMSG_DATA(c), sizeof fds);
    *a = fds[0];
    *b = fds[1];
    return 0;
}

/* The name of our listening socket, as bound: removed at the end only if it is still
 * ours (a successor daemon for the same qube may have bound the name since). */
static dev_t sock_dev;
static ino_t sock_ino;

static void unlink_own_socket(void)
{
    struct stat st;
    if (sock_ino && lstat(sock_path, &st) == 0 && st.st_dev == sock_dev && st.st_ino == sock_ino)
        (void)unlink(sock_path);
}

static _Noreturn void monitor_exit(pid_t up, int code)
{
    if (up > 0) {
        /* SIGTERM, then SIGKILL after 2 s: the unprivileged side may ignore the first.
         * Its end is awaited on a pidfd: steps of 10 ms made every halt wait ~10 ms for
         * a side that ends within one. */
        int pfd = -1;
#ifdef SYS_pidfd_open
        pfd = (int)syscall(SYS_pidfd_open, up, 0);
#endif
        kill(up, SIGTERM);
        int st = 0;
        pid_t w = 0;
        if (pfd >= 0) {
            (void)bh_pidfd_wait(pfd, 2000);
            close(pfd);
            w = waitpid(up, &st, WNOHANG);
        } else {
            for (int i = 0; i < 200 && (w = waitpid(up, &st, WNOHANG)) == 0; i++) {
                struct timespec ts = { 0, 10 * 1000000L };
                nanosleep(&ts, NULL);
            }
        }
        if (w == 0) {
            kill(up, SIGKILL);
            w = waitpid(up, &st, 0);
        }
        if (w == up && WIFEXITED(st) && code < 0)
            code = WEXITSTATUS(st);
    }
    unlink_own_socket();
    exit(code < 0 ? 1 : code);
}

/* Root, small: forks the call processes the unprivileged side asks for (after checking
 * every field again), reports their end, and ends with it. */
static _Noreturn void monitor_run(pid_t up, int sfd)
{
    bh_log_init("qrexec-daemon-monitor");
    mon_up = up;
    mon_sfd = sfd;
    while (!stop) {
        struct pollfd p[2] = { { .fd = mon, .events = POLLIN }, { .fd = sfd, .events = POLLIN } };
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents) {
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) > 0)
                ;
            int st;
            pid_t pid;
            while ((pid = waitpid(-1, &st, WNOHANG)) > 0) {
                if (pid == up) { /* its exit code is the daemon's (0: the agent hung up) */
                    unlink_own_socket();
                    exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
                }
                for (uint32_t i = 0; i < MAX_TRIGGERS; i++)
                    if (call_pids[i] == pid) {
                        call_pids[i] = 0;
                        mon_reply(BH_QX_MON_DONE, i, -1);
                    }
            }
        }
        if (p[0].revents) {
            bh_error err = { 0 };
            struct bh_qx_mon_call c;
            /* The unprivileged side applies the qube's limits (pending calls, rate) and
             * says which slot a call takes; a compromised one would not, so the monitor
             * holds the same limits itself (its bucket starts later and has 2 calls of
             * slack: an honest side never meets it). */
            int r = bh_qx_mon_recv_call(mon, (uint32_t)max_pending, FIRST_DATA_PORT, FIRST_DATA_PORT + MAX_PORTS, &c,
                                        &err);
            if (r == 0)
                monitor_exit(up, -1);
            if (r < 0) {
                bh_warn("%s: monitor refused a request: %s", qube_name, err.msg);
                if (err.errnum != EINVAL && err.errnum != ERANGE && err.errnum != EPROTO && err.errnum != EMSGSIZE)
                    monitor_exit(up, -1);
                continue;
            }
            static struct rate_bucket mon_bucket;
            if (!bucket_take(&mon_bucket, 2)) {
                bh_warn("%s: monitor: call over the rate refused (the unprivileged side should have)", qube_name);
                if (!call_pids[c.slot])
                    mon_reply(BH_QX_MON_DONE, c.slot, -1);
            } else {
                start_call(&c);
            }
            free(c.service);
        }
    }
    monitor_exit(up, 0);
}

/* The monitor's part of the start, before it serves: wait for bulkheadd's word that the
 * agent is listening (when started alongside the qube), connect to the agent, bind the
 * clients' socket, and hand both to the unprivileged side. 0, or the exit code. */
static int monitor_setup(int go_fd, int startup_timeout)
{
    bh_error err = { 0 };
    /* Nothing of the qube's is reached before its reader is confined: the unprivileged
     * side says 'C' once its IDs are dropped and its filter is loaded (EOF: it failed,
     * and said why). */
    struct pollfd cp = { .fd = mon, .events = POLLIN };
    char confined = 0;
    int cr;
    while ((cr = poll(&cp, 1, startup_timeout * 1000)) < 0 && errno == EINTR && !stop)
        ;
    if (cr != 1 || recv(mon, &confined, 1, 0) != 1 || confined != 'C') {
        bh_err("%s: the unprivileged side did not start", qube_name);
        return 1;
    }
    /* Started alongside the qube (bulkheadd overlaps our exec and set-up with its boot):
     * connect only once bulkheadd says the qube's init reported its agent listening.
     * EOF or a timeout: the start failed, there is nothing to serve. */
    if (go_fd >= 0) {
        struct pollfd gp = { .fd = go_fd, .events = POLLIN };
        int pr;
        char go = 0;
        /* (TERM's handler is set by now: a TERM ends the wait as it ended the process) */
        while ((pr = poll(&gp, 1, startup_timeout * 1000)) < 0 && errno == EINTR && !stop)
            ;
        if (pr != 1 || read(go_fd, &go, 1) != 1 || go != 'G') {
            bh_debug("%s: start abandoned before the agent was up", qube_name);
            return 3;
        }
        close(go_fd);
    }
    ctrl = bh_vchan_connect_peer(vchan_dir, qid, 0, BH_QX_VCHAN_BASE_PORT, agent_uid, 1, startup_timeout * 1000, &err);
    if (ctrl < 0) {
        bh_err("cannot connect to the agent of %s: %s", qube_name, err.msg);
        return 3;
    }
    /* root's alone: dom0's tools (qrexec-client, qvm-run) and bulkheadd, which connects
     * the other qubes' calls (internal.qrexec.ConnectTarget). Only the test stub's
     * world, which has no bulkheadd, lets the call processes' group connect. */
    int lfd = bh_unix_listen(sock_path, policy_ctx.stub_allow ? 0660 : 0600, &err);
    if (lfd < 0) {
        bh_err("%s", err.msg);
        return 1;
    }
    struct stat sst;
    if (lstat(sock_path, &sst) == 0) {
        sock_dev = sst.st_dev;
        sock_ino = sst.st_ino;
    }
    if (geteuid() == 0 && policy_ctx.stub_allow && lchown(sock_path, 0, BH_QX_CALL_GID) < 0) {
        bh_err("chown %s: %s", sock_path, strerror(errno));
        close(lfd);
        return 1;
    }
    if (geteuid() == 0)
        hide_runtime_dir();
    int r = bh_send_fds(mon, 'S', (const int[]){ ctrl, lfd }, 2);
    close(ctrl);
    ctrl = -1;
    close(lfd);
    if (r < 0) {
        bh_err("%s: handing the agent to the unprivileged side: %s", qube_name, strerror(errno));
        return 1;
    }
    return 0;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: qrexec-daemon --name NAME --domid QID [--runtime DIR] [--vchan-dir DIR] [--socket PATH]\n"
            "                     [--ready-fd N] [--go-fd N] [--startup-timeout S] [--call-timeout S]\n"
            "                     [--default-user USER] [--dom0-service-path DIRS]\n"
            "                     [--policy-dir DIR] [--ask-program PROG] [--test-allow FILE]\n"
            "                     [--agent-uid UID]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bh_log_init("qrexec-daemon");
    int ready_fd = -1, go_fd = -1, startup_timeout = 60;
    long domid = -1;
    static const struct option lo[] = {
        { "name", required_argument, 0, 'n' }, { "domid", required_argument, 0, 'd' },
        { "runtime", required_argument, 0, 'r' }, { "vchan-dir", required_argument, 0, 'v' },
        { "socket", required_argument, 0, 's' }, { "ready-fd", required_argument, 0, 'R' },
        { "startup-timeout", required_argument, 0, 'S' }, { "call-timeout", required_argument, 0, 'C' },
        { "default-user", required_argument, 0, 'u' }, { "dom0-service-path", required_argument, 0, 'D' },
        { "policy-dir", required_argument, 0, 'P' }, { "test-allow", required_argument, 0, 'A' },
        { "ask-program", required_argument, 0, 'K' }, { "go-fd", required_argument, 0, 'G' },
        { "agent-uid", required_argument, 0, 'U' }, { 0, 0, 0, 0 } };
    int o;
    char *vd = NULL, *sp = NULL;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'n': qube_name = optarg; break;
        case 'd': domid = strtol(optarg, NULL, 10); break;
        case 'r': runtime = optarg; break;
        case 'v': vd = optarg; break;
        case 's': sp = optarg; break;
        case 'R': ready_fd = atoi(optarg); break;
        case 'G': go_fd = atoi(optarg); break;
        case 'U':
            if (!bh_parse_host_uid(optarg, &agent_uid)) {
                fprintf(stderr, "qrexec-daemon: --agent-uid: not a UID: %s\n", optarg);
                return 2;
            }
            break;
        case 'S': startup_timeout = atoi(optarg); break;
        case 'C': call_timeout_s = atoi(optarg); break;
        case 'u': default_user = optarg; break;
        case 'D': dom0_service_path = optarg; break;
        case 'P': policy_ctx.policy_dir = optarg; break;
        case 'A': policy_ctx.stub_allow = optarg; break;
        case 'K': policy_ctx.ask_program = optarg; break;
        default: usage();
        }
    }
    if (!policy_ctx.ask_program)
        policy_ctx.ask_program = getenv("BULKHEAD_QREXEC_ASK");
    if (!dom0_service_path) /* bulkheadd passes its environment on */
        dom0_service_path = getenv("BULKHEAD_DOM0_SERVICE_PATH");
    const char *mp_env = getenv("BULKHEAD_QREXEC_MAX_PENDING");
    if (mp_env && *mp_env) {
        long v = strtol(mp_env, NULL, 10);
        max_pending = v < 1 ? 1 : v > MAX_TRIGGERS ? MAX_TRIGGERS : (int)v;
    }
    if (!qube_name || domid <= 0 || domid > 0xffff || !bh_qube_name_valid(qube_name, NULL))
        usage();
    qid = (uint32_t)domid;
    runtime = bh_qx_runtime(runtime);
    /* the ask program finds the prompt agent at <runtime>/policy-agent.sock */
    setenv("BULKHEAD_RUNTIME", runtime, 1);
    static char vbuf[4096], sbuf[4096];
    if (!vd) {
        bh_qx_qube_path(vbuf, sizeof vbuf, runtime, qube_name, "vchan");
        vd = vbuf;
    }
    if (!sp) {
        bh_qx_qube_path(sbuf, sizeof sbuf, runtime, qube_name, "qrexec.sock");
        sp = sbuf;
    }
    vchan_dir = vd;
    sock_path = sp;
    for (int i = 0; i < MAX_CLIENTS; i++)
        clients[i] = (struct client){ -1, C_FREE, -1 };
    for (int i = 0; i < MAX_PORTS; i++)
        ports[i].client = -1;
    for (int i = 0; i < MAX_TRIGGERS; i++)
        trigs[i].sp = -1;
    signal(SIGPIPE, SIG_IGN);

    bh_error err = { 0 };
    /* Privilege separation: a child reads the agent (its HELLO included) and the dom0
     * clients, unprivileged; this process stays root only to fork call processes on
     * request, and parses no byte the qube sent. Both halves are made and confined
     * (fork, ID drop, seccomp filters) before the agent is up: started alongside the
     * qube, that overlaps the qube's boot instead of following it. The monitor then
     * connects to the agent and binds the clients' socket (root's work) and hands both
     * to the child. */
    int mp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, mp) < 0) {
        bh_err("socketpair: %s", strerror(errno));
        return 1;
    }
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    pid_t monitor = getpid();
    pid_t up = fork();
    if (up < 0) {
        bh_err("fork: %s", strerror(errno));
        return 1;
    }
    if (up > 0) {
        close(mp[1]);
        mon = mp[0];
        int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
        if (ready_fd >= 0) /* the unprivileged side says ready, after the handshake */
            close(ready_fd);
        /* a denylist: what follows (connect, bind, chmod) is not on it */
        if (bh_qx_seccomp_root(&err) < 0) {
            bh_err("%s: %s", qube_name, err.msg);
            monitor_exit(up, 1);
        }
        int code = monitor_setup(go_fd, startup_timeout);
        if (code) {
            close(mon); /* EOF: the unprivileged side, still waiting for its fds, exits */
            mon = -1;
            monitor_exit(up, code);
        }
        monitor_run(up, sfd);
    }
    close(mp[0]);
    if (go_fd >= 0)
        close(go_fd);
    mon = mp[1];
    prctl(PR_SET_NAME, "qrexec-unpriv", 0, 0, 0);
    if (bh_qx_drop_privileges(bh_qx_unpriv_id(qid), &err) < 0) {
        bh_err("%s: %s", qube_name, err.msg);
        return 1;
    }
    /* the death signal is cleared by the credential change, so set it after; the
     * monitor's end also shows as EOF on mon */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || getppid() != monitor)
        return 1;
    if (bh_qx_seccomp_unpriv(&err) < 0) {
        bh_err("%s: %s", qube_name, err.msg);
        return 1;
    }
    if (send(mon, "C", 1, MSG_NOSIGNAL) != 1)
        return 1;
    /* the agent's connection and the clients' listening socket, from the monitor; EOF:
     * the start was abandoned or the monitor failed (it said why) */
    int lfd = -1;
    if (recv_setup_fds(mon, &ctrl, &lfd) < 0)
        return 3;
    /* Until the handshake is done, reads wait at most 10 s; writes always do (an agent
     * that stops reading makes a send fail, not block the daemon). */
    set_rcv_timeout(ctrl, 10);
    /* As Qubes' daemon: the agent's HELLO first, then ours, with the version both use. */
    uint32_t theirs = 0, ver;
    if (bh_qx_recv_hello(ctrl, BH_QX_FROM_AGENT, &theirs, &err) < 0 ||
        bh_qx_negotiate(BH_QX_VERSION, theirs, &ver, &err) < 0 || bh_qx_send_hello_v(ctrl, ver) < 0) {
        bh_err("agent of %s: %s", qube_name, err.msg[0] ? err.msg : strerror(errno));
        return 1;
    }
    ctrl_version = ver;
    bh_qx_reader_init(&ctrl_reader, BH_QX_FROM_AGENT);
    bh_info("%s (qid %u): agent protocol %u, listening on %s", qube_name, qid, ver, sock_path);
    if (ready_fd >= 0) {
        bh_write_all(ready_fd, "1", 1);
        close(ready_fd);
    }

    while (!stop) {
        struct pollfd p[3 + MAX_CLIENTS + MAX_TRIGGERS];
        int who[3 + MAX_CLIENTS + MAX_TRIGGERS];
        int n = 0;
        p[n] = (struct pollfd){ .fd = mon, .events = POLLIN }; who[n++] = -1;
        p[n] = (struct pollfd){ .fd = ctrl, .events = POLLIN }; who[n++] = -2;
        p[n] = (struct pollfd){ .fd = lfd, .events = POLLIN }; who[n++] = -3;
        for (int i = 0; i < MAX_CLIENTS; i++)
            if (clients[i].fd >= 0) {
                p[n] = (struct pollfd){ .fd = clients[i].fd, .events = POLLIN };
                who[n++] = i;
            }
        for (int i = 0; i < MAX_TRIGGERS; i++)
            if (trigs[i].busy && trigs[i].sp >= 0) {
                p[n] = (struct pollfd){ .fd = trigs[i].sp, .events = POLLIN };
                who[n++] = 1000 + i;
            }
        if (poll(p, (nfds_t)n, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        for (int k = 0; k < n; k++) {
            if (!p[k].revents)
                continue;
            int w = who[k];
            if (w == -1) {
                handle_monitor();
            } else if (w == -2) {
                handle_agent();
            } else if (w == -3) {
                int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
                if (fd < 0)
                    continue;
                int ci = -1;
                for (int i = 0; i < MAX_CLIENTS; i++)
                    if (clients[i].fd < 0) {
                        ci = i;
                        break;
                    }
                if (ci < 0 || bh_qx_send_hello_v(fd, BH_QX_CLIENT_VERSION) < 0) {
                    close(fd);
                    continue;
                }
                set_rcv_timeout(fd, 5);
                clients[ci] = (struct client){ fd, C_HELLO, -1 };
            } else if (w >= 1000) {
                if (trigs[w - 1000].busy && trigs[w - 1000].sp == p[k].fd)
                    handle_trig_answer(&trigs[w - 1000]);
            } else if (clients[w].fd == p[k].fd) {
                if (clients[w].st == C_RUNNING) {
                    /* only EOF is expected; the port stays until the agent frees it */
                    client_close(w);
                } else {
                    handle_client_cmd(w);
                }
            }
        }
    }
    return 0; /* the monitor removes the socket */
}
