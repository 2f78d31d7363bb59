/* Fuzzes what the Admin API hands storage from a caller: sizes, volume and revision
 * names (through the public calls, on a scratch pool). Must never crash or touch
 * anything outside the pool. */
#include "storage/storage.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static struct bh_pool *pool;
static char dir[] = "/tmp/bh-fuzz-storage-XXXXXX";

static void cleanup(void)
{
    char cmd[64];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        return;
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t n)
{
    if (!pool) {
        if (!mkdtemp(dir))
            abort();
        atexit(cleanup);
        pool = bh_pool_open(dir, "default", NULL);
        if (!pool)
            abort();
        /* Real volumes to aim at: a template and an app qube with one revision. */
        struct bh_storage_qube t = { .name = "tpl", .klass = "TemplateVM", .private_size = 16 << 20 };
        struct bh_storage_qube w = { .name = "work", .klass = "AppVM", .template_name = "tpl",
                                     .private_size = 16 << 20, .revisions_to_keep = 1 };
        /* Revisions are taken at start (prepare), so a start and a stop make the one
         * revision that names are checked against. */
        struct bh_volume_layout l = { 0 };
        if (bh_volumes_create(pool, &t, NULL) < 0 || bh_volumes_create(pool, &w, NULL) < 0 ||
            bh_volumes_prepare(pool, &w, &l, NULL) < 0)
            abort();
        bh_volume_layout_free(&l);
        char *revs = NULL;
        if (bh_volumes_stopped(pool, &w, NULL) < 0 || bh_volume_list_snapshots(pool, &w, "private", &revs, NULL) < 0 ||
            !revs || !revs[0])
            abort(); /* no revision: the revision-name paths would never be reached */
        free(revs);
    }
    char s[256];
    if (n >= sizeof s)
        n = sizeof s - 1;
    memcpy(s, data, n);
    s[n] = '\0';
    uint64_t v;
    bh_size_parse(s, &v);
    char *nul = memchr(s, '|', n);
    const char *name = s, *arg = "";
    if (nul) {
        *nul = '\0';
        arg = nul + 1;
    }
    struct bh_storage_qube q = { .name = name, .klass = "AppVM", .template_name = arg };
    struct bh_volume_info info;
    bh_volume_info(pool, &q, arg, &info, NULL);
    char *out = NULL;
    if (bh_volume_list_snapshots(pool, &q, arg, &out, NULL) == 0)
        free(out);
    bh_volume_revert(pool, &q, "private", arg, NULL);
    return 0;
}
