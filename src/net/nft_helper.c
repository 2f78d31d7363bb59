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
 * then on, as before (said once in its log); the transactions it was given then are
 * reported failed unless it never had all of one (fail_unanswered, send_request).
 *
 * Transactions can be handed over without waiting (bh_nft_submit, then
 * bh_nft_collect): a qube's start does, so that its table goes in while the engine
 * prepares the qube. The helper answers in the order it was asked.
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

/* Transactions handed to the helper and not yet collected, in the order they were
 * sent (the helper answers in that order: each answer is the oldest unanswered one's).
 * A start has two at most in flight (the qube's table, its netvm's); the room is for
 * callers that forget theirs. */
#define MAX_TICKETS 16

struct ticket {
    int id; /* 0: a free slot */
    bool answered, forgotten;
    uint64_t seq; /* order of sending */
    int64_t deadline; /* for handing it over whole */
    int rc;
    bh_error err;
};

static struct ticket tickets[MAX_TICKETS];
static int last_id;
static uint64_t last_seq;

static void ticket_free(struct ticket *t)
{
    if (t->rc < 0 && t->forgotten)
        bh_warn("nftables: a transaction nobody waited for failed: %s", t->err.msg);
    memset(t, 0, sizeof *t);
}

static void ticket_answer(struct ticket *t, int rc, const bh_error *err)
{
    t->answered = true;
    t->rc = rc;
    if (rc < 0 && err)
        t->err = *err;
    if (t->forgotten)
        ticket_free(t);
}

static struct ticket *oldest_unanswered(void)
{
    struct ticket *o = NULL;
    for (int i = 0; i < MAX_TICKETS; i++)
        if (tickets[i].id && !tickets[i].answered && (!o || tickets[i].seq < o->seq))
            o = &tickets[i];
    return o;
}

/* A helper that failed may have committed what it had whole: those transactions are
 * reported failed (EIO), never made a second time (a script that only adds would add
 * twice). */
static void fail_unanswered(void)
{
    bh_error e = { 0 };
    bh_fail(&e, EIO, "nftables: the helper ended during the transaction (it may or may not have taken effect)");
    for (struct ticket *t; (t = oldest_unanswered());)
        ticket_answer(t, -1, &e);
}

/* Closes the helper's socket (EOF ends it), gives it grace_ms to end so, SIGKILLs it
 * otherwise, and reaps it if it is gone within half a second after that (one stuck in
 * the kernel is left unreaped rather than holding bulkheadd: its PID stays its own). */
