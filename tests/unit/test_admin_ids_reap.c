/* qube_ids_reap.c: a sweep whose child cannot set itself up says which step failed. */
#include "tap.h"
#include "host_ids.h"
#include "qube_ids_reap.h"
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* close_range as the sweep's child calls it, failing as under a seccomp filter that does
 * not know the call (EPERM) once armed; never passed on (nothing here needs it) */
static bool fail_close_range;
int close_range(unsigned int first, unsigned int last, int flags)
{
    (void)first, (void)last, (void)flags;
    errno = fail_close_range ? EPERM : ENOSYS;
    return -1;
}

/* What bh_qube_ids_reap(qid) writes to stderr. */
static char *reap_log(uint32_t qid, int *ret)
{
    char path[] = "/tmp/bh-ids-reap-XXXXXX";
    int fd = mkstemp(path), saved = dup(2);
    unlink(path);
    dup2(fd, 2);
    *ret = bh_qube_ids_reap(qid);
    dup2(saved, 2);
    close(saved);
    static char buf[4096];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    close(fd);
    return buf;
}

int main(void)
{
    fail_close_range = true;
    int r;
    const char *log = reap_log(BH_QID_MAX, &r);
    CHECK(r == -1);
    CHECK(strstr(log, "the sweep failed: its child could not close bulkheadd's fds (close_range)") != NULL);
    CHECK(strstr(log, "close_range: Operation not permitted") != NULL);
    if (tap_failed)
        fprintf(stderr, "log:\n%s", log);
    return tap_done();
}
