/* qrexec-policy-agent: the dom0 prompt for policy `ask`, in a terminal.
 *
 * A person runs it in a dom0 terminal (or a session starts it there). It listens on
 * <runtime>/policy-agent.sock (0660, root and qrexec's "dom0 qrexec" group); qrexec-policy-ask, run by qrexec-daemon for each
 * `ask`, relays one question per connection. The agent shows
 *     SOURCE wants to call SERVICE+ARG; choose a target:
 * with the numbered targets that policy admits and the default preselected (Enter takes
 * it), reads the answer from its controlling terminal and sends back "allow T" or
 * "deny". Unanswered questions are denied after --timeout seconds.
 *
 * Everything in a question comes from names that qubes chose, so nothing reaches the
 * terminal before bh_ask_parse() checked it (printable ASCII, bounded); the agent never
 * reads anything from a qube, only from the relay and from the person. Type-ahead is
 * flushed before each question so that keys pressed earlier cannot answer it. */
#include "ask_proto.h"
#include "daemon_paths.h"
#include "vchan.h"
#include "cleanup.h"
#include "log.h"
#include "qrexec_ids.h"
#include "io.h"
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static void on_signal(int s) { (void)s; stop = 1; }

static int tty = -1;
static int timeout_s = 60;
static int lfd = -1;

/* Questions wait here, fairly: at most ASK_PER_SOURCE from one source qube (the rest
 * are denied at once, with a log line), and the next question shown is the oldest one
 * from a source other than the one just asked about, so one qube's flood of asks never
 * stands between a person and another qube's question for more than one answer.
 * Relays connecting while a question is on screen are admitted (or refused) at once. */
#define ASK_PER_SOURCE 3 /* default; $BULKHEAD_ASK_PER_SOURCE (1..ASK_QUEUE_MAX) */
static size_t ask_per_source = ASK_PER_SOURCE;
#define ASK_QUEUE_MAX 64
struct waiting {
    int fd;
    struct bh_ask_question q;
};
static struct waiting queue[ASK_QUEUE_MAX];
static size_t queued;
static char last_source[BH_ASK_NAME_MAX];
static void admit_all(void);

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...)
{
    char buf[2048]; /* the longest line: two names and a 1023-byte service */
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n > 0)
        bh_write_all(tty, buf, (size_t)n < sizeof buf ? (size_t)n : sizeof buf - 1);
}

/* Only root, whoever runs the agent, and qrexec's call processes (their group, "dom0
 * qrexec": they run the relay since they gave up root) may put questions to the person. */
static bool peer_trusted(int fd)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return false;
    return uc.uid == 0 || uc.uid == geteuid() || uc.gid == BH_QX_CALL_GID;
}

/* The relay writes its question and shuts down its side: read to EOF, bounded in size
 * and in time (a stuck relay must not keep the prompt from others). */
static ssize_t read_question(int fd, char *buf, size_t size)
{
    size_t off = 0;
    long long deadline = bh_now_ms() + 5000;
    for (;;) {
        long long left = deadline - bh_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR) {
            if (stop)
                return -1;
            continue;
        }
        if (r <= 0)
            return -1;
        if (off == size)
            return -1; /* more than a question can be */
        ssize_t n = read(fd, buf + off, size - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return (ssize_t)off;
        off += (size_t)n;
    }
}

enum verdict { V_DENY, V_ALLOW, V_GONE };

/* What the person typed (trimmed): a number, a target's name, "" for the default, or a
 * refusal. Returns the choice index, -1 to refuse, -2 to ask again. */
static int interpret(const struct bh_ask_question *q, char *line)
{
    size_t n = strlen(line);
    while (n && isspace((unsigned char)line[n - 1]))
        line[--n] = '\0';
    char *s = line;
    while (isspace((unsigned char)*s))
        s++;
    if (!*s) {
        if (q->deflt[0])
            return bh_ask_choice_index(q, q->deflt);
        say("There is no default: type a number or a name, or n to deny.\n");
        return -2;
    }
    if (!strcmp(s, "n") || !strcmp(s, "no") || !strcmp(s, "deny") || !strcmp(s, "q"))
        return -1;
    if (strspn(s, "0123456789") == strlen(s) && strlen(s) <= 4) {
        int k = atoi(s);
        if (k >= 1 && (size_t)k <= q->n_choices)
            return k - 1;
    } else {
        int k = bh_ask_choice_index(q, s);
        if (k >= 0)
            return k;
    }
    /* the person's own input is not repeated: it is not needed, and it may hold anything */
    say("That is not one of the offered targets.\n");
    return -2;
}

