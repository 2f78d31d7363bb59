/* qfile-agent FILE...: the sending end of qubes.Filecopy. Writes the stream to stdout
 * (the call's stdin at the receiver), then reads the receiver's answer from stdin and
 * checks it: errno 0, the CRC-32 of everything we sent. A receiver that lies about either
 * makes us fail (and qvm-move keep the files). Exit 0 only when all is confirmed. */
#include "cleanup.h"
#include "io.h"
#include "qrexec/filecopy.h"
#include "qrexec/stream.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "qrexec/crc32.h"

static uint32_t crc;
static bool broken; /* the receiver stopped reading */
static uint64_t total_bytes;

static int out(const void *p, size_t n)
{
    if (broken)
        return -1;
    if (bh_write_all(1, p, n) < 0) {
        broken = true;
        return -1;
    }
    crc = bh_crc32(crc, p, n);
    return 0;
}

/* An early answer means the receiver gave up: stop sending and read it. */
static bool receiver_answered(void)
{
    struct pollfd p = { .fd = 0, .events = POLLIN };
    return poll(&p, 1, 0) > 0;
}

static int send_hdr(const char *name, const struct stat *st, uint64_t len)
{
    struct bh_fc_hdr h = { .namelen = (uint32_t)strlen(name) + 1, .mode = st->st_mode, .filelen = len,
                           .atime = (uint32_t)st->st_atim.tv_sec, .atime_nsec = (uint32_t)st->st_atim.tv_nsec,
                           .mtime = (uint32_t)st->st_mtim.tv_sec, .mtime_nsec = (uint32_t)st->st_mtim.tv_nsec };
    uint8_t raw[BH_FC_HDR_SIZE];
    bh_fc_hdr_encode(raw, &h);
    if (out(raw, sizeof raw) < 0 || out(name, h.namelen) < 0)
        return -1;
    return 0;
}

static int send_entry(int dirfd, const char *base, const char *name);

static int send_dir(int fd, const char *name, const struct stat *st)
{
    if (send_hdr(name, st, 0) < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    struct dirent *de;
    int rc = 0;
    while (rc == 0 && (de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        char child[BH_FC_MAX_NAME];
        if ((size_t)snprintf(child, sizeof child, "%s/%s", name, de->d_name) >= sizeof child) {
            fprintf(stderr, "qfile-agent: name too long: %s/%s\n", name, de->d_name);
            rc = -1;
            break;
        }
        rc = send_entry(dirfd(d), de->d_name, child);
    }
    closedir(d);
    if (rc == 0)
        rc = send_hdr(name, st, 0); /* again, so that the receiver sets the times last */
    return rc;
}

static int send_entry(int dirfd, const char *base, const char *name)
{
    if (receiver_answered())
        return -1;
    struct stat st;
    if (fstatat(dirfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0) {
        fprintf(stderr, "qfile-agent: %s: %s\n", name, strerror(errno));
        return -1;
    }
    if (S_ISLNK(st.st_mode)) {
        char target[BH_FC_MAX_NAME];
        ssize_t n = readlinkat(dirfd, base, target, sizeof target - 1);
        if (n <= 0)
            return -1;
        if (send_hdr(name, &st, (uint64_t)n) < 0 || out(target, (size_t)n) < 0)
            return -1;
        return 0;
    }
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dirfd, base, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0) {
            fprintf(stderr, "qfile-agent: %s: %s\n", name, strerror(errno));
            return -1;
        }
        return send_dir(fd, name, &st);
    }
    if (!S_ISREG(st.st_mode)) {
        fprintf(stderr, "qfile-agent: %s: not a regular file, directory or symlink\n", name);
        return -1;
    }
    _cleanup_close_ int fd = openat(dirfd, base, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "qfile-agent: %s: %s\n", name, strerror(errno));
        return -1;
    }
    if (send_hdr(name, &st, (uint64_t)st.st_size) < 0)
        return -1;
    static char buf[1 << 17];
    uint64_t left = (uint64_t)st.st_size;
    while (left) {
        ssize_t n = read(fd, buf, left > sizeof buf ? sizeof buf : (size_t)left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            fprintf(stderr, "qfile-agent: %s changed size while sending\n", name);
            return -1; /* the header promised the size: the stream cannot be finished */
        }
        if (out(buf, (size_t)n) < 0)
            return -1;
        left -= (uint64_t)n;
        total_bytes += (uint64_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    if (argc < 2) {
        fprintf(stderr, "usage: qfile-agent FILE...\n");
        return 2;
    }
    crc = 0;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        char path[PATH_MAX], dirbuf[PATH_MAX];
        snprintf(path, sizeof path, "%s", argv[i]);
        /* strip trailing slashes so that basename is the entry's own name */
        size_t len = strlen(path);
        while (len > 1 && path[len - 1] == '/')
            path[--len] = '\0';
        snprintf(dirbuf, sizeof dirbuf, "%s", path);
        char *base = basename(path), *dir = dirname(dirbuf);
        if (!strcmp(base, "/") || !strcmp(base, ".") || !strcmp(base, "..")) {
            fprintf(stderr, "qfile-agent: cannot send %s\n", argv[i]);
            rc = -1;
            break;
        }
        _cleanup_close_ int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0) {
            fprintf(stderr, "qfile-agent: %s: %s\n", dir, strerror(errno));
            rc = -1;
            break;
        }
        rc = send_entry(dfd, base, base);
    }
    if (rc == 0) {
        static const uint8_t end[BH_FC_HDR_SIZE];
        out(end, sizeof end);
    }
    /* Our EOF tells the receiver (and qrexec) that the stream is complete. */
    int devnull = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (devnull >= 0) {
        dup2(devnull, 1);
        close(devnull);
    }
    /* Whatever happened, the receiver's answer tells what it did. */
    struct bh_fc_result res;
    if (bh_fc_result_read(0, &res) < 0) {
        fprintf(stderr, "qfile-agent: no valid answer from the receiver\n");
        return 1;
    }
    if (res.error) {
        bh_qx_filter(res.last_name, strlen(res.last_name)); /* the receiver's bytes, shown here */
        fprintf(stderr, "qfile-agent: the receiver failed: %s (last file: %s)\n", strerror(res.error),
                res.last_name);
        return 1;
    }
    if (rc != 0 || broken) {
        fprintf(stderr, "qfile-agent: sending failed\n");
        return 1;
    }
    if (res.crc != (uint32_t)crc) {
        fprintf(stderr, "qfile-agent: the receiver's checksum does not match (%08x, sent %08x)\n", res.crc,
                (uint32_t)crc);
        return 1;
    }
    return 0;
}
