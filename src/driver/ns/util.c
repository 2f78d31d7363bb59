/* Small helpers of the ns engine. */
#include "ns.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

void bh_path_join(char *out, size_t n, const char *a, const char *b)
{
    int r = snprintf(out, n, "%s/%s", a, b);
    if (r < 0 || (size_t)r >= n)
        out[0] = '\0';
}

/* One line of passwd(5): name:pw:uid:gid:gecos:home:shell. Strict: decimal IDs within
 * a qube's range, a home that is an absolute path of bounded length. */
static int passwd_line(const char *l, size_t n, const char *user, uid_t *uid, gid_t *gid, char *home, size_t homelen)
{
    const char *f[7];
    size_t fl[7];
    size_t i = 0, start = 0;
    for (size_t k = 0; k <= n && i < 7; k++) {
        if (k == n || l[k] == ':') {
            f[i] = l + start;
            fl[i] = k - start;
            i++;
            start = k + 1;
        }
    }
    if (i < 6 || fl[0] != strlen(user) || memcmp(f[0], user, fl[0]) != 0)
        return 1;
    unsigned long ids[2];
    for (int j = 0; j < 2; j++) {
        const char *s = f[2 + j];
        size_t len = fl[2 + j];
        if (len == 0 || len > 5)
            return -1;
        ids[j] = 0;
        for (size_t k = 0; k < len; k++) {
            if (s[k] < '0' || s[k] > '9')
                return -1;
            ids[j] = ids[j] * 10 + (unsigned long)(s[k] - '0');
        }
        if (ids[j] > 65535)
            return -1;
    }
    if (fl[5] == 0 || f[5][0] != '/' || fl[5] >= homelen || memchr(f[5], '\0', fl[5]))
        return -1;
    *uid = (uid_t)ids[0];
    *gid = (gid_t)ids[1];
    memcpy(home, f[5], fl[5]);
    home[fl[5]] = '\0';
    return 0;
}

int bh_passwd_find(const char *text, size_t len, const char *user, uid_t *uid, gid_t *gid, char *home, size_t homelen)
{
    if (!user || !*user || homelen == 0)
        return -1;
    size_t pos = 0;
    while (pos < len) {
        const char *nl = memchr(text + pos, '\n', len - pos);
        size_t n = nl ? (size_t)(nl - (text + pos)) : len - pos;
        int r = passwd_line(text + pos, n, user, uid, gid, home, homelen);
        if (r <= 0)
            return r;
        pos += n + 1;
    }
    return -1;
}

int bh_open_beneath(int dirfd, const char *rel, bool dir)
{
    struct open_how how = {
        .flags = O_PATH | O_CLOEXEC | (dir ? O_DIRECTORY : 0),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    return (int)syscall(SYS_openat2, dirfd, rel, &how, sizeof how);
}

void bh_fd_path(int fd, char *out, size_t n)
{
    snprintf(out, n, "/proc/self/fd/%d", fd);
}

int bh_mkdir_beneath(int dirfd, const char *rel, unsigned mode, uid_t owner, bool set_owner, bool *created)
{
    char parent[4096];
    if (created)
        *created = false;
    int r = snprintf(parent, sizeof parent, "%s", rel);
    if (r < 0 || (size_t)r >= sizeof parent) {
        errno = ENAMETOOLONG;
        return -1;
    }
    char *slash = strrchr(parent, '/');
    const char *name = slash ? slash + 1 : parent;
    int pfd = slash ? (*slash = '\0', bh_open_beneath(dirfd, parent, true)) : dup(dirfd);
    if (pfd < 0)
        return -1;
    int ret = 0;
    if (mkdirat(pfd, name, mode) == 0) {
        if (created)
            *created = true;
        if (set_owner && fchownat(pfd, name, owner, owner, AT_SYMLINK_NOFOLLOW) < 0)
            ret = -1;
    } else if (errno != EEXIST) {
        ret = -1;
    }
    int e = errno;
    close(pfd);
    errno = e;
    return ret;
}
