#include "daemon_paths.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

const char *bh_qx_runtime(const char *opt)
{
    if (opt && *opt)
        return opt;
    const char *e = getenv("BULKHEAD_RUNTIME");
    return e && *e ? e : "/run/bulkhead";
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
