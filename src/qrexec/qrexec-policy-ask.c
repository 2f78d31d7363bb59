/* qrexec-policy-ask: the prompt program that qrexec-daemon runs for policy `ask`
 * (decide.c's calling convention):
 *     qrexec-policy-ask --source S --service SVC[+ARG] --default D -- CHOICE...
 * prints the chosen target on stdout and exits 0, or exits 1 (denied).
 *
 * It relays the question to qrexec-policy-agent (a person at a dom0 terminal) through
 * $BULKHEAD_POLICY_AGENT_SOCKET, else <runtime>/policy-agent.sock (<runtime>: $BULKHEAD_RUNTIME,
 * which qrexec-daemon exports, else /run/bulkhead). With no agent listening it falls back
 * to a window (zenity, else xmessage) when $DISPLAY is set; otherwise it denies.
 * Whatever comes back must be one of the offered choices (decide.c checks again). */
#include "ask_proto.h"
#include "daemon_paths.h"
#include "vchan.h"
#include "cleanup.h"
#include "io.h"
#include "log.h"
#include "selfpath.h"
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int timeout_s(void)
{
    /* The agent denies an unanswered question itself (60 s by default); this bound only
     * keeps a stuck agent or window from holding the call for ever. */
    const char *e = getenv("BULKHEAD_ASK_TIMEOUT");
    int t = e ? atoi(e) : 0;
    return t > 0 && t <= 3600 ? t : 180;
}

