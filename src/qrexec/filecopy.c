#include "filecopy.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v; p[1] = (uint8_t)(v >> 8); p[2] = (uint8_t)(v >> 16); p[3] = (uint8_t)(v >> 24);
}
static uint32_t get32(const uint8_t *p) { return p[0] | p[1] << 8 | p[2] << 16 | (uint32_t)p[3] << 24; }

void bh_fc_hdr_encode(uint8_t o[BH_FC_HDR_SIZE], const struct bh_fc_hdr *h)
{
    put32(o, h->namelen);
    put32(o + 4, h->mode);
    put32(o + 8, (uint32_t)h->filelen);
    put32(o + 12, (uint32_t)(h->filelen >> 32));
    put32(o + 16, h->atime);
    put32(o + 20, h->atime_nsec);
    put32(o + 24, h->mtime);
    put32(o + 28, h->mtime_nsec);
}

void bh_fc_hdr_decode(const uint8_t i[BH_FC_HDR_SIZE], struct bh_fc_hdr *h)
{
    h->namelen = get32(i);
    h->mode = get32(i + 4);
    h->filelen = get32(i + 8) | (uint64_t)get32(i + 12) << 32;
    h->atime = get32(i + 16);
    h->atime_nsec = get32(i + 20);
    h->mtime = get32(i + 24);
    h->mtime_nsec = get32(i + 28);
}

int bh_fc_name_check(const char *name)
{
    if (!*name || name[0] == '/')
        return -1;
    int depth = 0;
    const char *p = name;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && p[0] == '.' && p[1] == '.'))
            return -1;
        if (n > 255)
            return -1;
        depth++;
        p += n;
        if (*p == '/') {
            p++;
            if (!*p)
                return -1; /* trailing slash */
        }
    }
    return depth > BH_FC_MAX_DEPTH ? -1 : depth;
}

int bh_fc_symlink_check(const char *linkname, const char *target)
{
    if (!*target || target[0] == '/')
        return -1;
    int ldepth = bh_fc_name_check(linkname);
    if (ldepth < 1)
        return -1;
    /* Qubes' rule: ".." only as leading components, at most ldepth - 2 of them, then at
     * least one plain name; no "." or empty components. A ".." after a name could climb
     * through another link of the copy (d/y -> ".", then d/z -> "y/y/../.." resolves
     * to the parent of the incoming dir): with leading ".." only, every link resolves
     * inside its own top-level entry, whatever the other links are. */
    int up = 0, names = 0;
    const char *p = target;
    while (*p) {
        const char *e = strchr(p, '/');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == 0 || (n == 1 && p[0] == '.'))
            return -1;
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            if (names || ++up > ldepth - 2)
                return -1;
        } else {
            if (n > 255)
                return -1;
            names++;
        }
        p += n;
        if (*p == '/') {
            p++;
            if (!*p)
                return -1; /* trailing slash */
        }
    }
    return names > 0 && names <= BH_FC_MAX_DEPTH * 2 ? 0 : -1;
}

struct in {
    const struct bh_fc_reader *r;
    uLong crc;
};

/* Reads exactly n bytes and adds them to the CRC; -1 on EOF/error. */
static int rd(struct in *in, void *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        ssize_t k = in->r->read(in->r->ctx, (char *)buf + got, n - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        in->crc = crc32(in->crc, (const Bytef *)buf + got, (uInt)k);
        got += (size_t)k;
    }
    return 0;
}

static int fail(struct bh_fc_result *res, int e, const char *fmt, const char *name)
{
    res->error = e;
    snprintf(res->msg, sizeof res->msg, fmt, name ? name : "");
    return -1;
}

/* ---- the unpacker: the stream's checks, creating entries through a sink ---- */

static int unpack_file(struct in *in, const struct bh_fc_sink *sink, const struct bh_fc_hdr *h,
                       struct bh_fc_result *res, const char *name)
{
    if (sink->file_create(sink->ctx, name, h) < 0)
        return fail(res, errno, "cannot create %s", name);
    static char buf[1 << 18];
    uint64_t left = h->filelen;
    int rc = 0;
    while (left) {
        size_t n = left > sizeof buf ? sizeof buf : (size_t)left;
        if (rd(in, buf, n) < 0) {
            rc = fail(res, EPIPE, "stream ended inside %s", name);
            break;
        }
        if (sink->file_write(sink->ctx, buf, n) < 0) {
            rc = fail(res, errno, "writing %s", name);
            break;
        }
        left -= n;
    }
    sink->file_done(sink->ctx, h, rc == 0);
    return rc;
}

