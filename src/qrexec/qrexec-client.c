/* qrexec-client -d QUBE [-e] [-t] [-T] [-w TIMEOUT] [-l LOCAL_CMD] USER:COMMAND
 * qrexec-client -d QUBE DEFAULT:QUBESRPC service+arg dom0
 * dom0's way into a qube, as Qubes' qrexec-client: stdin/stdout/stderr streamed, the
 * remote exit code passed through (125 if qrexec itself failed). */
#include "client.h"
#include "log.h"
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static void usage(void)
{
    fprintf(stderr, "usage: qrexec-client [--runtime DIR] -d QUBE [-e] [-t] [-T] [-w TIMEOUT] [-l LOCAL_CMD] "
                    "USER:COMMAND\n"
                    "  -e  exit after starting the command (no streams)\n"
                    "  -t/-T  replace control characters in stdout/stderr (default when a terminal)\n"
                    "  --no-filter-escape-chars  never replace\n");
    exit(2);
}

int main(int argc, char **argv)
{
    bh_log_init("qrexec-client");
    static char *local[] = { "/bin/sh", "-c", NULL, NULL };
    struct bh_qx_call c = { .in_fd = 0, .out_fd = 1, .err_fd = 2, .timeout_s = 10 };
    int ft = -1, fT = -1;
    static const struct option lo[] = { { "runtime", required_argument, 0, 'r' },
                                        { "no-filter-escape-chars", no_argument, 0, 'N' },
                                        { 0, 0, 0, 0 } };
    int o;
    while ((o = getopt_long(argc, argv, "+d:el:tTw:Wc:", lo, NULL)) != -1) {
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
        case 'c':
            fprintf(stderr, "qrexec-client: -c is done by qrexec-daemon itself in Bulkhead\n");
            return 2;
        default: usage();
        }
    }
    if (!c.qube || optind != argc - 1)
        usage();
    c.cmdline = argv[optind];
    c.filter_out = ft < 0 ? isatty(1) : ft;
    c.filter_err = fT < 0 ? isatty(2) : fT;
    return bh_qx_call_run(&c);
}
