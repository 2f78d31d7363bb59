/* libnftables runs in a long-lived helper process forked once at bulkheadd's start,
 * instead of in bulkheadd itself.
 *
 * Why: each fork of bulkheadd (a qube's start forks it four times, a Kill once) leaves
 * its memory shared copy-on-write, and afterwards the first write to each page takes a
 * fault (~15 us each on the paravirtualized 2-core test machine). A libnftables run
 * writes a few hundred pages (its cache's hash tables alone are 128 KiB each): in a
 * process that had just forked it took ~4 ms, against ~0.3 ms in one that had not
 * forked since its last run (docs/bench.md, eighth round). The helper never forks, so
 * its pages stay its own and warm. Same library, same scripts, one transaction each, as
 * before: only the process that runs them changed.
 *
 * It is root (setns into the target namespace needs CAP_SYS_ADMIN, nftables
 * CAP_NET_ADMIN), holds no fd of bulkheadd's but its end of a socketpair, reads
 * nothing but bulkheadd's requests from it, and ends when that end closes (or when
 * bulkheadd dies: PR_SET_PDEATHSIG). A helper that fails (died, or no answer within
 * HELPER_TIMEOUT_MS) is killed and reaped, and bulkheadd runs nftables itself from
 * then on, as before (said once in its log); the transaction it was given then is
 * reported failed unless it never had all of it (ask_helper).
 *
 * The helper lives in a network namespace of its own holding one inert table (accept
 * policies, nothing to match: no link but a loopback that is down) whose base chains sit
 * on every IPv4 and IPv6 hook the qubes' tables use, with connection tracking. The
 * kernel turns its per-hook fast-path switches (static keys) on when the first
 * namespace anywhere registers such a hook and off when the last one goes, by patching
 * its own code: ~3 ms a time on the test machine. Without this table, every qube start
 * while no networked qube ran paid it (a Kill had just removed the last hooks); with it,
 * a start's transaction took ~0.25 ms (C loop, same script). On a host with a netvm
 * running the switches are on anyway. */
#include "nft.h"
#include "io.h"
#include "log.h"
#include "netns.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define HELPER_TIMEOUT_MS 30000
#define SCRIPT_MAX (16u << 20) /* far above any ruleset we make; bounds the helper's buffer */

/* A request: one byte REQ_TAG with the namespace's fd (bh_send_fds), then the script's
 * length (uint32_t) and the script on the stream. */
#define REQ_TAG 'R'

struct reply {
    int32_t rc;
    int32_t errnum;
    char msg[sizeof(((bh_error *)0)->msg)];
};

static int helper_fd = -1;
static pid_t helper_pid = -1;
static pid_t helper_owner = -1; /* the process that started it: a child forked from it
                                  * has a copy of helper_fd, and two writers would mix
                                  * their requests on the one stream */

/* The hooks of the qubes' tables (topology.c, ruleset.c, fwrule.c) and conntrack. */
static const char keep_hooks_on[] =
    "table inet bulkhead_hooks {\n"
    "  chain h_pre_raw { type filter hook prerouting priority raw - 1; policy accept; }\n"
    "  chain h_out_raw { type filter hook output priority raw - 1; policy accept; }\n"
    "  chain h_pre { type filter hook prerouting priority filter; policy accept; ct state new accept; }\n"
    "  chain h_in { type filter hook input priority filter; policy accept; }\n"
    "  chain h_fwd { type filter hook forward priority filter - 1; policy accept; }\n"
    "  chain h_out { type filter hook output priority filter - 1; policy accept; }\n"
    "  chain h_post { type filter hook postrouting priority filter; policy accept; }\n"
    "  chain h_dnat { type nat hook prerouting priority dstnat; policy accept; }\n"
    "  chain h_snat { type nat hook postrouting priority srcnat; policy accept; }\n"
    "}\n";

static void serve(int sock)
{
    /* A home of its own (why: the comment at the top); if it cannot be had, the
     * helper works from bulkheadd's namespace, only slower at times. */
    bh_error herr = { 0 };
    if (unshare(CLONE_NEWNET) < 0 || bh_nft_run_here(-1, keep_hooks_on, &herr) < 0)
        bh_warn("nftables helper: no namespace of its own to keep the hooks' switches on (%s)",
                herr.msg[0] ? herr.msg : strerror(errno));

    for (;;) {
        char tag = 0;
        int nsfd = -1;
        uint32_t len = 0;
        ssize_t n = bh_recv_with_fd(sock, &tag, 1, &nsfd);
        if (n != 1 || tag != REQ_TAG || nsfd < 0 || bh_read_all(sock, &len, sizeof len) != (ssize_t)sizeof len ||
            len > SCRIPT_MAX)
            _exit(n == 0 ? 0 : 1); /* bulkheadd closed its end (or broke the protocol) */
        char *script = malloc((size_t)len + 1);
        if (!script || bh_read_all(sock, script, len) != (ssize_t)len)
            _exit(1);
        script[len] = '\0';
        bh_error err = { 0 };
        struct reply r = { 0 };
        r.rc = bh_nft_run_here(nsfd, script, &err);
        if (r.rc < 0) {
            r.errnum = err.errnum;
            snprintf(r.msg, sizeof r.msg, "%s", err.msg);
        }
        free(script);
        close(nsfd);
        if (bh_write_all(sock, &r, sizeof r) < 0)
            _exit(1);
    }
}