static enum verdict ask_person(const struct bh_ask_question *q, int client, char *target, size_t size)
{
    tcflush(tty, TCIFLUSH);
    say("\n%s wants to call %s; choose a target:\n", q->source, q->service);
    for (size_t i = 0; i < q->n_choices; i++)
        say("  %zu) %s%s\n", i + 1, q->choices[i], strcmp(q->choices[i], q->deflt) ? "" : "  [default]");
    long long deadline = bh_now_ms() + timeout_s * 1000LL;
    char line[256];
    size_t len = 0;
    bool overlong = false, prompt = true;
    for (;;) {
        if (prompt) {
            prompt = false;
            if (q->deflt[0])
                say("Target [1-%zu or name; Enter = %s; n = deny; %d s]: ", q->n_choices, q->deflt, timeout_s);
            else
                say("Target [1-%zu or name; n = deny; %d s]: ", q->n_choices, timeout_s);
        }
        long long left = deadline - bh_now_ms();
        if (left <= 0) {
            say("\nNo answer in %d s: denied.\n", timeout_s);
            return V_DENY;
        }
        /* the relay has shut down its sending side already (EOF is readable); only its
         * full close (POLLHUP) means the call is gone */
        struct pollfd p[3] = { { .fd = tty, .events = POLLIN }, { .fd = client, .events = 0 },
                               { .fd = lfd, .events = POLLIN } };
        int r = poll(p, 3, (int)left);
        if (r > 0 && (p[2].revents & POLLIN)) /* other relays: admitted or refused now */
            admit_all();
        if (r < 0 && errno == EINTR) {
            if (stop)
                return V_DENY;
            continue;
        }
        if (r < 0)
            return V_DENY;
        if (p[1].revents & (POLLHUP | POLLERR)) {
            say("\n(The call was withdrawn.)\n");
            return V_GONE;
        }
        if (!p[0].revents)
            continue;
        char c[256];
        ssize_t n = read(tty, c, sizeof c);
        if (n < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (n <= 0) { /* Ctrl-D, or the terminal is gone */
            say("\nDenied.\n");
            if (n < 0 || (p[0].revents & (POLLHUP | POLLERR)))
                stop = 1;
            return V_DENY;
        }
        for (ssize_t i = 0; i < n; i++) {
            if (c[i] != '\n') {
                if (len < sizeof line - 1)
                    line[len++] = c[i];
                else
                    overlong = true;
                continue;
            }
            line[len] = '\0';
            /* one line is one answer: whatever else was typed ahead is dropped, before
             * anything is said (so that a person answers only what was shown) */
            tcflush(tty, TCIFLUSH);
            int k = overlong ? -2 : interpret(q, line);
            if (overlong)
                say("That is not one of the offered targets.\n");
            len = 0;
            overlong = false;
            if (k == -1) {
                say("Denied.\n");
                return V_DENY;
            }
            if (k >= 0) {
                snprintf(target, size, "%s", q->choices[k]);
                say("Allowed: %s -> %s.\n", q->source, target);
                return V_ALLOW;
            }
            prompt = true; /* ask again */
            break;
        }
    }
}

static void admit(int fd)
{
    if (!peer_trusted(fd)) {
        say("\n(Refused a question from a process that is not root.)\n");
        close(fd);
        return;
    }
    static char msg[BH_ASK_MSG_MAX];
    ssize_t n = read_question(fd, msg, sizeof msg);
    struct waiting *w = queued < ASK_QUEUE_MAX ? &queue[queued] : NULL;
    static struct bh_ask_question spare;
    struct bh_ask_question *q = w ? &w->q : &spare;
    const char *why = "no question";
    if (n < 0 || bh_ask_parse(msg, (size_t)n, q, &why) < 0) {
        /* why is one of our own constant strings: the question itself is not shown */
        say("\n(Refused a malformed question: %s.)\n", why);
        bh_write_all(fd, "deny\n", 5);
        close(fd);
        return;
    }
    size_t same = 0;
    for (size_t i = 0; i < queued; i++)
        same += !strcmp(queue[i].q.source, q->source);
    if (!w || same >= ask_per_source) {
        bh_warn("ask from %s for %s denied at once: %zu of its questions already wait%s", q->source, q->service,
                same, w ? "" : " (queue full)");
        bh_write_all(fd, "deny\n", 5);
        close(fd);
        return;
    }
    w->fd = fd;
    queued++;
}

/* Takes every relay that is waiting to connect (non-blocking listening socket). */
static void admit_all(void)
{
    for (;;) {
        int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0)
            return;
        int fl = fcntl(fd, F_GETFL);
        if (fl >= 0)
            (void)fcntl(fd, F_SETFL, fl & ~O_NONBLOCK);
        admit(fd);
    }
}

