/* The qube's user namespace and idmapped mounts.
 *
 * Each qube owns a disjoint range of host UIDs/GIDs (spec->uid_base, uid_count): its
 * root is host UID uid_base, which owns nothing on the host. Files of a template or a
 * private image are stored on disk with plain 0-based IDs; an idmapped mount through
 * the qube's user namespace makes them appear as the qube's own IDs, so one template
 * tree serves qubes with different ranges and never needs a recursive chown. */
#include "ns.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static int write_map(pid_t pid, const char *file, uid_t base, uint32_t count, bh_error *err)
{
    char path[64], line[64];
    snprintf(path, sizeof path, "/proc/%d/%s", (int)pid, file);
    int n = snprintf(line, sizeof line, "0 %u %u\n", (unsigned)base, count);
    _cleanup_close_ int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, line, (size_t)n) != n)
        return bh_fail_errno(err, "writing %s", path);
    return 0;
}

int bh_userns_create(uid_t base, uint32_t count, bh_error *err)
{
    if (base == 0 || count == 0 || (uint64_t)base + count > 0xFFFFFFFFull)
        return bh_fail(err, EINVAL, "bad UID range %u+%u", (unsigned)base, count);
    int up[2], down[2];
    if (pipe2(up, O_CLOEXEC) < 0)
        return bh_fail_errno(err, "pipe");
    if (pipe2(down, O_CLOEXEC) < 0) {
        close(up[0]), close(up[1]);
        return bh_fail_errno(err, "pipe");
    }
    pid_t pid = fork();
    if (pid < 0) {
        close(up[0]), close(up[1]), close(down[0]), close(down[1]);
        return bh_fail_errno(err, "fork");
    }
    if (pid == 0) {
        /* Holder: only lives until the parent has the namespace fd. */
        char c = unshare(CLONE_NEWUSER) == 0 ? 'u' : 'e';
        if (write(up[1], &c, 1) != 1)
            _exit(1);
        (void)!read(down[0], &c, 1);
        _exit(0);
    }
    close(up[1]);
    close(down[0]);
    int ret = -1;
    char c = 0;
    if (read(up[0], &c, 1) != 1 || c != 'u') {
        bh_fail(err, EPERM, "creating the user namespace failed");
        goto out;
    }
    if (write_map(pid, "uid_map", base, count, err) < 0 || write_map(pid, "gid_map", base, count, err) < 0)
        goto out;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/ns/user", (int)pid);
    ret = open(path, O_RDONLY | O_CLOEXEC);
    if (ret < 0)
        bh_fail_errno(err, "open %s", path);
out:
    close(up[0]);
    close(down[1]); /* EOF releases the holder */
    kill(pid, SIGKILL);
    while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
        ;
    return ret;
}

int bh_mount_setattr_fd(int mfd, int userns_fd, uint64_t attr_set, bh_error *err)
{
    struct mount_attr attr = { .attr_set = attr_set };
    if (userns_fd >= 0) {
        attr.attr_set |= MOUNT_ATTR_IDMAP;
        attr.userns_fd = (uint64_t)userns_fd;
    }
    if (attr.attr_set == 0)
        return 0;
    if (mount_setattr(mfd, "", AT_EMPTY_PATH | AT_RECURSIVE, &attr, sizeof attr) < 0)
        return bh_fail_errno(err, "mount_setattr");
    return 0;
}

int bh_idmapped_tree(const char *path, int userns_fd, uint64_t attr_set, bool rec, bh_error *err)
{
    _cleanup_close_ int fd = open_tree(AT_FDCWD, path,
                                      OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | (rec ? AT_RECURSIVE : 0));
    if (fd < 0)
        return bh_fail_errno(err, "open_tree %s", path);
    if (bh_mount_setattr_fd(fd, userns_fd, attr_set, err) < 0)
        return bh_prefix(err, "%s", path);
    return steal_fd(&fd);
}

int bh_attach(int mfd, const char *path, bh_error *err)
{
    if (move_mount(mfd, "", AT_FDCWD, path, MOVE_MOUNT_F_EMPTY_PATH) < 0)
        return bh_fail_errno(err, "move_mount to %s", path);
    return 0;
}
