/* A disposable template's shared read-only private base (docs/storage.md).
 *
 * A disposable's private starts as its disposable template's private and nothing of it
 * survives. Instead of a full copy per disposable, the pool keeps one copy per state of
 * the template's private, qubes/<dvmt>/dispvm-base.img, which no qube ever writes: the
 * engine mounts it read-only under a throwaway upper layer of the disposable's own
 * (src/driver/ns/rootfs.c). dispvm-base.src records which source state it copies (file
 * identity, size, modification and change times): a template session, a revert or an
 * import changes one of them, and the next disposable start makes a new base under a
 * temporary name, renamed over the old one (a disposable still running keeps the old
 * file, unlinked, through its loop device). The base is made durable before its record,
 * so a crash leaves either the old pair or a record that no longer matches. */
#include "internal.h"
#include "cleanup.h"
#include "fsutil.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define BASE_IMG "dispvm-base.img"
#define BASE_SRC "dispvm-base.src"

static void stamp_of(const struct stat *st, const char *name, char *out, size_t n)
{
    snprintf(out, n, "%s %llu %llu %lld %lld.%09ld %lld.%09ld", name, (unsigned long long)st->st_dev,
             (unsigned long long)st->st_ino, (long long)st->st_size, (long long)st->st_mtim.tv_sec,
             st->st_mtim.tv_nsec, (long long)st->st_ctim.tv_sec, st->st_ctim.tv_nsec);
}

/* An ext4 image whose journal needs replaying cannot be mounted from a read-only loop
 * device: 1 clean, 0 needs recovery or not ext4 as we know it. */
static int ext4_clean(int fd)
{
    unsigned char sb[0x64];
    if (pread(fd, sb, sizeof sb, 1024) != (ssize_t)sizeof sb)
        return 0;
    if (sb[0x38] != 0x53 || sb[0x39] != 0xef)
        return 0;
    uint32_t incompat = (uint32_t)sb[0x60] | (uint32_t)sb[0x61] << 8 | (uint32_t)sb[0x62] << 16 |
                        (uint32_t)sb[0x63] << 24;
    return (incompat & 0x4) ? 0 : 1; /* EXT4_FEATURE_INCOMPAT_RECOVER */
}

int st_dispbase_prepare(int dfd, const char *tmpl, bool *usable, bh_error *err)
{
    *usable = false;
    /* The template's private, or while the template runs (its private is being written)
     * its newest revision, a consistent state; without one the caller reports it. */
    _cleanup_close_ int srcdir = -1;
    char srcname[32] = "private.img";
    if (st_private_in_use(dfd)) {
        if (st_revisions_open_newest(dfd, "private", &srcdir, srcname, sizeof srcname) < 0)
            return bh_fail(err, EBUSY, "disposable template %s is running and has no revision to copy", tmpl);
    } else {
        srcdir = dup(dfd);
        if (srcdir < 0)
            return bh_fail_errno(err, "dup");
    }
    _cleanup_close_ int src = openat(srcdir, srcname, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (src < 0 || fstat(src, &st) < 0)
        return bh_fail_errno(err, "open private of %s", tmpl);
    if (!S_ISREG(st.st_mode))
        return bh_fail(err, EINVAL, "private of %s is not a regular file", tmpl);
    char want[256];
    stamp_of(&st, srcname, want, sizeof want);
    _cleanup_free_ char *have = bh_fs_read_small_at(dfd, BASE_SRC, 256);
    struct stat bst;
    if (have && !strcmp(have, want) && fstatat(dfd, BASE_IMG, &bst, AT_SYMLINK_NOFOLLOW) == 0 &&
        S_ISREG(bst.st_mode)) {
        *usable = true;
        return 0;
    }
    if (!ext4_clean(src))
        return 0; /* the caller copies it per disposable, whose own mount replays it */
    char tmp[64];
    st_tmpname(tmp, sizeof tmp, "tmp", BASE_IMG);
    unlinkat(dfd, tmp, 0);
    (void)unlinkat(dfd, BASE_SRC, 0); /* no record matches while the base changes */
    if (bh_fs_copy_file_at(srcdir, srcname, dfd, tmp, 0600, err) < 0)
        return bh_prefix(err, "disposable base of %s", tmpl);
    /* Written to while we copied (a start of the template racing ours): not a state. */
    struct stat after;
    char again[256];
    if (fstat(src, &after) < 0 || (stamp_of(&after, srcname, again, sizeof again), strcmp(again, want))) {
        unlinkat(dfd, tmp, 0);
        return 0;
    }
    if (renameat(dfd, tmp, dfd, BASE_IMG) < 0) {
        unlinkat(dfd, tmp, 0);
        return bh_fail_errno(err, "install disposable base of %s", tmpl);
    }
    if (bh_fs_fsync_dir(dfd) < 0 || bh_fs_write_atomic_at(dfd, BASE_SRC, want, strlen(want), 0600, err) < 0)
        return bh_prefix(err, "disposable base of %s", tmpl);
    *usable = true;
    return 0;
}
