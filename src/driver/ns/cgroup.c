/* Cgroups: picks v1 or v2 and names the per-daemon parent. Every qube's cgroup sits
 * under bulkhead-<hash of the daemon's runtime root>/<qube name>, so daemons (and test
 * runs) side by side never touch each other's cgroups. */
#include "ns.h"
#include "cleanup.h"
#include "io.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <linux/magic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

const struct bh_cgroup_ops *bh_cgroup_ops(void)
{
    struct statfs sf;
    if (statfs("/sys/fs/cgroup", &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
        return &bh_cgroup_v2;
    return &bh_cgroup_v1;
}

void bh_cgroup_tag(const struct bh_qube_spec *spec, char *out, size_t n)
{
    /* runtime_dir is <runtime>/qubes/<name>: hash <runtime>. */
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", spec->runtime_dir);
    char *root = dirname(dirname(buf));
    char real[4096];
    if (realpath(root, real))
        root = real;
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *s = root; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ull;
    snprintf(out, n, "bulkhead-%012llx", (unsigned long long)(h & 0xffffffffffffull));
}

const struct bh_dev_rule bh_cg_base_devices[] = {
    { 'c', 1, 3, "rwm" }, { 'c', 1, 5, "rwm" }, { 'c', 1, 7, "rwm" }, { 'c', 1, 8, "rwm" }, { 'c', 1, 9, "rwm" },
    { 'c', 5, 0, "rwm" }, { 'c', 5, 2, "rwm" }, { 'c', 136, -1, "rwm" },
    /* /dev/fuse: file systems in user space inside the qube (an attached disk read by
     * fuse2fs; the mount itself goes through the qube's broker, fusebroker.c). */
    { 'c', 10, 229, "rwm" },
};
const size_t bh_cg_base_devices_n = BH_ARRAY_SIZE(bh_cg_base_devices);

int bh_cg_write(const char *dir, const char *file, const char *val, bh_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_fail_errno(err, "open %s", path);
    size_t len = strlen(val);
    if (write(fd, val, len) != (ssize_t)len)
        return bh_fail_errno(err, "write '%s' to %s", val, path);
    return 0;
}

bool bh_cg_has_children(const char *dir)
{
    _cleanup_closedir_ DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_type == DT_DIR && e->d_name[0] != '.' && e->d_name[0] != '@') /* '@': our v2 leaves */
            return true;
    return false;
}

void bh_cg_move_procs(const char *from, const char *to)
{
    char path[4200];
    snprintf(path, sizeof path, "%s/cgroup.procs", from);
    _cleanup_free_ char *procs = bh_read_file(path, 1 << 16, NULL);
    for (char *p = procs, *e; p && *p; p = e) {
        long pid = strtol(p, &e, 10);
        if (e == p)
            break;
        char v[32];
        snprintf(v, sizeof v, "%ld", pid);
        (void)bh_cg_write(to, "cgroup.procs", v, NULL);
        while (*e == '\n')
            e++;
    }
}