static void helper_end(int grace_ms)
{
    close(helper_fd);
    helper_fd = -1;
    fail_unanswered();
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

/* Reads the helper's next answer, the oldest unanswered transaction's; a helper that
 * does not give it by that transaction's deadline is stopped (fail_unanswered). */
static void read_answer(void)
{
    struct ticket *t = oldest_unanswered();
    if (!t)
        return;
    if (helper_fd < 0 || getpid() != helper_owner) {
        fail_unanswered(); /* none can come (a fork's copy of the table: not ours to read) */
        return;
    }
    /* HELPER_TIMEOUT_MS from now: the clock of a transaction queued behind others (or
     * forgotten and read only at the next one) starts when it is the one awaited */
    struct reply r;
    int ready = wait_for(POLLIN, now_ms() + HELPER_TIMEOUT_MS);
    if (ready != 1 || bh_read_all(helper_fd, &r, sizeof r) != (ssize_t)sizeof r) {
        helper_stop(ready == 0 ? "did not answer in time" : "ended during a transaction");
        return;
    }
    r.msg[sizeof r.msg - 1] = '\0';
    bh_error e = { 0 };
    if (r.rc < 0)
        bh_fail(&e, r.errnum ? r.errnum : EINVAL, "%s", r.msg);
    ticket_answer(t, r.rc < 0 ? -1 : 0, &e);
}

/* Sends the request: 1 sent (t awaits its answer); 0 nothing of it reached the helper,
 * which is stopped now: run it here; 2 not sent, the helper still fine (t answered). */
static int send_request(int nsfd, const char *script, struct ticket *t)
{
    size_t len = strlen(script);
    if (len > SCRIPT_MAX)
        return 0;
    /* Always a namespace: -1 means the caller's own, which is this thread's. */
    int own = -1;
    if (nsfd < 0 && (nsfd = own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) < 0)
        return 0;
    int sent = bh_send_fds(helper_fd, REQ_TAG, &nsfd, 1);
    int e = errno;
    if (own >= 0)
        close(own);
    if (sent < 0 && e != EPIPE && e != ECONNRESET) {
        /* nothing was sent (a bad fd, say): the stream is as it was, the helper fine */
        bh_error err = { 0 };
        errno = e;
        bh_fail_errno(&err, "nftables helper: sending a request");
        ticket_answer(t, -1, &err);
        return 2;
    }
    uint32_t len32 = (uint32_t)len;
    if (sent < 0 || send_until((const char *)&len32, sizeof len32, t->deadline) < 0 ||
        send_until(script, len, t->deadline) < 0) {
        /* it runs nothing until it has the whole script */
        t->answered = true; /* not this one's failure: fail_unanswered leaves it be */
        helper_stop("cannot be reached");
        t->answered = false;
        return 0;
    }
    return 1;
}

/* A free slot; with none, the oldest answers are read first, then the oldest result
 * nobody collected is dropped. */
static struct ticket *ticket_new(void)
{
    for (int round = 0; round < 2 * MAX_TICKETS + 1; round++) {
        for (int i = 0; i < MAX_TICKETS; i++)
            if (!tickets[i].id)
                return &tickets[i];
        if (oldest_unanswered()) {
            read_answer();
            continue;
        }
        struct ticket *o = &tickets[0];
        for (int i = 1; i < MAX_TICKETS; i++)
            if (tickets[i].seq < o->seq)
                o = &tickets[i];
        bh_warn("nftables: dropping the result of a transaction nobody collected");
        o->forgotten = true;
        ticket_free(o);
    }
    return NULL;
}

int bh_nft_submit(int nsfd, const char *script, bh_error *err)
{
    struct ticket *t = ticket_new();
    if (!t)
        return bh_fail(err, EAGAIN, "nftables: too many transactions in flight");
    if (++last_id <= 0)
        last_id = 1;
    *t = (struct ticket){ .id = last_id, .seq = ++last_seq, .deadline = now_ms() + HELPER_TIMEOUT_MS };
    int sent = helper_fd >= 0 && getpid() == helper_owner ? send_request(nsfd, script, t) : 0;
    if (sent == 0) {
        /* run here, after what the helper still has: transactions take effect in the
         * order they were handed over (t is in no queue: kept out of the wait) */
        t->answered = true;
        while (oldest_unanswered())
            read_answer();
        t->answered = false;
        bh_error e = { 0 };
        int rc = bh_nft_run_here(nsfd, script, &e);
        ticket_answer(t, rc, &e);
    }
    return t->id;
}

static struct ticket *ticket_find(int id)
{
    for (int i = 0; id > 0 && i < MAX_TICKETS; i++)
        if (tickets[i].id == id && !tickets[i].forgotten)
            return &tickets[i];
    return NULL;
}

int bh_nft_collect(int id, bh_error *err)
{
    struct ticket *t = ticket_find(id);
    if (!t)
        return bh_fail(err, ENOENT, "nftables: no such transaction");
    while (!t->answered)
        read_answer(); /* the older ones first; at worst the helper is stopped */
    int rc = t->rc;
    if (rc < 0 && err)
        *err = t->err;
    memset(t, 0, sizeof *t);
    return rc;
}

void bh_nft_forget(int id)
{
    struct ticket *t = ticket_find(id);
    if (!t)
        return;
    t->forgotten = true;
    if (t->answered)
        ticket_free(t);
}

int bh_nft_run(int nsfd, const char *script, bh_error *err)
{
    int id = bh_nft_submit(nsfd, script, err);
    return id < 0 ? -1 : bh_nft_collect(id, err);
}
