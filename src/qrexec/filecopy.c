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
#include "crc32.h"

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

/* Code points safe to display in a received name, as ranges (gen_name_allowlist.c). */
static const struct { uint32_t lo, hi; } allowlist[] = {
#include "name_allowlist.inc"
};

bool bh_fc_code_point_safe(uint32_t cp)
{
    size_t lo = 0, hi = sizeof allowlist / sizeof *allowlist;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (cp < allowlist[mid].lo)
            hi = mid;
        else if (cp > allowlist[mid].hi)
            lo = mid + 1;
        else
            return true;
    }
    return false;
}

/* Length of the UTF-8 character at s if it is safe to display, else 0. Lead bytes as
 * Qubes reads them: C2-DF, E0 A0-BF, E1-EF, F0 90-BF, F1-F4; then tails 80-BF; ASCII
 * controls never (they are handled before this). */
static size_t safe_utf8_len(const unsigned char *s)
{
    size_t len;
    uint32_t cp;
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2, cp = s[0] & 0x1f;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3, cp = s[0] & 0x0f;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4, cp = s[0] & 0x07;
    else
        return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xf0 && s[1] < 0x90))
        return 0; /* overlong */
    for (size_t i = 1; i < len; i++) {
        if (s[i] < 0x80 || s[i] > 0xbf) /* a NUL ends the check here too */
            return 0;
        cp = cp << 6 | (s[i] & 0x3f);
    }
    return bh_fc_code_point_safe(cp) ? len : 0;
}

enum { NON_CANONICAL = 1u << 8, TRAILING_SLASH = 1u << 9 };

/* Qubes' path walk: the number of components that are not "..", or -errno. At most
 * `dotdot` leading ".." components; after any other component, none. */
static long validate_path(const unsigned char *s, size_t dotdot, unsigned flags)
{
    bool loose = flags & NON_CANONICAL;
    long parts = 0;
    if (!s[0])
        return loose ? 0 : -ENOLINK;
    if (s[0] == '/')
        return -ENOLINK;
    size_t i;
    for (i = 0; s[i]; i++) {
        if (i == 0 || s[i - 1] == '/') {
            if (s[i] == '/') {
                if (loose)
                    continue;
                return -EILSEQ;
            }
            if (s[i] == '.' && (s[i + 1] == '\0' || s[i + 1] == '/')) {
                if (loose)
                    continue;
                return -EILSEQ;
            }
            if (s[i] == '.' && s[i + 1] == '.' && (s[i + 2] == '\0' || s[i + 2] == '/')) {
                if (dotdot < 1)
                    return -ENOLINK;
                dotdot--;
                i++;
                continue;
            }
            dotdot = 0;
            parts++;
        }
        if ((s[i] >= 0x20 && s[i] <= 0x7e) || (flags & BH_FC_ALLOW_UNSAFE_CHARACTERS))
            continue;
        size_t n = safe_utf8_len(s + i);
        if (!n)
            return -EILSEQ;
        i += n - 1;
    }
    if (!(flags & TRAILING_SLASH) && s[i - 1] == '/')
        return -EILSEQ;
    return parts;
}

/* A component is at most NAME_MAX bytes: the kernel's bound, which Qubes' receiver
 * meets as ENAMETOOLONG from openat(); refused here before anything is walked. The
 * depth is bounded by the name's length (BH_FC_MAX_NAME) only, as in Qubes. */
static int bounds(const char *name)
{
    long depth = 1, comp = 0;
    for (const char *p = name; *p; p++) {
        if (*p == '/') {
            depth++, comp = 0;
        } else if (++comp > 255) {
            return -ENAMETOOLONG;
        }
    }
    return (int)depth;
}

int bh_fc_name_check_flags(const char *name, unsigned flags)
{
    flags &= BH_FC_ALLOW_UNSAFE_CHARACTERS;
    if (validate_path((const unsigned char *)name, 0, flags) <= 0)
        return -EILSEQ;
    return bounds(name);
}

int bh_fc_name_check(const char *name)
{
    int r = bh_fc_name_check_flags(name, 0);
    return r < 0 ? -1 : r;
}

int bh_fc_symlink_check(const char *linkname, const char *target)
{
    return bh_fc_symlink_check_flags(linkname, target, 0) < 0 ? -1 : 0;
}

