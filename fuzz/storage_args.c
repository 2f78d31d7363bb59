/* Fuzzes what the Admin API hands storage from a caller: sizes, volume and revision
 * names (through the public calls, on a scratch pool on a private tmpfs). Must never
 * crash or touch anything outside the pool. Input: "NAME|VOL|REV" (qube, volume, revision), or
 * "NAME|ARG" with ARG as both; the whole is also parsed as a size. The pool is made once;
 * the calls work on its files (a revert that succeeds copies a revision back). */
#include "storage/storage.h"
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

static struct bh_pool *pool;
static char dir[] = "/tmp/bh-fuzz-storage-XXXXXX";
static const struct bh_storage_qube t = { .name = "tpl", .klass = "TemplateVM", .private_size = 16 << 20,
                                          .revisions_to_keep = 2 };
static const struct bh_storage_qube w = { .name = "work", .klass = "AppVM", .template_name = "tpl",
                                          .private_size = 16 << 20, .revisions_to_keep = 2 };

static void cleanup(void)
{
    /* the template's root image is mounted: removing the qubes unmounts it */
    bh_volumes_remove(pool, &w, NULL);
    bh_volumes_remove(pool, &t, NULL);
    bh_pool_close(pool);
    umount2(dir, MNT_DETACH);
    rmdir(dir);
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
    if (!pool) {
        /* The pool's mounts (the template's root image, on a loop device that frees
         * itself with its last mount) live in a mount namespace of this process only:
         * however it ends (a crash skips cleanup), they end with it. */
        if (unshare(CLONE_NEWNS) < 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0) {
            perror("fuzz-storage-args: a private mount namespace (run as root)");
            abort();
        }
        /* The pool on a tmpfs of that namespace: a revert copies and syncs a revision
         * (4 MiB of a template's root image), which on a disk took half of all the
         * time; the code is the same (neither this nor ext4 can reflink). Sparse files
         * use only what is written; the size allows the sparse root image. */
        if (!mkdtemp(dir) || mount("tmpfs", dir, "tmpfs", MS_NOSUID | MS_NODEV, "size=16g,mode=0700") < 0) {
            perror("fuzz-storage-args: a tmpfs for the scratch pool");
            abort();
        }
        atexit(cleanup);
        pool = bh_pool_open(dir, "default", NULL);
        if (!pool)
            abort();
        /* Real volumes to aim at: a template and an app qube with two revisions of its
         * private volume (and the template two of its root), taken the way the daemon
         * takes them: at each start (prepare), then stop. */
        if (bh_volumes_create(pool, &t, NULL) < 0 || bh_volumes_create(pool, &w, NULL) < 0)
            abort();
        for (int i = 0; i < 2; i++) {
            struct bh_volume_layout l;
            if (bh_volumes_prepare(pool, &t, &l, NULL) < 0 || bh_volumes_stopped(pool, &t, NULL) < 0)
                abort();
            bh_volume_layout_free(&l);
            if (bh_volumes_prepare(pool, &w, &l, NULL) < 0 || bh_volumes_stopped(pool, &w, NULL) < 0)
                abort();
            bh_volume_layout_free(&l);
        }
        char *revs = NULL;
        if (bh_volume_list_snapshots(pool, &w, "private", &revs, NULL) < 0 || !revs || !strchr(revs, '\n'))
            abort(); /* the hostile names below must meet real revisions */
        free(revs);
    }
    char s[256];
    if (n >= sizeof s)
        n = sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    uint64_t v;
    bh_size_parse(s, &v);
    /* "NAME|VOL|REV" (or "NAME|ARG": ARG is both): the qube, a volume, a revision */
    char *bar = memchr(s, '|', n);
    const char *name = s, *vol = "", *rev = "";
    if (bar) {
        *bar = '\0';
        vol = rev = bar + 1;
        char *bar2 = strchr(bar + 1, '|');
        if (bar2) {
            *bar2 = '\0';
            rev = bar2 + 1;
        }
    }
    bool tpl = !strcmp(name, "tpl");
    struct bh_storage_qube q = { .name = name, .klass = tpl ? "TemplateVM" : "AppVM", .template_name = tpl ? NULL : "tpl",
                                 .revisions_to_keep = 2 };
    struct bh_volume_info info;
    bh_volume_info(pool, &q, vol, &info, NULL);
    char *out = NULL;
    if (bh_volume_list_snapshots(pool, &q, vol, &out, NULL) == 0)
        free(out);
    bh_volume_revert(pool, &q, vol, rev, NULL);
    return 0;
}