int bh_fc_unpack_to(const struct bh_fc_reader *r, const struct bh_fc_sink *sink, const struct bh_fc_limits *lim,
                    struct bh_fc_result *res)
{
    memset(res, 0, sizeof *res);
    struct in in = { r, crc32(0, NULL, 0) };
    uint64_t files = 0, bytes = 0;
    uint64_t max_files = lim && lim->max_files ? lim->max_files : BH_FC_DEFAULT_MAX_FILES;
    uint64_t max_bytes = lim ? lim->max_bytes : 0;
    static const uint8_t zero[BH_FC_HDR_SIZE];
    char name[BH_FC_MAX_NAME];
    int rc = -1;
    for (;;) {
        uint8_t raw[BH_FC_HDR_SIZE];
        if (rd(&in, raw, sizeof raw) < 0) {
            fail(res, EPIPE, "stream ended without its end marker%s", NULL);
            goto out;
        }
        if (!memcmp(raw, zero, sizeof raw))
            break;
        struct bh_fc_hdr h;
        bh_fc_hdr_decode(raw, &h);
        if (h.namelen < 2 || h.namelen > BH_FC_MAX_NAME) {
            fail(res, ENAMETOOLONG, "bad name length%s", NULL);
            goto out;
        }
        if (rd(&in, name, h.namelen) < 0) {
            fail(res, EPIPE, "stream ended in a name%s", NULL);
            goto out;
        }
        if (name[h.namelen - 1] != '\0' || strlen(name) != h.namelen - 1) {
            fail(res, EINVAL, "name with a NUL inside%s", NULL);
            goto out;
        }
        snprintf(res->last_name, sizeof res->last_name, "%s", name);
        if (bh_fc_name_check(name) < 0) {
            fail(res, EINVAL, "refused name %s", name);
            goto out;
        }
        if (++files > max_files) {
            fail(res, EDQUOT, "too many files (at %s)", name);
            goto out;
        }
        if (S_ISREG(h.mode)) {
            if (max_bytes && (h.filelen > max_bytes || bytes + h.filelen > max_bytes)) {
                fail(res, EDQUOT, "size limit reached at %s", name);
                goto out;
            }
            bytes += h.filelen;
            if (unpack_file(&in, sink, &h, res, name) < 0)
                goto out;
        } else if (S_ISDIR(h.mode)) {
            if (h.filelen != 0) {
                fail(res, EINVAL, "directory %s with a length", name);
                goto out;
            }
            if (sink->dir(sink->ctx, name, &h) < 0) {
                fail(res, errno, "cannot create directory %s", name);
                goto out;
            }
        } else if (S_ISLNK(h.mode)) {
            if (h.filelen == 0 || h.filelen >= BH_FC_MAX_NAME) {
                fail(res, ENAMETOOLONG, "bad symlink length at %s", name);
                goto out;
            }
            char target[BH_FC_MAX_NAME];
            if (rd(&in, target, (size_t)h.filelen) < 0) {
                fail(res, EPIPE, "stream ended in symlink %s", name);
                goto out;
            }
            target[h.filelen] = '\0';
            if (strlen(target) != h.filelen || bh_fc_symlink_check(name, target) < 0) {
                fail(res, EINVAL, "refused symlink %s", name);
                goto out;
            }
            if (sink->symlink(sink->ctx, name, target) < 0) {
                fail(res, errno, "cannot create symlink %s", name);
                goto out;
            }
        } else {
            fail(res, EINVAL, "unsupported file type at %s", name);
            goto out;
        }
    }
    rc = 0;
out:
    res->crc = (uint32_t)in.crc;
    return rc;
}

/* ---- the real sink: entries under a directory fd ---- */

struct fs_sink {
    int dirfd;
    int fd; /* the regular file being written */
};

/* Opens the directory that will hold `name`'s last component, walking from dirfd with
 * O_NOFOLLOW at every step (a symlink anywhere on the way fails with ELOOP/ENOTDIR).
 * *last points at the last component inside name. */