/* Reads until EOF or the deadline; returns the length, or -1. */
static ssize_t read_until_eof(int fd, char *buf, size_t size, long long deadline)
{
    size_t off = 0;
    for (;;) {
        long long left = deadline - bh_now_ms();
        if (left <= 0)
            return -1;
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, (int)left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        if (off == size)
            return -1;
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

static bool peer_trusted(int fd)
{
    struct ucred uc;
    socklen_t len = sizeof uc;
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0)
        return false;
    return uc.uid == 0 || uc.uid == geteuid();
}

/* 1 allowed (target filled), 0 denied, -1 failed */
static int ask_agent(int fd, const struct bh_ask_question *q, char *target, size_t size)
{
    if (!peer_trusted(fd)) {
        bh_warn("the prompt agent's socket is held by a process that is not root: denied");
        return -1;
    }
    static char msg[BH_ASK_MSG_MAX];
    int n = bh_ask_format(q, msg, sizeof msg);
    if (n < 0 || bh_write_all(fd, msg, (size_t)n) < 0 || shutdown(fd, SHUT_WR) < 0) {
        bh_warn("cannot send the question to the prompt agent: %s", strerror(errno));
        return -1;
    }
    char ans[BH_ASK_ANSWER_MAX + 1];
    ssize_t m = read_until_eof(fd, ans, sizeof ans, bh_now_ms() + timeout_s() * 1000LL);
    if (m < 0) {
        bh_warn("the prompt agent did not answer in %d s: denied", timeout_s());
        return -1;
    }
    if (m == 0) {
        bh_warn("the prompt agent gave no answer: denied");
        return -1;
    }
    int r = bh_ask_parse_answer(q, ans, (size_t)m, target, size);
    if (r < 0)
        bh_warn("the prompt agent's answer is not one of the offered targets: denied");
    return r;
}

/* ---- a window, when nobody runs the terminal agent but a display is there ---------- */

/* Runs argv with stdout on a pipe; returns the exit status (or -1) and its output. */
static int run_dialog(char **argv, char *out, size_t size)
{
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return -1;
    }
    if (pid == 0) {
        dup2(pfd[1], 1);
        int dn = open("/dev/null", O_RDWR);
        if (dn >= 0) {
            dup2(dn, 0);
            dup2(dn, 2); /* toolkit chatter is not the answer */
        }
        execv(argv[0], argv);
        _exit(127);
    }
    close(pfd[1]);
    _cleanup_close_ int rfd = pfd[0];
    ssize_t n = read_until_eof(rfd, out, size - 1, bh_now_ms() + timeout_s() * 1000LL);
    if (n < 0) {
        kill(pid, SIGKILL);
        n = 0;
    }
    out[n] = '\0';
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int ask_window(const struct bh_ask_question *q, char *target, size_t size)
{
    char prog[4096], text[1200], out[256], tmo[16];
    snprintf(text, sizeof text, "%s wants to call %s; choose a target:", q->source, q->service);
    snprintf(tmo, sizeof tmo, "%d", timeout_s() < 60 ? timeout_s() : 60);
    static char *argv[2 * BH_ASK_MAX_CHOICES + 32];
    size_t i = 0;
    if (bh_find_in_path("zenity", prog, sizeof prog)) {
        /* a radio list: exactly the offered targets, the default already selected */
        const char *head[] = { prog, "--list", "--radiolist", "--title", "qrexec: ask", "--text", text,
                               "--column", "", "--column", "Target", "--timeout", tmo };
        for (size_t k = 0; k < sizeof head / sizeof *head; k++)
            argv[i++] = (char *)head[k];
        for (size_t k = 0; k < q->n_choices; k++) {
            argv[i++] = (char *)(strcmp(q->choices[k], q->deflt) ? "FALSE" : "TRUE");
            argv[i++] = (char *)q->choices[k];
        }
        argv[i] = NULL;
        if (run_dialog(argv, out, sizeof out) != 0)
            return 0;
        out[strcspn(out, "\n")] = '\0';
        int k = bh_ask_choice_index(q, out);
        if (k < 0)
            return 0;
        snprintf(target, size, "%s", q->choices[k]);
        return 1;
    }
    if (bh_find_in_path("xmessage", prog, sizeof prog)) {
        /* buttons are numbers (names like @dispvm:x would break xmessage's label:value);
         * exit status 100+k picks choice k, 1 denies, 0 is xmessage's own timeout */
        static char body[BH_ASK_MSG_MAX], buttons[BH_ASK_MAX_CHOICES * 12 + 16], dflt[24] = "Deny";
        size_t off = (size_t)snprintf(body, sizeof body, "%s\n\n", text), boff = 0;
        for (size_t k = 0; k < q->n_choices && off < sizeof body; k++) {
            off += (size_t)snprintf(body + off, sizeof body - off, "  %zu) %s%s\n", k + 1, q->choices[k],
                                    strcmp(q->choices[k], q->deflt) ? "" : "  [default]");
            boff += (size_t)snprintf(buttons + boff, sizeof buttons - boff, "%zu:%zu,", k + 1, 100 + k);
            if (!strcmp(q->choices[k], q->deflt))
                snprintf(dflt, sizeof dflt, "%zu", k + 1);
        }
        snprintf(buttons + boff, sizeof buttons - boff, "Deny:1");
        const char *head[] = { prog, "-center", "-title", "qrexec: ask", "-buttons", buttons, "-default", dflt,
                               "-timeout", tmo, body };
        for (size_t k = 0; k < sizeof head / sizeof *head; k++)
            argv[i++] = (char *)head[k];
        argv[i] = NULL;
        int st = run_dialog(argv, out, sizeof out);
        if (st < 100 || (size_t)(st - 100) >= q->n_choices)
            return 0;
        snprintf(target, size, "%s", q->choices[st - 100]);
        return 1;
    }
    return -1;
}

static void usage(void)
{
    fprintf(stderr, "usage: qrexec-policy-ask --source S --service SVC[+ARG] --default D -- CHOICE...\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bh_log_init("qrexec-policy-ask");
    const char *source = NULL, *service = NULL, *deflt = "";
    int i = 1;
    for (; i < argc; i++) {
        if (!strcmp(argv[i], "--")) {
            i++;
            break;
        }
        if (i + 1 >= argc)
            usage();
        if (!strcmp(argv[i], "--source"))
            source = argv[++i];
        else if (!strcmp(argv[i], "--service"))
            service = argv[++i];
        else if (!strcmp(argv[i], "--default"))
            deflt = argv[++i];
        else
            usage();
    }
    static struct bh_ask_question q;
    const char *why = NULL;
    if (bh_ask_question_init(&q, source, service, deflt, argv + i, (size_t)(argc - i), &why) < 0) {
        bh_warn("refusing to show a question: %s", why);
        return 1;
    }
    char path[4200];
    const char *sock = getenv("BULKHEAD_POLICY_AGENT_SOCKET");
    if (!sock || !*sock) {
        snprintf(path, sizeof path, "%s/policy-agent.sock", bh_qx_runtime(NULL));
        sock = path;
    }
    signal(SIGPIPE, SIG_IGN);
    char target[BH_ASK_NAME_MAX];
    int r = -1;
    bh_error err = { 0 };
    _cleanup_close_ int fd = bh_unix_connect(sock, &err);
    if (fd >= 0) {
        r = ask_agent(fd, &q, target, sizeof target);
    } else {
        const char *disp = getenv("DISPLAY");
        if (disp && *disp)
            r = ask_window(&q, target, sizeof target);
        if (r < 0) {
            bh_warn("%s -> %s: no prompt agent: run qrexec-policy-agent in a dom0 terminal (%s); denied", q.source,
                    q.service, err.msg);
            return 1;
        }
    }
    if (r != 1) {
        if (r == 0)
            bh_info("%s -> %s: denied at the prompt", q.source, q.service);
        return 1;
    }
    printf("%s\n", target);
    return fflush(stdout) == 0 ? 0 : 1;
}
