/* qrexec-client -d QUBE [-e] [-E] [-t] [-T] [-k] [-w TIMEOUT] [-p DATA] [-l LOCAL_CMD]
 *               USER:COMMAND
 * qrexec-client -d QUBE DEFAULT:QUBESRPC service+arg dom0
 * dom0's way into a qube, with Qubes' command line (installed also as
 * PREFIX/lib/qubes/qrexec-client, where Qubes' tools look): stdin/stdout/stderr
 * streamed, the remote exit code passed through (125 if qrexec itself failed). */
#include "admin_client.h"
#include "client.h"
#include "cleanup.h"
#include "io.h"
#include "log.h"
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: qrexec-client [options] -d domain_name [-l local_prog|-e] user:remote_cmdline\n"
                    "Options:\n"
                    "  -h, --help - display usage\n"
                    "  -e - exit after sending cmd\n"
                    "  -E, --no-exit-code - always exit with 0 after command exits\n"
                    "  -t - enables replacing problematic bytes with '_' in command output, -T is the same for stderr\n"
                    "  -W - waits for connection end even in case of VM-VM (-c)\n"
                    "  -w timeout - override default connection timeout\n"
                    "  -k - kill the domain right before exiting\n"
                    "  --socket-dir=PATH - Bulkhead's runtime directory (default: $BULKHEAD_RUNTIME or /run/bulkhead)\n"
                    "  -p PREFIX-DATA, --prefix-data=PREFIX-DATA - send the given data before the provided stdin\n"
                    "  --use-stdin-socket - use fd 0 (which must be socket) for both stdin and stdout\n"
                    "  --no-filter-escape-chars - never replace\n");
    exit(2);
}

/* -p: a pipe whose reader sees DATA, then our stdin (a child copies). */
static int prefixed_stdin(const char *data, int in)
{
    int p[2];
    if (pipe(p) < 0)
        return -1;
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        close(p[0]);
        signal(SIGPIPE, SIG_DFL);
        if (bh_write_all(p[1], data, strlen(data)) < 0)
            _exit(1);
        char buf[65536];
        ssize_t n;
        while ((n = read(in, buf, sizeof buf)) > 0)
            if (bh_write_all(p[1], buf, (size_t)n) < 0)
                _exit(1);
        _exit(0);
    }
    close(p[1]);
    return p[0];
}

/* -k: as Qubes, the qube is killed when the call ends (through bulkheadd). */
static void kill_qube(const char *qube)
{
    _cleanup_reply_ struct bh_admin_reply rep = { 0 };
    bh_error err = { 0 };
    if (bh_admin_call("admin.vm.Kill", "", qube, "", 0, &rep, &err) < 0)
        fprintf(stderr, "qrexec-client: killing %s: %s\n", qube, err.msg);
    else if (!rep.ok && rep.exc_type && strcmp(rep.exc_type, "QubesVMNotStartedError") != 0)
        fprintf(stderr, "qrexec-client: killing %s: %s\n", qube, rep.exc_msg ? rep.exc_msg : rep.exc_type);
}

int main(int argc, char **argv)
{
    bh_log_init("qrexec-client");
    static char *local[] = { "/bin/sh", "-c", NULL, NULL };
    struct bh_qx_call c = { .in_fd = 0, .out_fd = 1, .err_fd = 2, .timeout_s = 10 };
    int ft = -1, fT = -1;
    bool no_exit_code = false, kill_after = false, stdin_socket = false;
    const char *prefix = NULL;
    static const struct option lo[] = { { "runtime", required_argument, 0, 'r' },
                                        { "socket-dir", required_argument, 0, 'r' },
                                        { "no-filter-escape-chars", no_argument, 0, 'N' },
                                        { "no-exit-code", no_argument, 0, 'E' },
                                        { "prefix-data", required_argument, 0, 'p' },
                                        { "use-stdin-socket", no_argument, 0, 'S' },
                                        { "help", no_argument, 0, 'h' },
                                        { 0, 0, 0, 0 } };
    int o;
    while ((o = getopt_long(argc, argv, "+d:el:tTw:Wc:Ekp:h", lo, NULL)) != -1) {
        switch (o) {
        case 'd': c.qube = optarg; break;
        case 'e': c.just_exec = true; break;
        case 'l': local[2] = optarg; c.local_argv = local; break;
        case 't': ft = 1; break;
        case 'T': fT = 1; break;
        case 'N': ft = fT = 0; break;
        case 'w': c.timeout_s = atoi(optarg); break;
        case 'W': break; /* Qubes: wait for VM-VM connection end; our daemon relays itself */
        case 'r': c.runtime = optarg; break;
        case 'E': no_exit_code = true; break;
        case 'k': kill_after = true; break;
        case 'S': stdin_socket = true; break;
        case 'p':
            if (prefix) {
                fprintf(stderr, "qrexec-client: -p/--prefix-data can only be used once\n");
                return 1;
            }
            prefix = optarg;
            break;
        case 'h': usage(); break;
        case 'c':
            fprintf(stderr, "qrexec-client: -c is done by qrexec-daemon itself in Bulkhead\n");
            return 2;
        default: usage();
        }
    }
    if (!c.qube || optind != argc - 1)
        usage();
    c.cmdline = argv[optind];
    if (stdin_socket)
        c.out_fd = 0;
    c.filter_out = ft < 0 ? isatty(c.out_fd) : ft;
    c.filter_err = fT < 0 ? isatty(2) : fT;
    if (prefix && (c.in_fd = prefixed_stdin(prefix, c.in_fd)) < 0) {
        perror("qrexec-client: -p");
        return 125;
    }
    int rc = bh_qx_call_run(&c);
    if (kill_after)
        kill_qube(c.qube);
    return no_exit_code ? 0 : rc;
}