static void serve_next(void)
{
    size_t k = 0;
    for (size_t i = 0; i < queued; i++)
        if (strcmp(queue[i].q.source, last_source)) {
            k = i;
            break;
        }
    struct waiting w = queue[k];
    memmove(&queue[k], &queue[k + 1], (queued - k - 1) * sizeof queue[0]);
    queued--;
    snprintf(last_source, sizeof last_source, "%s", w.q.source);
    /* a relay that gave up while it waited in the queue is not worth a person's time */
    struct pollfd gone = { .fd = w.fd, .events = 0 };
    if (poll(&gone, 1, 0) == 1 && (gone.revents & (POLLHUP | POLLERR))) {
        close(w.fd);
        return;
    }
    char target[BH_ASK_NAME_MAX];
    enum verdict v = ask_person(&w.q, w.fd, target, sizeof target);
    if (v == V_ALLOW) {
        char ans[BH_ASK_ANSWER_MAX];
        int m = snprintf(ans, sizeof ans, "allow %s\n", target);
        bh_write_all(w.fd, ans, (size_t)m);
    } else if (v == V_DENY) {
        bh_write_all(w.fd, "deny\n", 5);
    }
    close(w.fd);
}

static void usage(void)
{
    fprintf(stderr, "usage: qrexec-policy-agent [--runtime DIR] [--socket PATH] [--timeout SECONDS]\n"
                    "Answers qrexec policy `ask` questions in this terminal.\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bh_log_init("qrexec-policy-agent");
    const char *aps = getenv("BULKHEAD_ASK_PER_SOURCE");
    if (aps && *aps) {
        long v = strtol(aps, NULL, 10);
        ask_per_source = v < 1 ? 1 : v > ASK_QUEUE_MAX ? ASK_QUEUE_MAX : (size_t)v;
    }
    const char *runtime = NULL, *sock = NULL;
    static const struct option lo[] = { { "runtime", required_argument, 0, 'r' },
                                        { "socket", required_argument, 0, 's' },
                                        { "timeout", required_argument, 0, 't' },
                                        { "help", no_argument, 0, 'h' },
                                        { 0, 0, 0, 0 } };
    int o;
    while ((o = getopt_long(argc, argv, "", lo, NULL)) != -1) {
        switch (o) {
        case 'r': runtime = optarg; break;
        case 's': sock = optarg; break;
        case 't':
            timeout_s = atoi(optarg);
            if (timeout_s < 1 || timeout_s > 3600)
                usage();
            break;
        default: usage();
        }
    }
    if (optind != argc)
        usage();
    char path[4200];
    if (!sock) {
        snprintf(path, sizeof path, "%s/policy-agent.sock", bh_qx_runtime(runtime));
        sock = path;
    }
    tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty < 0) {
        bh_err("no controlling terminal (%s): run qrexec-policy-agent in a dom0 terminal", strerror(errno));
        return 1;
    }
    bh_error err = { 0 };
    int probe = bh_unix_connect(sock, &err);
    if (probe >= 0) {
        close(probe);
        bh_err("another qrexec-policy-agent already answers on %s", sock);
        return 1;
    }
    /* root and the call processes' group (as root; a user's agent keeps it to itself) */
    bool as_root = geteuid() == 0;
    lfd = bh_unix_listen(sock, as_root ? 0660 : 0600, &err);
    if (lfd < 0 || fcntl(lfd, F_SETFL, fcntl(lfd, F_GETFL) | O_NONBLOCK) < 0) {
        bh_err("%s", err.msg);
        return 1;
    }
    if (as_root && lchown(sock, 0, BH_QX_CALL_GID) < 0) {
        bh_err("chown %s: %s", sock, strerror(errno));
        return 1;
    }
    signal(SIGPIPE, SIG_IGN);
    struct sigaction sa = { .sa_handler = on_signal }; /* no SA_RESTART: poll returns */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGHUP, &sa, NULL);
    say("qrexec-policy-agent: answering qrexec `ask` questions on %s (timeout %d s; Ctrl-C stops).\n", sock,
        timeout_s);
    while (!stop) {
        struct pollfd p[2] = { { .fd = lfd, .events = POLLIN }, { .fd = tty, .events = 0 } };
        int r = poll(p, 2, -1);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[1].revents & (POLLHUP | POLLERR | POLLNVAL))
            break; /* the terminal is gone: nobody can answer */
        if (!p[0].revents)
            continue;
        admit_all();
        while (queued && !stop) {
            serve_next();
            admit_all();
        }
    }
    for (size_t i = 0; i < queued; i++) {
        bh_write_all(queue[i].fd, "deny\n", 5);
        close(queue[i].fd);
    }
    close(lfd);
    unlink(sock);
    say("qrexec-policy-agent: stopped; `ask` calls are denied until it runs again.\n");
    return 0;
}
