#include "log.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *log_prog = "bulkhead";
static int log_max = -1;

void bh_log_init(const char *prog)
{
    log_prog = prog;
    const char *l = getenv("BULKHEAD_LOG");
    log_max = BH_LOG_INFO;
    if (l) {
        if (!strcmp(l, "error")) log_max = BH_LOG_ERROR;
        else if (!strcmp(l, "warn")) log_max = BH_LOG_WARN;
        else if (!strcmp(l, "debug")) log_max = BH_LOG_DEBUG;
    }
}

void bh_log(enum bh_log_level lvl, const char *fmt, ...)
{
    static const char *names[] = { "error", "warn", "info", "debug" };
    if (log_max < 0)
        bh_log_init(log_prog);
    if ((int)lvl > log_max)
        return;
    char line[1024];
    int n = snprintf(line, sizeof line, "%s[%d] %s: ", log_prog, (int)getpid(), names[lvl]);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so concurrent processes do not interleave within a line. */
    size_t len = strnlen(line, sizeof line - 2);
    line[len++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, len);
    (void)w;
}
