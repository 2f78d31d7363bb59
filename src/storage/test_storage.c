/* Unit tests of the storage library on a scratch root (real ext4 images, real files). */
#include "tap.h"
#include "storage.h"
#include "fsutil.h"
#include "internal.h"
#include <sys/sysmacros.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

static char root[64];

/* A builder that runs the tree's programs (as debootstrap): the build mount must allow
 * exec and devices, and the result is sealed. */
static int fill_exec_check(int rootfd, const char *rootpath, void *ctx, bh_error *err)
{
    struct statvfs sv;
    int *flags = ctx;
    if (fstatvfs(rootfd, &sv) < 0)
        return bh_fail_errno(err, "statvfs");
    *flags = (int)sv.f_flag;
    (void)rootpath;
    return 0;
}

static unsigned long root_flags(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/pools/default/%s", root, rel);
    struct statvfs sv;
    return statvfs(p, &sv) == 0 ? sv.f_flag : 0;
}

static bool path_exists(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/pools/default/%s", root, rel);
    struct stat st;
    return lstat(p, &st) == 0;
}

static uint64_t file_size(const char *rel)
{
    char p[512];
    snprintf(p, sizeof p, "%s/pools/default/%s", root, rel);
    struct stat st;
    return lstat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

int main(void)
{
    uint64_t v;
    CHECK(bh_size_parse("1024", &v) == 0 && v == 1024);
    CHECK(bh_size_parse("2G", &v) == 0 && v == 2ULL << 30);
    CHECK(bh_size_parse("512MiB", &v) == 0 && v == 512ULL << 20);
    CHECK(bh_size_parse("-1", &v) < 0);
    CHECK(bh_size_parse("1X", &v) < 0);
    CHECK(bh_size_parse("", &v) < 0);
    CHECK(bh_size_parse("99999999999999999999", &v) < 0);
    CHECK(bh_size_parse("16777217T", &v) < 0);

    struct bh_volume_info vi = { .pool = "default", .vid = "qubes/w/private", .size = 5, .rw = true };
    char buf[1024];
    CHECK(bh_volume_info_format(&vi, buf, sizeof buf) > 0);
    CHECK(!strcmp(buf, "pool=default\nvid=qubes/w/private\nsize=5\nusage=0\nrw=True\nsource=\nsave_on_stop=False\n"
                       "snap_on_start=False\nrevisions_to_keep=0\nephemeral=False\nis_outdated=False\n"));
    CHECK(bh_volume_info_format(&vi, buf, 10) < 0);

    /* Sparse copy across filesystems (tmpfs -> /tmp): no reflink, copy_file_range says
     * EXDEV, so the plain read/write path runs; holes stay holes, data is equal. */
    {
        char src[] = "/dev/shm/bh-test-src-XXXXXX", dst[] = "/var/tmp/bh-test-dst-XXXXXX";
        int in = mkstemp(src), out = mkstemp(dst);
        CHECK(in >= 0 && out >= 0);
        char data[8192];
        memset(data, 0x5a, sizeof data);
        CHECK(pwrite(in, data, sizeof data, 1 << 20) == (ssize_t)sizeof data);
        CHECK(ftruncate(in, 8 << 20) == 0);
        bh_error e;
        CHECK(bh_fs_copy_data(in, out, &e) == 0);
        struct stat st;
        CHECK(fstat(out, &st) == 0 && st.st_size == 8 << 20 && st.st_blocks * 512 < (1 << 20));
        char back[8192];
        CHECK(pread(out, back, sizeof back, 1 << 20) == (ssize_t)sizeof back && !memcmp(back, data, sizeof data));
        close(in);
        close(out);
        unlink(src);
        unlink(dst);
    }

    /* Device nodes are removed from a tree, at any depth; other files stay. */
    {
        char t[] = "/tmp/bh-test-dev-XXXXXX", p1[128], p2[128], p3[128];
        CHECK(mkdtemp(t) != NULL);
        snprintf(p1, sizeof p1, "%s/dev", t);
        CHECK(mkdir(p1, 0755) == 0);
        snprintf(p1, sizeof p1, "%s/dev/null", t);
        snprintf(p2, sizeof p2, "%s/dev/sda", t);
        snprintf(p3, sizeof p3, "%s/dev/keep", t);
        CHECK(mknod(p1, S_IFCHR | 0666, makedev(1, 3)) == 0);
        CHECK(mknod(p2, S_IFBLK | 0600, makedev(8, 0)) == 0);
        int kf = open(p3, O_CREAT | O_WRONLY, 0600);
        CHECK(kf >= 0);
        close(kf);
        int tfd = open(t, O_RDONLY | O_DIRECTORY);
        bh_error e;
        CHECK(st_remove_device_nodes(tfd, &e) == 0);
        close(tfd);
        struct stat st;
        CHECK(lstat(p1, &st) < 0 && lstat(p2, &st) < 0 && lstat(p3, &st) == 0);
        unlink(p3);
        snprintf(p1, sizeof p1, "%s/dev", t);
        rmdir(p1);
        rmdir(t);
    }

    snprintf(root, sizeof root, "/tmp/bh-test-storage-XXXXXX");
    CHECK(mkdtemp(root) != NULL);
    bh_error err;
    CHECK(bh_pool_open("relative", "default", &err) == NULL);
    CHECK(bh_pool_open(root, "../x", &err) == NULL);
    CHECK(bh_pool_open(root, ".hidden", &err) == NULL);
    struct bh_pool *p = bh_pool_open(root, "default", &err);
    CHECK(p != NULL);
    if (!p)
        return tap_done();

    /* Hostile names never reach the filesystem. */
    const char *bad[] = { "../etc", "a/b", ".tmp-1-x", "", "x-dm", "none", "work\n", NULL };
    for (int i = 0; bad[i]; i++) {
        struct bh_storage_qube q = { .name = bad[i], .klass = "TemplateVM" };
        CHECK(bh_volumes_create(p, &q, &err) < 0);
    }
    struct bh_storage_qube badclass = { .name = "x", .klass = "Dom0" };
    CHECK(bh_volumes_create(p, &badclass, &err) < 0);

    struct bh_storage_qube app = { .name = "work", .klass = "AppVM", .template_name = "tpl", .private_size = 32 << 20 };
    CHECK(bh_volumes_create(p, &app, &err) < 0); /* no such template yet */
    CHECK(!path_exists("qubes/work"));

    bool created;
    CHECK(bh_template_ensure_host(p, &created, &err) == 0 && created);
    CHECK(bh_template_ensure_host(p, &created, &err) == 0 && !created);
    CHECK(path_exists("qubes/host/root/etc/passwd"));
    CHECK(path_exists("qubes/host/root/usr"));
    CHECK((root_flags("qubes/host/root") & (ST_NOSUID | ST_NODEV | ST_NOEXEC)) == (ST_NOSUID | ST_NODEV | ST_NOEXEC));
    int build_flags = 0;
    CHECK(st_template_create(p, "built", "test", 16 << 20, true, fill_exec_check, &build_flags, &err) == 0);
    CHECK((build_flags & ST_NOSUID) && !(build_flags & ST_NOEXEC) && !(build_flags & ST_NODEV));
    CHECK((root_flags("qubes/built/root") & (ST_NOSUID | ST_NODEV | ST_NOEXEC)) == (ST_NOSUID | ST_NODEV | ST_NOEXEC));
    CHECK(file_size("qubes/built/root.img") == 16 << 20);

    struct bh_storage_qube tpl = { .name = "tpl", .klass = "TemplateVM", .revisions_to_keep = 2,
                                   .private_size = 32 << 20 };
    CHECK(bh_volumes_create(p, &tpl, &err) == 0);
    CHECK(bh_volumes_create(p, &tpl, &err) < 0); /* exists, not a built template */
    CHECK(bh_volumes_create(p, &app, &err) == 0);
    CHECK(file_size("qubes/work/private.img") == 32 << 20);

    struct bh_volume_info info;
    CHECK(bh_volume_info(p, &app, "root", &info, &err) == 0);
    CHECK(!strcmp(info.source, "qubes/tpl/root") && info.snap_on_start && !info.save_on_stop);
    CHECK(bh_volume_info(p, &app, "private", &info, &err) == 0);
    CHECK(info.size == 32 << 20 && info.save_on_stop && info.rw);
    CHECK(bh_volume_info(p, &app, "kernel", &info, &err) == 0 && !info.rw);
    CHECK(bh_volume_info(p, &app, "volatile", &info, &err) == 0 && info.ephemeral);
    CHECK(bh_volume_info(p, &app, "../../etc", &info, &err) < 0);

    /* Layouts. */
    struct bh_volume_layout l;
    CHECK(bh_volumes_prepare(p, &app, &l, &err) == 0);
    CHECK(l.root_lower && strstr(l.root_lower, "/qubes/tpl/root") && !l.root_rw && l.root_throwaway);
    CHECK(l.private_img && strstr(l.private_img, "/qubes/work/private.img"));
    CHECK(!l.host_usr);
    bh_volume_layout_free(&l);
    CHECK(bh_volume_info(p, &app, "root", &info, &err) == 0 && !info.is_outdated);
    CHECK(bh_volumes_prepare(p, &tpl, &l, &err) == 0);
    CHECK(!l.root_lower && l.root_rw && strstr(l.root_rw, "/qubes/tpl/root") && !l.root_throwaway);
    bh_volume_layout_free(&l);
    CHECK(bh_volumes_stopped(p, &tpl, &err) == 0);
    CHECK(bh_volume_info(p, &app, "root", &info, &err) == 0 && info.is_outdated);
    CHECK(bh_volumes_stopped(p, &app, &err) == 0);

    /* Revisions (taken at each start, as Qubes): keep 2 newest, names strictly increasing. */
    for (int i = 0; i < 2; i++) {
        CHECK(bh_volumes_prepare(p, &tpl, &l, &err) == 0);
        bh_volume_layout_free(&l);
        CHECK(bh_volumes_stopped(p, &tpl, &err) == 0);
    }
    char *revs = NULL;
    CHECK(bh_volume_list_snapshots(p, &tpl, "private", &revs, &err) == 0);
    int lines = 0;
    for (char *s = revs; s && *s; s++)
        lines += *s == '\n';
    CHECK(lines == 2);
    free(revs);
    CHECK(bh_volume_revert(p, &tpl, "private", "123", &err) < 0);
    CHECK(bh_volume_revert(p, &tpl, "private", "../x", &err) < 0);
    CHECK(bh_volume_revert(p, &tpl, "private", NULL, &err) == 0);
    CHECK(bh_volume_revert(p, &tpl, "root", NULL, &err) == 0);
    CHECK(bh_volume_revert(p, &app, "root", NULL, &err) < 0);

    /* Resize: grow yes, shrink no. */
    CHECK(bh_volume_resize(p, &app, "private", 64 << 20, &err) == 0);
    CHECK(file_size("qubes/work/private.img") == 64 << 20);
    CHECK(bh_volume_resize(p, &app, "private", 32 << 20, &err) < 0);
    CHECK(bh_volume_resize(p, &app, "root", 20ULL << 30, &err) < 0);
    CHECK(bh_volume_resize(p, &tpl, "root", 20ULL << 30, &err) == 0);
    CHECK(bh_volume_info(p, &app, "root", &info, &err) == 0 && info.size == 20ULL << 30);

    /* A symlink planted where a volume file belongs is never followed. */
    char pimg[512], target[512];
    snprintf(pimg, sizeof pimg, "%s/pools/default/qubes/work/private.img", root);
    snprintf(target, sizeof target, "%s/outside", root);
    int fd = open(target, O_CREAT | O_WRONLY, 0600);
    CHECK(fd >= 0 && ftruncate(fd, 40 << 20) == 0);
    close(fd);
    CHECK(unlink(pimg) == 0 && symlink(target, pimg) == 0);
    CHECK(bh_volume_resize(p, &app, "private", 80 << 20, &err) < 0);
    struct stat st;
    CHECK(stat(target, &st) == 0 && st.st_size == 40 << 20);
    CHECK(bh_volume_info(p, &app, "private", &info, &err) < 0);

    /* Clone and remove. */
    struct bh_storage_qube tpl2 = { .name = "tpl2", .klass = "TemplateVM" };
    CHECK(bh_volumes_clone(p, &tpl, &tpl2, &err) == 0);
    CHECK(path_exists("qubes/tpl2/root") && path_exists("qubes/tpl2/private.img"));
    CHECK(bh_volumes_clone(p, &tpl, &tpl2, &err) < 0);
    CHECK(bh_volumes_remove(p, &app, &err) == 0);
    CHECK(stat(target, &st) == 0); /* the symlink went, not its target */
    CHECK(!path_exists("qubes/work"));
    CHECK(bh_volumes_remove(p, &app, &err) == 0); /* already gone: fine */

    /* Template roots stay mounted until their qube is removed (rootimg.c). */
    static const struct bh_storage_qube gone[] = { { .name = "host", .klass = "TemplateVM" },
                                                   { .name = "tpl", .klass = "TemplateVM" },
                                                   { .name = "tpl2", .klass = "TemplateVM" },
                                                   { .name = "built", .klass = "TemplateVM" } };
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        CHECK(bh_volumes_remove(p, &gone[i], &err) == 0);
    bh_pool_close(p);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "grep -q ' %s' /proc/self/mountinfo", root);
    CHECK(system(cmd) != 0); /* nothing of ours is mounted any more */
    snprintf(cmd, sizeof cmd, "rm -rf %s", root);
    CHECK(system(cmd) == 0);
    return tap_done();
}
