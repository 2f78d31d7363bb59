#include "policy_install.h"
#include "cleanup.h"
#include "io.h"
#include "selfpath.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int find_defaults(char *out, size_t n)
{
    const char *env = getenv("BULKHEAD_DATADIR");
    if (env && *env) {
        snprintf(out, n, "%s/policy.d", env);
        return access(out, R_OK);
    }
    /* build tree: <src>/build/src/admin; installed: <prefix>/bin */
    static const char *const rels[] = { "../../../data", "../share/bulkhead", NULL };
    return bh_find_near_self(rels, "policy.d", R_OK, out, n);
}

/* Copies regular files from src to dst, and one level of subdirectories (include/). */
static int copy_dir(const char *src, const char *dst, int depth, bh_error *err)
{
    if (mkdir(dst, 0755) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", dst);
    _cleanup_closedir_ DIR *d = opendir(src);
    if (!d)
        return bh_fail_errno(err, "opendir %s", src);
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.')
            continue;
        char s[PATH_MAX], t[PATH_MAX];
        snprintf(s, sizeof s, "%s/%s", src, de->d_name);
        snprintf(t, sizeof t, "%s/%s", dst, de->d_name);
        struct stat st;
        if (lstat(s, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode) && depth == 0) {
            if (copy_dir(s, t, 1, err) < 0)
                return -1;
        } else if (S_ISREG(st.st_mode)) {
            size_t len;
            _cleanup_free_ char *data = bh_read_file(s, 1 << 20, &len);
            if (!data || bh_write_file_atomic(t, data, len, 0644) < 0)
                return bh_fail_errno(err, "copying %s", s);
        }
    }
    return 0;
}

int bh_policy_install_defaults(const char *root, bh_error *err)
{
    char dst[PATH_MAX], src[PATH_MAX];
    snprintf(dst, sizeof dst, "%s/policy.d", root);
    if (access(dst, F_OK) == 0)
        return 0;
    if (find_defaults(src, sizeof src) < 0)
        return bh_fail(err, ENOENT, "default policy not found (set BULKHEAD_DATADIR)");
    /* Build beside, then rename: a crash never leaves a half-filled policy.d (which
     * would then count as the user's). */
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.new", dst);
    if (copy_dir(src, tmp, 0, err) < 0)
        return -1;
    if (rename(tmp, dst) < 0)
        return bh_fail_errno(err, "rename %s", tmp);
    return 0;
}
