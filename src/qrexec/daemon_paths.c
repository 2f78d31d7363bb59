#include "daemon_paths.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *bh_qx_runtime(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *e = getenv("BULKHEAD_RUNTIME");
    if (e && *e)
        return e;
    /* bulkheadd keeps its socket in its runtime dir (RUNTIME/qubesd.sock), and users
     * only export BULKHEAD_SOCKET (README): find the qubes' sockets next to it, so that
     * qvm-run talks to the same daemon as qvm-start does. */
    static char from_sock[4096];
    const char *s = getenv("BULKHEAD_SOCKET");
    const char *slash = s ? strrchr(s, '/') : NULL;
    if (slash && slash != s && (size_t)(slash - s) < sizeof from_sock) {
        memcpy(from_sock, s, (size_t)(slash - s));
        from_sock[slash - s] = '\0';
        return from_sock;
    }
    return "/run/bulkhead";
}

int bh_qx_qube_path(char *out, size_t size, const char *runtime, const char *qube, const char *leaf)
{
    int n = snprintf(out, size, "%s/qubes/%s/%s", runtime, qube, leaf);
    if (n < 0 || (size_t)n >= size) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}
