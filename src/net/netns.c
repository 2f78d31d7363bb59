#include "netns.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <stdlib.h>
#include <unistd.h>

#ifndef NSFS_MAGIC
#define NSFS_MAGIC 0x6e736673
#endif

bool bh_netns_exists(const char *path)
{
    struct statfs s;
    return statfs(path, &s) == 0 && (unsigned long)s.f_type == NSFS_MAGIC;
}

void bh_netns_remove(const char *path)
{
    while (umount2(path, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
        ;
    (void)unlink(path);
}

int bh_netns_enter(int nsfd, int *saved, bh_error *err)
{
    *saved = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (*saved < 0)
        return bh_fail_errno(err, "open own network namespace");
    if (setns(nsfd, CLONE_NEWNET) < 0) {
        int e = errno;
        close(*saved);
        *saved = -1;
        errno = e;
        return bh_fail_errno(err, "enter network namespace");
    }
    return 0;
}

void bh_netns_leave(int saved)
{
    if (saved < 0)
        return;
    /* Cannot fail for a namespace we were in a moment ago; if it did, continuing in the
     * wrong namespace would be worse than stopping. */
    if (setns(saved, CLONE_NEWNET) < 0)
        abort();
    close(saved);
}

int bh_netns_create(const char *path, bh_error *err)
{
    bh_netns_remove(path);
    int fd = open(path, O_RDONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0)
        return bh_fail_errno(err, "create %s", path);
    close(fd);
    _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return bh_fail_errno(err, "open own network namespace");
    if (unshare(CLONE_NEWNET) < 0) {
        bh_fail_errno(err, "new network namespace");
        (void)unlink(path);
        return -1;
    }
    int r = mount("/proc/thread-self/ns/net", path, NULL, MS_BIND, NULL);
    int e = errno;
    if (setns(self, CLONE_NEWNET) < 0)
        abort();
    if (r < 0) {
        errno = e;
        bh_fail_errno(err, "pin network namespace at %s", path);
        (void)unlink(path);
        return -1;
    }
    return 0;
}

int bh_netns_open_named(const char *name, bh_error *err)
{
    char p[300];
    if (!name || !*name)
        snprintf(p, sizeof p, "/proc/thread-self/ns/net");
    else if (strchr(name, '/') || !strcmp(name, ".") || !strcmp(name, "..") || strlen(name) > 200)
        return bh_fail(err, EINVAL, "invalid network namespace name '%.40s'", name);
    else
        snprintf(p, sizeof p, "/run/netns/%s", name);
    int fd = open(p, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return bh_fail_errno(err, "open %s", p);
    return fd;
}

int bh_netns_sysctl(int nsfd, const char *key, const char *val, char *old, size_t oldn, bh_error *err)
{
    int saved = -1;
    if (nsfd >= 0 && bh_netns_enter(nsfd, &saved, err) < 0)
        return -1;
    char p[256];
    snprintf(p, sizeof p, "/proc/sys/net/%s", key);
    int ret = 0;
    int fd = open(p, O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        ret = bh_fail_errno(err, "open %s", p);
    } else {
        if (old && oldn) {
            ssize_t n = read(fd, old, oldn - 1);
            old[n > 0 ? n : 0] = '\0';
            char *nl = strchr(old, '\n');
            if (nl)
                *nl = '\0';
            lseek(fd, 0, SEEK_SET);
        }
        if (write(fd, val, strlen(val)) < 0)
            ret = bh_fail_errno(err, "write %s", p);
        close(fd);
    }
    bh_netns_leave(saved);
    return ret;
}