int bh_fc_symlink_check_flags(const char *linkname, const char *target, unsigned flags)
{
    unsigned cflags = flags & BH_FC_ALLOW_UNSAFE_CHARACTERS;
    long depth = validate_path((const unsigned char *)linkname, 0, cflags);
    if (depth < 0)
        return -EILSEQ;
    if (flags & BH_FC_ALLOW_UNSAFE_SYMLINKS)
        return depth > 0 ? 0 : -ENOLINK;
    /* "a" may not be a link at all, and "a/b" may point at most to a sibling: nothing
     * in ~/QubesIncoming/SOURCE/a can point outside a */
    if (depth < 2)
        return -ENOLINK;
    if (flags & BH_FC_ALLOW_NON_CANONICAL_SYMLINKS)
        cflags |= NON_CANONICAL;
    long r = validate_path((const unsigned char *)target, (size_t)(depth - 2), cflags | TRAILING_SLASH);
    if (r < 0)
        return (int)r;
    int b = bounds(target);
    return b < 0 ? b : 0;
}

struct in {
    const struct bh_fc_reader *r;
    uint32_t crc;
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
        in->crc = bh_crc32(in->crc, (const char *)buf + got, (size_t)k);
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
            rc = fail(res, BH_FC_LEGAL_EOF, "stream ended inside %s", name);
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
    struct in in = { r, 0 };
    uint64_t files = 0, bytes = 0;
    uint64_t max_files = lim && lim->max_files ? lim->max_files : BH_FC_DEFAULT_MAX_FILES;
    uint64_t max_bytes = lim ? lim->max_bytes : 0;
    unsigned flags = lim ? lim->name_flags : 0;
    char name[BH_FC_MAX_NAME];
    int rc = -1;
    for (;;) {
        uint8_t raw[BH_FC_HDR_SIZE];
        if (rd(&in, raw, sizeof raw) < 0) {
            fail(res, EREMOTEIO, "stream ended without its end marker%s", NULL);
            goto out;
        }
        struct bh_fc_hdr h;
        bh_fc_hdr_decode(raw, &h);
        if (h.namelen == 0) /* the end marker (Qubes looks at namelen only) */
            break;
        if (h.namelen > BH_FC_MAX_NAME - 1) {
            fail(res, ENAMETOOLONG, "name too long%s", NULL);
            goto out;
        }
        if (rd(&in, name, h.namelen) < 0) {
            fail(res, BH_FC_LEGAL_EOF, "stream ended in a name%s", NULL);
            goto out;
        }
        if (name[h.namelen - 1] != '\0' || strlen(name) != h.namelen - 1) {
            fail(res, EINVAL, "name with a NUL inside%s", NULL);
            goto out;
        }
        snprintf(res->last_name, sizeof res->last_name, "%s", name);
        /* every name before anything walks it; a symlink's target below */
        int nc = bh_fc_name_check_flags(name, flags);
        if (nc < 0) {
            fail(res, -nc, nc == -EILSEQ ? "refused name %s (unsafe characters or not canonical)"
                                         : "refused name %s (too long or too deep)", name);
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
            if (h.filelen > BH_FC_MAX_NAME - 1) {
                fail(res, ENAMETOOLONG, "symlink target too long at %s", name);
                goto out;
            }
            char target[BH_FC_MAX_NAME];
            if (rd(&in, target, (size_t)h.filelen) < 0) {
                fail(res, BH_FC_LEGAL_EOF, "stream ended in symlink %s", name);
                goto out;
            }
            target[h.filelen] = '\0';
            int sc = strlen(target) != h.filelen ? -EINVAL : bh_fc_symlink_check_flags(name, target, flags);
            if (sc == 0 && !*target)
                sc = -ENOENT; /* what symlinkat() gives Qubes' receiver for an empty target */
            if (sc < 0) {
                fail(res, -sc, "refused symlink %s", name);
                snprintf(res->last_name, sizeof res->last_name, "%s", target); /* as Qubes */
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
    int fd;         /* the regular file being written */
    int pfd;        /* its directory, and its name there: an incomplete file is removed */
    char last[256];
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
    if (fs->fd < 0)
        return -1;
    fs->pfd = dup(pfd);
    snprintf(fs->last, sizeof fs->last, "%s", last); /* a component: at most NAME_MAX */
    return 0;
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
    } else if (fs->pfd >= 0) {
        /* as Qubes' receiver (which writes into an O_TMPFILE and links it when whole):
         * a file the stream did not finish does not stay */
        unlinkat(fs->pfd, fs->last, 0);
    }
    close(fs->fd);
    fs->fd = -1;
    if (fs->pfd >= 0)
        close(fs->pfd);
    fs->pfd = -1;
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
    struct fs_sink fs = { .dirfd = dirfd, .fd = -1, .pfd = -1 };
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
