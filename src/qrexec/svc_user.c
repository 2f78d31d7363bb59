#include "svc_user.h"
#include <errno.h>
#include <grp.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CACHE_SLOTS 8
#define MAX_GROUPS 4096 /* more than any real user has; getgrouplist tells if not */

static struct bh_qx_user cache[CACHE_SLOTS];
static unsigned next_slot;
static struct stat seen_passwd, seen_group;

static void user_free(struct bh_qx_user *u)
{
    free(u->key);
    free(u->name);
    free(u->groups);
    free(u->home);
    free(u->shell);
    memset(u, 0, sizeof *u);
}

static bool same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Drops every entry when either file changed (or cannot be seen) since last time. */
static void check_files(void)
{
    struct stat p, g;
    bool ok = stat("/etc/passwd", &p) == 0 && stat("/etc/group", &g) == 0;
    if (ok && same_file(&p, &seen_passwd) && same_file(&g, &seen_group))
        return;
    for (int i = 0; i < CACHE_SLOTS; i++)
        user_free(&cache[i]);
    if (ok) {
        seen_passwd = p;
        seen_group = g;
    } else {
        memset(&seen_passwd, 0, sizeof seen_passwd); /* never matches: no caching */
        memset(&seen_group, 0, sizeof seen_group);
    }
}

static int resolve(const char *name, struct bh_qx_user *u)
{
    errno = 0;
    struct passwd *pw = getpwnam(name);
    if (!pw) {
        if (!errno)
            errno = ENOENT;
        return -1;
    }
    int n = 32;
    gid_t *g = NULL;
    for (;;) {
        gid_t *ng = realloc(g, (size_t)n * sizeof *g);
        if (!ng) {
            free(g);
            return -1;
        }
        g = ng;
        int want = n;
        if (getgrouplist(pw->pw_name, pw->pw_gid, g, &want) >= 0) {
            n = want;
            break;
        }
        if (want <= n || want > MAX_GROUPS) {
            free(g);
            errno = E2BIG;
            return -1;
        }
        n = want;
    }
    u->name = strdup(pw->pw_name);
    u->home = strdup(pw->pw_dir ? pw->pw_dir : "/");
    u->shell = strdup(pw->pw_shell && *pw->pw_shell ? pw->pw_shell : "/bin/sh");
    u->uid = pw->pw_uid;
    u->gid = pw->pw_gid;
    u->groups = g;
    u->ngroups = n;
    if (!u->name || !u->home || !u->shell) {
        user_free(u);
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

const struct bh_qx_user *bh_qx_user_lookup(const char *name)
{
    check_files();
    for (int i = 0; i < CACHE_SLOTS; i++)
        if (cache[i].key && !strcmp(cache[i].key, name))
            return &cache[i];
    struct bh_qx_user u = { 0 };
    if (resolve(name, &u) < 0)
        return NULL;
    if (!(u.key = strdup(name))) {
        user_free(&u);
        errno = ENOMEM;
        return NULL;
    }
    struct bh_qx_user *slot = &cache[next_slot++ % CACHE_SLOTS];
    user_free(slot);
    *slot = u;
    return slot;
}
