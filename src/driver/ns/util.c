/* Small helpers of the ns engine. */
#include "ns.h"
#include <stdio.h>

void bh_path_join(char *out, size_t n, const char *a, const char *b)
{
    int r = snprintf(out, n, "%s/%s", a, b);
    if (r < 0 || (size_t)r >= n)
        out[0] = '\0';
}
