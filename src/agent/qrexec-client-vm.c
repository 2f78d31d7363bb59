/* qrexec-client-vm TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]: a qube's own call.
 * The request goes to the local agent, which forwards it to the daemon; the daemon
 * decides by policy. If allowed, we get {domain, port} and serve the data stream
 * (we are its server, as in Qubes); if refused, exit 126. Without a local program our
 * stdin/stdout are the call's; with one, its stdin/stdout are. */
#include "cleanup.h"
#include "io.h"
#include "log.h"
#include "qrexec/proto.h"
#include "qrexec/stream.h"
#include "qrexec/vchan.h"
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: qrexec-client-vm [options] TARGET SERVICE[+ARG] [LOCAL_PROGRAM [ARGS...]]\n"
                    "  -t, --filter-escape-chars-stdout   -T, --filter-escape-chars-stderr\n"
                    "  --no-filter-escape-chars-stdout    --no-filter-escape-chars-stderr\n"
                    "  --agent-socket=PATH                -w, --timeout=SECONDS\n"
                    "  -p, --prefix-data=DATA (sent before stdin)\n"
                    "  -s, --source-qube=QUBE (a RemoteVM's relay only; others are refused)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bh_log_init("qrexec-client-vm");
    const char *agent = getenv("QREXEC_AGENT_SOCKET");
    if (!agent || !*agent)
        agent = "/run/qubes/qrexec-agent";
    int fout = -1, ferr = -1, timeout_s = 120; /* Qubes' default: a disposable may start first */
    const char *prefix = NULL, *source = "";
    static const struct option lo[] = {
        { "filter-escape-chars-stdout", no_argument, 0, 't' }, { "filter-escape-chars-stderr", no_argument, 0, 'T' },
        { "no-filter-escape-chars-stdout", no_argument, 0, 1 }, { "no-filter-escape-chars-stderr", no_argument, 0, 2 },
        { "agent-socket", required_argument, 0, 'a' }, { "timeout", required_argument, 0, 'w' },
        { "buffer-size", required_argument, 0, 'b' }, { "prefix-data", required_argument, 0, 'p' },
        { "source-qube", required_argument, 0, 's' }, { 0, 0, 0, 0 } };
    int o;
    while ((o = getopt_long(argc, argv, "+tTa:w:p:s:", lo, NULL)) != -1) {
        switch (o) {
        case 't': fout = 1; break;
        case 'T': ferr = 1; break;
        case 1: fout = 0; break;
        case 2: ferr = 0; break;
        case 'a': agent = optarg; break;
        case 'w': timeout_s = atoi(optarg); break;
        case 'b': break; /* accepted for compatibility; our buffers are not vchan rings */
        case 'p':
            if (prefix)
                usage();
            prefix = optarg;
            break;
        case 's': source = optarg; break;
        default: usage();
        }
    }
    if (argc - optind < 2)
        usage();
    char *target = argv[optind];
    const char *service = argv[optind + 1];
    char **local = argc - optind > 2 ? argv + optind + 2 : NULL;
    for (char *c = target; *c; c++) /* Qubes' old "$keyword" spelling */
        if (*c == '$')
            *c = '@';
    if (!bh_qx_target_valid(target) || !bh_qx_service_valid(service) ||
        (source[0] && !bh_qx_target_valid(source)) || (prefix && strlen(prefix) > BH_QX_MAX_CHUNK)) {
        fprintf(stderr, "qrexec-client-vm: invalid target or service name\n");
        return 2;
    }
    if (fout < 0)
        fout = !local && isatty(1);
    if (ferr < 0)
        ferr = isatty(2);
    signal(SIGPIPE, SIG_IGN);

    bh_error err = { 0 };
    _cleanup_close_ int tfd = bh_unix_connect(agent, &err);
    if (tfd < 0) {
        fprintf(stderr, "qrexec-client-vm: %s\n", err.msg);
        return 125;
    }
    /* Qubes R4.3's request (the agent answers an R4.2 daemon with TRIGGER_SERVICE3) */
    if (bh_qx_send_trigger4(tfd, source, target, "SOCKET", service) < 0) {
        perror("qrexec-client-vm: sending request");
        return 125;
    }
    uint8_t ep[8];
    ssize_t r = bh_read_all(tfd, ep, 8);
    if (r == 0) {
        fprintf(stderr, "Request refused\n");
        return 126;
    }
    if (r != 8) {
        fprintf(stderr, "qrexec-client-vm: bad answer from the agent\n");
        return 125;
    }
    uint32_t domain = ep[0] | ep[1] << 8 | ep[2] << 16 | (uint32_t)ep[3] << 24;
    uint32_t port = ep[4] | ep[5] << 8 | ep[6] << 16 | (uint32_t)ep[7] << 24;
    const char *dir = bh_vchan_dir();
    uint32_t me = (uint32_t)bh_vchan_own_domain(dir);
    _cleanup_close_ int lfd = bh_vchan_listen(dir, me, domain, port, &err);
    if (lfd < 0) {
        fprintf(stderr, "qrexec-client-vm: %s\n", err.msg);
        return 125;
    }
    int sock = bh_vchan_accept(lfd, dir, me, domain, port, timeout_s * 1000, &err);
    if (sock < 0) {
        fprintf(stderr, "qrexec-client-vm: %s\n", err.msg);
        return 125;
    }
    uint32_t ver;
    if (bh_qx_handshake(sock, BH_QX_FROM_DATA, &ver, &err) < 0) {
        fprintf(stderr, "qrexec-client-vm: %s\n", err.msg);
        return 125;
    }
    if (prefix && *prefix && bh_qx_send(sock, BH_QX_MSG_DATA_STDIN, prefix, strlen(prefix)) < 0) {
        perror("qrexec-client-vm: sending prefix data");
        return 125;
    }
    struct bh_qx_stream s = { .sock = sock, .is_service = false, .in_fd = 1, .out_fd = 0, .err_fd = 2,
                              .child = -1, .filter_out = fout, .filter_err = ferr };
    pid_t child = -1;
    if (local) {
        /* a: remote -> program stdin; b: program stdout -> remote, a pipe so that the
         * stream splices its bytes to the data socket without copying them (stream.c) */
        int a[2], b[2];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) < 0 || pipe2(b, O_CLOEXEC) < 0) {
            perror("socketpair");
            return 125;
        }
        child = fork();
        if (child < 0) {
            perror("fork");
            return 125;
        }
        if (child == 0) {
            signal(SIGPIPE, SIG_DFL);
            dup2(a[1], 0);
            dup2(b[1], 1);
            execvp(local[0], local);
            fprintf(stderr, "qrexec-client-vm: exec %s: %s\n", local[0], strerror(errno));
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
    if (err.msg[0])
        fprintf(stderr, "qrexec-client-vm: %s\n", err.msg);
    /* As Qubes (libqrexec process_io): the remote service's failure is the call's
     * exit code; with a local program, its code when the remote side succeeded. So
     * qvm-open-in-dvm fails when the disposable could not open the file. */
    if (child > 0) {
        int st;
        if (waitpid(child, &st, 0) == child && code == 0)
            code = bh_wait_status_code(st);
    }
    return code;
}
