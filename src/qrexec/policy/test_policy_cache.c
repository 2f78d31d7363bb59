/* Unit tests of the policy cache (policy_cache.c): a change to policy.d takes effect on
 * the very next bh_policy_cache_get, whatever it is (a file edited in place to the same
 * size, a file added, a file removed, an included file edited, a symlink retargeted, an
 * edit within the same second as the load), and an unchanged directory is not loaded
 * again. Each case has its own directory, so that one wait lets all of them settle. */
#include "policy.h"
#include "../../../tests/unit/tap.h"
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char tmp[256];
static struct bh_sysinfo si;

/* Same length on purpose: an edit in place that keeps the size. */
#define ALLOW "svc.A  *  work  personal  allow\n"
#define DENY  "svc.A  *  work  personal  deny \n"

static void ok(bool cond, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ok(bool cond, const char *fmt, ...)
{
    tap_count++;
    if (cond)
        return;
    tap_failed++;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "FAILED: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int rm_cb(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    (void)st, (void)flag, (void)f;
    return remove(p);
}

static void path_of(char *out, size_t n, const char *dir, const char *name)
{
    snprintf(out, n, "%s/%s/%s", tmp, dir, name);
}

/* Writes in place: same inode, truncated and rewritten (as an editor saving with
 * write(2), or `echo >`). */
static void put(const char *dir, const char *name, const char *text)
{
    char p[600];
    snprintf(p, sizeof p, "%s/%s", tmp, dir);
    mkdir(p, 0755);
    path_of(p, sizeof p, dir, name);
    char *slash = strrchr(p, '/');
    *slash = '\0';
    mkdir(p, 0755);
    *slash = '/';
    int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || close(fd) < 0) {
        perror(p);
        exit(2);
    }
}

static char *dirname_of(char *p)
{
    static char d[600];
    snprintf(d, sizeof d, "%s", p);
    *strrchr(d, '/') = '\0';
    return d;
}

/* Sets the file's mtime back to what it was (as `cp -p` or `rsync -t` of a file with
 * that mtime would): only the ctime and the bytes differ. */
static void keep_mtime(const char *p, const struct stat *before)
{
    struct timespec times[2] = { before->st_atim, before->st_mtim };
    if (utimensat(AT_FDCWD, p, times, 0) < 0)
        exit(2);
}

static const char *dir_of(char *out, size_t n, const char *dir)
{
    snprintf(out, n, "%s/%s", tmp, dir);
    return out;
}

/* The decision for svc.A from work to personal, with the policy the cache gives now. */
static enum bh_policy_decision decide(struct bh_policy_cache *c, const char *dir)
{
    char d[400];
    bh_policy *p = bh_policy_cache_get(c, dir_of(d, sizeof d, dir));
    if (!p)
        return (enum bh_policy_decision)-1;
    struct bh_policy_result r;
    memset(&r, 0, sizeof r);
    enum bh_policy_decision dec = bh_policy_evaluate(p, &si, "work", "personal", "svc.A", &r);
    bh_policy_result_free(&r);
    bh_policy_free(p);
    return dec;
}

enum { EDIT, ADD, REMOVE, INCLUDE, LINK, NCASES };
static const char *const names[NCASES] = { "edit", "add", "remove", "include", "link" };

static void set_up(void)
{
    put("edit", "30-a.policy", ALLOW);
    put("add", "30-a.policy", ALLOW);
    put("remove", "20-b.policy", DENY);
    put("remove", "30-a.policy", ALLOW);
    put("include", "include/rules", ALLOW);
    put("include", "30-a.policy", "!include include/rules\n");
    /* a symlink in a directory that is not listed: only realpath() shows its retarget */
    put("link", "rules/allow", ALLOW);
    put("link", "rules/deny", DENY);
    put("link", "30-a.policy", "!include sub/rules\n");
    char p[600];
    path_of(p, sizeof p, "link", "sub/rules");
    mkdir(dirname_of(p), 0755);
    if (symlink("../rules/allow", p) < 0)
        exit(2);
}

/* Every change below is made right after a reuse of the kept load was seen: the
 * change, not the cache's refusal to keep recent files, is what the next call sees. */