static int open_parent(int dirfd, char *name, const char **last)
{
    int cur = dup(dirfd);
    if (cur < 0)
        return -1;
    char *p = name;
    for (;;) {
        char *slash = strchr(p, '/');
        if (!slash) {
            *last = p;
            return cur;
        }
        *slash = '\0';
        int next = openat(cur, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int saved = errno;
        *slash = '/';
        close(cur);
        if (next < 0) {
            errno = saved;
            return -1;
        }
        cur = next;
        p = slash + 1;
    }
}

static void set_times(int fd, const struct bh_fc_hdr *h)
{
    struct timespec ts[2] = { { h->atime, h->atime_nsec < 1000000000u ? h->atime_nsec : 0 },
                              { h->mtime, h->mtime_nsec < 1000000000u ? h->mtime_nsec : 0 } };
    futimens(fd, ts);
}

/* The parent of name as an fd, and a writable copy of name whose *last is in it. */
#define WITH_PARENT(fs, name, pfd, last)                                         \
    char walk_[BH_FC_MAX_NAME];                                                  \
    snprintf(walk_, sizeof walk_, "%s", name);                                   \
    const char *last;                                                            \
    _cleanup_close_ int pfd = open_parent((fs)->dirfd, walk_, &last);            \
    if (pfd < 0)                                                                 \
        return -1

static int fs_file_create(void *ctx, const char *name, const struct bh_fc_hdr *h)
{
    (void)h;
    struct fs_sink *fs = ctx;
    WITH_PARENT(fs, name, pfd, last);
    fs->fd = openat(pfd, last, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    return fs->fd < 0 ? -1 : 0;
}

static int fs_file_write(void *ctx, const void *p, size_t n)
{
    struct fs_sink *fs = ctx;
    return bh_write_all(fs->fd, p, n) < 0 ? -1 : 0;
}

static void fs_file_done(void *ctx, const struct bh_fc_hdr *h, bool complete)
{
    struct fs_sink *fs = ctx;
    if (complete) {
        fchmod(fs->fd, h->mode & 0777);
        set_times(fs->fd, h);
    }
    close(fs->fd);
    fs->fd = -1;
}

static int fs_dir(void *ctx, const char *name, const struct bh_fc_hdr *h)
{
    struct fs_sink *fs = ctx;
    WITH_PARENT(fs, name, pfd, last);
    if (mkdirat(pfd, last, 0700) == 0)
        return 0;
    if (errno != EEXIST)
        return -1;
    /* second header of a directory: its contents are done; set mode and times */
    _cleanup_close_ int d = openat(pfd, last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0)
        return -1;
    fchmod(d, (h->mode & 0777) | 0700);
    set_times(d, h);
    return 0;
}

static int fs_symlink(void *ctx, const char *name, const char *target)
{
    struct fs_sink *fs = ctx;
    WITH_PARENT(fs, name, pfd, last);
    return symlinkat(target, pfd, last);
}

int bh_fc_unpack(const struct bh_fc_reader *r, int dirfd, const struct bh_fc_limits *lim,
                 struct bh_fc_result *res)
{
    struct fs_sink fs = { .dirfd = dirfd, .fd = -1 };
    const struct bh_fc_sink sink = { fs_file_create, fs_file_write, fs_file_done, fs_dir, fs_symlink, &fs };
    return bh_fc_unpack_to(r, &sink, lim, res);
}

size_t bh_fc_result_encode(const struct bh_fc_result *res, uint8_t *buf)
{
    size_t n = strnlen(res->last_name, BH_FC_MAX_NAME - 1);
    put32(buf, (uint32_t)res->error);
    put32(buf + 4, 0);
    put32(buf + 8, res->crc);
    put32(buf + 12, 0);
    put32(buf + 16, (uint32_t)n);
    memcpy(buf + 20, res->last_name, n);
    return 20 + n;
}

int bh_fc_result_read(int fd, struct bh_fc_result *res)
{
    memset(res, 0, sizeof *res);
    uint8_t h[20];
    if (bh_read_all(fd, h, 16) != 16)
        return -1;
    res->error = (int)get32(h);
    uint64_t crc = get32(h + 8) | (uint64_t)get32(h + 12) << 32;
    if (crc > 0xffffffffu)
        return -1;
    res->crc = (uint32_t)crc;
    /* the name part is optional in old receivers */
    ssize_t k = bh_read_all(fd, h + 16, 4);
    if (k == 0)
        return 0;
    if (k != 4)
        return -1;
    uint32_t n = get32(h + 16);
    if (n >= BH_FC_MAX_NAME)
        return -1;
    if (bh_read_all(fd, res->last_name, n) != (ssize_t)n)
        return -1;
    res->last_name[n] = '\0';
    return 0;
}
