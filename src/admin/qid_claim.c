#include "qid_claim.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

int bh_qid_claims_open(const char *path, bh_error *err)
{
    /* no symlink: the file is root's, in a root-only directory; fail rather than follow */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return bh_fail_errno(err, "qid claims %s", path);
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return bh_fail(err, EINVAL, "qid claims %s: not a regular file", path);
    }
    return fd;
}

static struct flock byte_of(short type, uint32_t qid)
{
    /* l_pid must be 0 for OFD locks */
    return (struct flock){ .l_type = type, .l_whence = SEEK_SET, .l_start = (off_t)qid, .l_len = 1, .l_pid = 0 };
}

int bh_qid_claim(int fd, uint32_t qid, bh_error *err)
{
    struct flock fl = byte_of(F_WRLCK, qid);
    if (fcntl(fd, F_OFD_SETLK, &fl) == 0)
        return 0;
    if (errno != EAGAIN && errno != EACCES)
        return bh_fail_errno(err, "claiming qid %u", (unsigned)qid);
    struct flock who = byte_of(F_WRLCK, qid);
    if (fcntl(fd, F_OFD_GETLK, &who) == 0 && who.l_type != F_UNLCK && who.l_pid > 0)
        return bh_fail(err, EAGAIN, "qid %u is taken on this host (by process %d)", (unsigned)qid, (int)who.l_pid);
    return bh_fail(err, EAGAIN, "qid %u is taken on this host (by another bulkheadd)", (unsigned)qid);
}

void bh_qid_release(int fd, uint32_t qid)
{
    struct flock fl = byte_of(F_UNLCK, qid);
    (void)fcntl(fd, F_OFD_SETLK, &fl);
}