static void change(int which)
{
    char a[600], b[600];
    switch (which) {
    case EDIT: {
        struct stat st;
        path_of(a, sizeof a, "edit", "30-a.policy");
        stat(a, &st);
        put("edit", "30-a.policy", DENY);
        keep_mtime(a, &st);
        break;
    }
    case ADD:
        put("add", "20-b.policy", DENY);
        break;
    case REMOVE:
        path_of(a, sizeof a, "remove", "20-b.policy");
        unlink(a);
        break;
    case INCLUDE:
        put("include", "include/rules", DENY);
        break;
    case LINK:
        path_of(a, sizeof a, "link", "sub/rules.new");
        path_of(b, sizeof b, "link", "sub/rules");
        if (symlink("../rules/deny", a) < 0 || rename(a, b) < 0)
            exit(2);
        break;
    }
}

static void test_changes_seen_next_call(void)
{
    struct bh_policy_cache c[NCASES];
    memset(c, 0, sizeof c);
    set_up();
    enum bh_policy_decision before[NCASES] = { BH_POLICY_ALLOW, BH_POLICY_ALLOW, BH_POLICY_DENY, BH_POLICY_ALLOW,
                                               BH_POLICY_ALLOW };
    enum bh_policy_decision after[NCASES] = { BH_POLICY_DENY, BH_POLICY_DENY, BH_POLICY_ALLOW, BH_POLICY_DENY,
                                              BH_POLICY_DENY };
    /* Files written just now are not kept (their timestamps may not move on the next
     * edit): wait until every case's load is reused, a few seconds. */
    bool all = false;
    for (int tries = 0; tries < 600 && !all; tries++) {
        all = true;
        for (int i = 0; i < NCASES; i++) {
            unsigned long h = c[i].hits;
            if (decide(&c[i], names[i]) != before[i])
                ok(false, "%s: decision before the change", names[i]);
            all &= c[i].hits > h;
        }
        if (!all)
            usleep(50 * 1000);
    }
    ok(all, "an unchanged directory's load is reused (within 30 s of writing it)");
    for (int i = 0; i < NCASES; i++) {
        unsigned long loads = c[i].loads;
        change(i);
        ok(decide(&c[i], names[i]) == after[i], "%s: the change decides the very next call", names[i]);
        ok(c[i].loads == loads + 1, "%s: loaded again once", names[i]);
        bh_policy_cache_clear(&c[i]);
    }
}

/* An edit right after the load, same size, mtime set back: within one timestamp tick
 * the file's stamps do not move at all. The cache must not have kept a load of files
 * that recent. Tried until such an edit was seen (the kernel's timestamps are coarse,
 * a few ms, unless it gives fine-grained ones to inodes just looked at: then never). */
static void test_edit_same_tick(void)
{
    char p[600];
    path_of(p, sizeof p, "racy", "30-a.policy");
    int same = 0;
    for (int i = 0; i < 200 && same < 3; i++) {
        struct bh_policy_cache c;
        memset(&c, 0, sizeof c);
        put("racy", "30-a.policy", ALLOW);
        ok(decide(&c, "racy") == BH_POLICY_ALLOW, "racy: allowed first");
        struct stat st, st2;
        stat(p, &st);
        put("racy", "30-a.policy", DENY);
        keep_mtime(p, &st);
        stat(p, &st2);
        same += st.st_ctim.tv_sec == st2.st_ctim.tv_sec && st.st_ctim.tv_nsec == st2.st_ctim.tv_nsec;
        ok(decide(&c, "racy") == BH_POLICY_DENY, "racy: an edit within the load's tick decides the next call");
        bh_policy_cache_clear(&c);
    }
    printf("# racy: %d edits left every stamp as it was\n", same);
}

/* A directory that cannot be loaded exactly (a missing include) is never kept. */
static void test_errors_not_kept(void)
{
    struct bh_policy_cache c;
    memset(&c, 0, sizeof c);
    put("broken", "30-a.policy", "!include include/missing\n");
    decide(&c, "broken");
    char p[600];
    path_of(p, sizeof p, "broken", "include/missing");
    put("broken", "include/missing", ALLOW);
    ok(decide(&c, "broken") == BH_POLICY_ALLOW, "broken: an include that appears decides the next call");
    ok(c.hits == 0, "broken: a load with an error was not reused");
    bh_policy_cache_clear(&c);
}

int main(void)
{
    snprintf(tmp, sizeof tmp, "/tmp/bh-policy-cache-XXXXXX");
    if (!mkdtemp(tmp))
        return 2;
    bh_sysinfo_init(&si);
    bh_error err;
    if (bh_sysinfo_parse(&si, "dom0 AdminVM\nwork AppVM state=Running\npersonal AppVM state=Running\n", &err) < 0)
        return 2;
    test_edit_same_tick();
    test_errors_not_kept();
    test_changes_seen_next_call();
    bh_sysinfo_free(&si);
    nftw(tmp, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
    return tap_done();
}
