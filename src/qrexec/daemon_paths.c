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
    /* The Admin API socket lives at <runtime>/qubesd.sock: a user who points the tools
     * at a daemon with $BULKHEAD_SOCKET means that daemon's runtime too. */
    static char from_sock[4096];
    const char *sock = getenv("BULKHEAD_SOCKET");
    const char *slash = sock ? strrchr(sock, '/') : NULL;
    if (slash && !strcmp(slash, "/qubesd.sock") && slash > sock && (size_t)(slash - sock) < sizeof from_sock) {
        memcpy(from_sock, sock, (size_t)(slash - sock));
        from_sock[slash - sock] = '\0';
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
