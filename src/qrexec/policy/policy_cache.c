/* A loaded policy directory, kept while the directory stays exactly as it was loaded.
 *
 * Why stamps and not inotify. Both bulkheadd and each qube's qrexec-daemon decide calls
 * against policy.d; loading it costs some 600 system calls and a parse (the default
 * policy includes four files 46 times). The loaded policy may be reused only while a
 * new load would give the same rules, and the very next call after an edit must see it.
 * inotify could say so without a system call per check, but: its events are read by the
 * process that owns the watch, so the qrexec-daemon's call processes (forked per call)
 * and bulkheadd would each need their own; watches are per directory and per inode and
 * must follow the symlinks and includes of each load; a full queue (IN_Q_OVERFLOW) or the
 * per-user instance limit (128 by default on Debian, shared by every qube's daemon)
 * silently drops the guarantee. Stamps hold in any process, need no state in the
 * kernel and cost a few stat calls per check.
 *
 * What is stamped: everything the loader looked at, as it looked: realpath() of the
 * directory and of every include (compared by computing it again), and stat() of every
 * directory it listed, every entry of those listings and every file it read: device,
 * inode, type, size, mtime and ctime to the nanosecond. A file edited in place changes
 * its mtime and ctime; an entry added, removed or renamed changes its directory's; a
 * file replaced by a rename changes the inode; a symlink retargeted is a new symlink
 * (the directory's times) and another realpath.
 *
 * Timestamps only move by the file system's granularity (a kernel tick, a second on
 * some file systems): an edit within the same tick as the load, of the same size, would
 * leave every stamp as it was. So a load is kept only when everything it stamped was
 * last changed (ctime, which no system call can set back) more than FP_SETTLED_S seconds
 * before the load began; otherwise it serves the call at hand and the next call loads
 * again. Likewise any error met while loading (a missing include, an unreadable file)
 * is not reproducible by stamps: such a load is never kept.
 *
 * Limit: a file changed through a shared writable mapping updates its times at the first
 * write to each clean page, not at every write; policy files are written with write(2)
 * (editors, qubes-policy-admin), and such a later write is seen when the page is next
 * written back and written to again. */
#include "policy_int.h"
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define FP_SETTLED_S 2
#define FP_MAX_ENTRIES (4 * BH_POLICY_MAX_FILES)

void fp_note_failure(struct policy_footprint *fp)
{
    if (fp->recording)
        fp->untrusted = true;
}

static struct fp_entry *fp_find(const struct policy_footprint *fp, enum fp_kind kind, const char *path)
{
    for (size_t i = 0; i < fp->n; i++)
        if (fp->e[i].kind == kind && !strcmp(fp->e[i].path, path))
            return &fp->e[i];
    return NULL;
}

static struct fp_entry *fp_add(struct policy_footprint *fp, enum fp_kind kind, const char *path)
{
    if (fp->n >= FP_MAX_ENTRIES) {
        fp->untrusted = true;
        return NULL;
    }
    struct fp_entry *ne = policy_grow(fp->e, &fp->cap, fp->n, sizeof *ne);
    if (!ne) {
        fp->untrusted = true;
        return NULL;
    }
    fp->e = ne;
    struct fp_entry *e = &fp->e[fp->n];
    memset(e, 0, sizeof *e);
    e->kind = kind;
    if (!(e->path = strdup(path))) {
        fp->untrusted = true;
        return NULL;
    }
    fp->n++;
    return e;
}

static bool ts_eq(struct timespec a, struct timespec b)
{
    return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec;
}

static bool stat_matches(const struct fp_entry *e, const struct stat *st)
{
    return e->dev == st->st_dev && e->ino == st->st_ino && e->mode == st->st_mode && e->size == st->st_size &&
           ts_eq(e->mtime, st->st_mtim) && ts_eq(e->ctime, st->st_ctim);
}

void fp_note_stat(struct policy_footprint *fp, const char *path, const struct stat *st)
{
    if (!fp->recording || fp->untrusted)
        return;
    /* changed too recently: a change within the same timestamp tick would not show */
    if (st->st_ctim.tv_sec + FP_SETTLED_S >= fp->started.tv_sec) {
        fp->untrusted = true;
        return;
    }
    struct fp_entry *e = fp_find(fp, FP_STAT, path);
    if (e) {
        if (!stat_matches(e, st)) /* it changed while we loaded */
            fp->untrusted = true;
        return;
    }
    if (!(e = fp_add(fp, FP_STAT, path)))
        return;
    e->dev = st->st_dev;
    e->ino = st->st_ino;
    e->mode = st->st_mode;
    e->size = st->st_size;
    e->mtime = st->st_mtim;
    e->ctime = st->st_ctim;
}

void fp_note_realpath(struct policy_footprint *fp, const char *path, const char *real)
{
    if (!fp->recording || fp->untrusted)
        return;
    struct fp_entry *e = fp_find(fp, FP_REALPATH, path);
    if (e) {
        if (strcmp(e->real, real))
            fp->untrusted = true;
        return;
    }
    if (!(e = fp_add(fp, FP_REALPATH, path)))
        return;
    if (!(e->real = strdup(real)))
        fp->untrusted = true;
}

char *fp_seen_realpath(const struct policy_footprint *fp, const char *path, bool *seen)
{
    const struct fp_entry *e = fp->recording ? fp_find(fp, FP_REALPATH, path) : NULL;
    *seen = e != NULL;
    return e ? strdup(e->real) : NULL;
}

void fp_free(struct policy_footprint *fp)
{
    for (size_t i = 0; i < fp->n; i++) {
        free(fp->e[i].path);
        free(fp->e[i].real);
    }
    free(fp->e);
    memset(fp, 0, sizeof *fp);
}

/* Whether a load now would look at the same things and find them as they were. */
static bool fp_still_holds(const struct policy_footprint *fp)
{
    if (!fp->recording || fp->untrusted)
        return false;
    for (size_t i = 0; i < fp->n; i++) {
        const struct fp_entry *e = &fp->e[i];
        if (e->kind == FP_REALPATH) {
            char buf[PATH_MAX];
            if (!realpath(e->path, buf) || strcmp(buf, e->real))
                return false;
        } else {
            struct stat st;
            if (stat(e->path, &st) < 0 || !stat_matches(e, &st))
                return false;
        }
    }
    return true;
}

bh_policy *bh_policy_ref(bh_policy *p)
{
    if (p)
        p->refs++;
    return p;
}

bh_policy *bh_policy_cache_get(struct bh_policy_cache *c, const char *dir)
{
    if (c->policy && c->dir && !strcmp(c->dir, dir) && fp_still_holds(&c->policy->fp)) {
        c->hits++;
        return bh_policy_ref(c->policy);
    }
    bh_policy_cache_clear(c);
    bh_policy *p = bh_policy_load_dir(dir);
    if (!p)
        return NULL;
    c->loads++;
    if (p->fp.untrusted)
        return p; /* serves this call only */
    if (!(c->dir = strdup(dir)))
        return p;
    c->policy = bh_policy_ref(p);
    return p;
}

void bh_policy_cache_clear(struct bh_policy_cache *c)
{
    bh_policy_free(c->policy);
    free(c->dir);
    c->policy = NULL;
    c->dir = NULL;
}