int bh_nft_helper_start(bh_error *err)
{
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return bh_fail_errno(err, "nftables helper: socketpair");
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(sv[0]);
        close(sv[1]);
        errno = e;
        return bh_fail_errno(err, "nftables helper: fork");
    }
    if (pid == 0) {
        /* Nothing of bulkheadd's but stderr (its log) and this socket, as fd 3. */
        if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
            _exit(1);
        if ((sv[1] != 3 && dup3(sv[1], 3, 0) != 3) || close_range(4, ~0U, 0) < 0)
            _exit(1);
        int devnull = open("/dev/null", O_RDWR);
        if (devnull >= 0) {
            dup2(devnull, 0);
            dup2(devnull, 1);
            if (devnull > 2 && devnull != 3)
                close(devnull);
        }
        (void)prctl(PR_SET_NAME, "bulkheadd-nft");
        /* A terminal's signals to bulkheadd's group are not for it: it ends on EOF,
         * after bulkheadd's last transaction, or with bulkheadd (PDEATHSIG). */
        static const int quiet[] = { SIGINT, SIGTERM, SIGHUP, SIGQUIT };
        for (size_t i = 0; i < sizeof quiet / sizeof *quiet; i++)
            signal(quiet[i], SIG_IGN);
        sigset_t all;
        sigfillset(&all);
        sigprocmask(SIG_UNBLOCK, &all, NULL);
        serve(3);
    }
    close(sv[1]);
    helper_fd = sv[0];
    helper_pid = pid;
    helper_owner = parent;
    return 0;
}

/* Closes the helper's socket (EOF ends it), gives it grace_ms to end so, SIGKILLs it
 * otherwise, and reaps it if it is gone within half a second after that (one stuck in
 * the kernel is left unreaped rather than holding bulkheadd: its PID stays its own). */
static void helper_end(int grace_ms)
{
    close(helper_fd);
    helper_fd = -1;
    int pfd = (int)syscall(SYS_pidfd_open, helper_pid, 0);
    bool gone = pfd >= 0 && grace_ms > 0 && bh_pidfd_wait(pfd, grace_ms) == 1;
    if (!gone) {
        kill(helper_pid, SIGKILL); /* our unreaped child: the PID is still its own */
        gone = pfd < 0 || bh_pidfd_wait(pfd, 500) == 1;
    }
    if (gone)
        while (waitpid(helper_pid, NULL, 0) < 0 && errno == EINTR)
            ;
    if (pfd >= 0)
        close(pfd);
    helper_pid = -1;
}

static void helper_stop(const char *why)
{
    bh_warn("nftables helper %s: running nftables in bulkheadd from now on", why);
    helper_end(0);
}

void bh_nft_helper_stop(void)
{
    if (helper_fd >= 0 && getpid() == helper_owner)
        helper_end(1000); /* reaped here, not left to whoever inherits it */
}

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

/* Waits for ev on the helper's socket until deadline: 1 ready, 0 timed out, -1 error. */
static int wait_for(short ev, int64_t deadline)
{
    for (;;) {
        int64_t left = deadline - now_ms();
        if (left <= 0)
            return 0;
        struct pollfd p = { .fd = helper_fd, .events = ev };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        return r < 0 ? -1 : r > 0;
    }
}

/* n bytes, whole, by the deadline (the socket's buffer is smaller than a large
 * ruleset: a helper that stopped reading must not hold bulkheadd). */
static int send_until(const char *p, size_t n, int64_t deadline)
{
    while (n) {
        ssize_t w = send(helper_fd, p, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            p += w;
            n -= (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            if (wait_for(POLLOUT, deadline) != 1)
                return -1;
        } else {
            return -1;
        }
    }
    return 0;
}

/* 1: answered (*rc, err filled); 0: nothing of it reached the helper, which is stopped
 * now: run it here. A helper that fails after it had the whole script may have
 * committed it: that run is reported failed (EIO), never made a second time (a script
 * that only adds would add twice). */
static int ask_helper(int nsfd, const char *script, int *rc, bh_error *err)
{
    size_t len = strlen(script);
    if (len > SCRIPT_MAX)
        return 0;
    /* Always a namespace: -1 means the caller's own, which is this thread's. */
    int own = -1;
    if (nsfd < 0 && (nsfd = own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    int64_t deadline = now_ms() + HELPER_TIMEOUT_MS;
    int sent = bh_send_fds(helper_fd, REQ_TAG, &nsfd, 1);
    int e = errno;
    if (own >= 0)
        close(own);
    if (sent < 0 && e != EPIPE && e != ECONNRESET) {
        /* nothing was sent (a bad fd, say): the stream is as it was, the helper fine */
        errno = e;
        *rc = bh_fail_errno(err, "nftables helper: sending a request");
        return 1;
    }
    uint32_t len32 = (uint32_t)len;
    if (sent < 0 || send_until((const char *)&len32, sizeof len32, deadline) < 0 ||
        send_until(script, len, deadline) < 0) {
        /* it runs nothing until it has the whole script */
        helper_stop("cannot be reached");
        return 0;
    }
    struct reply r;
    int ready = wait_for(POLLIN, deadline);
    if (ready != 1 || bh_read_all(helper_fd, &r, sizeof r) != (ssize_t)sizeof r) {
        helper_stop(ready == 0 ? "did not answer in time" : "ended during a transaction");
        *rc = bh_fail(err, EIO, "nftables: the helper ended during the transaction (it may or may not have "
                                "taken effect)");
        return 1;
    }
    r.msg[sizeof r.msg - 1] = '\0';
    *rc = r.rc < 0 ? bh_fail(err, r.errnum ? r.errnum : EINVAL, "%s", r.msg) : 0;
    return 1;
}

int bh_nft_run(int nsfd, const char *script, bh_error *err)
{
    int rc;
    if (helper_fd >= 0 && getpid() == helper_owner && ask_helper(nsfd, script, &rc, err))
        return rc;
    return bh_nft_run_here(nsfd, script, err);
}
