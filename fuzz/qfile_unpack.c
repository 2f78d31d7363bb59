/* libFuzzer: the file-copy unpacker (bh_fc_unpack_to: every check and limit of the
 * stream) creating entries in an in-memory tree that behaves like the real sink (each
 * path walked without following symlinks, nothing replaced): no files, no syscalls.
 *
 * Invariants: every name reaching the sink is a clean relative path; limits hold; a
 * refusal says why; and, after the stream, no symlink in the tree resolves outside the
 * incoming directory, following the other symlinks in the tree the way the kernel
 * would (a link may go through another link that was created after it).
 * The real sink (O_NOFOLLOW walks from the directory fd) is replayed over this corpus on
 * a real directory by tests/unit/test_filecopy_corpus.c. */
#include "filecopy.h"
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FILES 64
#define MAX_BYTES (1u << 20)

enum kind { K_DIR, K_FILE, K_LINK };
struct entry {
    char *path;
    enum kind kind;
    char *target;
};
static struct entry tree[MAX_FILES + 1];
static size_t ntree;
static uint64_t data_bytes;
static bool writing;

static struct entry *find(const char *path, size_t len)
{
    for (size_t i = 0; i < ntree; i++)
        if (strlen(tree[i].path) == len && !memcmp(tree[i].path, path, len))
            return &tree[i];
    return NULL;
}

/* As open_parent(): every component before the last must be a directory, reached
 * without following a symlink. */
static int walk_parent(const char *name)
{
    if (bh_fc_name_check(name) < 1)
        abort(); /* the unpacker let a bad name through */
    for (const char *s = strchr(name, '/'); s; s = strchr(s + 1, '/')) {
        struct entry *e = find(name, (size_t)(s - name));
        if (!e)
            return errno = ENOENT, -1;
        if (e->kind == K_LINK)
            return errno = ELOOP, -1;
        if (e->kind == K_FILE)
            return errno = ENOTDIR, -1;
    }
    return 0;
}

static int add(const char *name, enum kind k, const char *target)
{
    if (ntree > MAX_FILES)
        abort(); /* the entry limit did not hold */
    tree[ntree].path = strdup(name);
    tree[ntree].kind = k;
    tree[ntree].target = target ? strdup(target) : NULL;
    ntree++;
    return 0;
}

static int m_file_create(void *ctx, const char *name, const struct bh_fc_hdr *h)
{
    (void)ctx;
    if (writing || !S_ISREG(h->mode))
        abort();
    if (walk_parent(name) < 0)
        return -1;
    if (find(name, strlen(name)))
        return errno = EEXIST, -1;
    writing = true;
    return add(name, K_FILE, NULL);
}

static int m_file_write(void *ctx, const void *p, size_t n)
{
    (void)ctx, (void)p;
    if (!writing)
        abort();
    data_bytes += n;
    if (data_bytes > MAX_BYTES)
        abort(); /* the byte limit did not hold */
    return 0;
}

static void m_file_done(void *ctx, const struct bh_fc_hdr *h, bool complete)
{
    (void)ctx, (void)h, (void)complete;
    if (!writing)
        abort();
    writing = false;
}

static int m_dir(void *ctx, const char *name, const struct bh_fc_hdr *h)
{
    (void)ctx;
    if (writing || !S_ISDIR(h->mode) || h->filelen)
        abort();
    if (walk_parent(name) < 0)
        return -1;
    struct entry *e = find(name, strlen(name));
    if (!e)
        return add(name, K_DIR, NULL);
    if (e->kind != K_DIR)
        return errno = e->kind == K_LINK ? ELOOP : ENOTDIR, -1;
    return 0; /* second header: mode and times */
}

static int m_symlink(void *ctx, const char *name, const char *target)
{
    (void)ctx;
    if (writing || !*target || target[0] == '/')
        abort();
    if (walk_parent(name) < 0)
        return -1;
    if (find(name, strlen(name)))
        return errno = EEXIST, -1;
    return add(name, K_LINK, target);
}

/* ---- resolving a link as the kernel would, over the in-memory tree ---- */

struct path {
    char c[BH_FC_MAX_DEPTH * 4][256]; /* components below the incoming dir */
    int n;
};

/* Applies `rel` to p; follows links found in the tree (at most *budget of them, as the
 * kernel's 40). Returns -1 if the path leaves the incoming directory, 1 if the kernel
 * would fail to resolve it (ELOOP, ENAMETOOLONG), 0 if it stays inside. */
static int apply(struct path *p, const char *rel, int *budget)
{
    const char *s = rel;
    while (*s) {
        const char *e = strchr(s, '/');
        size_t n = e ? (size_t)(e - s) : strlen(s);
        if (n == 2 && s[0] == '.' && s[1] == '.') {
            if (p->n == 0)
                return -1;
            p->n--;
        } else if (n > 0 && !(n == 1 && s[0] == '.')) {
            if (p->n == (int)(sizeof p->c / sizeof p->c[0]) || n >= sizeof p->c[0])
                return 1; /* deeper than the kernel goes: ENAMETOOLONG there */
            memcpy(p->c[p->n], s, n);
            p->c[p->n][n] = '\0';
            p->n++;
            char full[BH_FC_MAX_NAME * 2] = "";
            size_t off = 0;
            for (int i = 0; i < p->n && off < sizeof full; i++)
                off += (size_t)snprintf(full + off, sizeof full - off, "%s%s", i ? "/" : "", p->c[i]);
            struct entry *l = off < sizeof full ? find(full, off) : NULL;
            if (l && l->kind == K_LINK) {
                if (--*budget < 0)
                    return 1; /* ELOOP there */
                p->n--; /* the link's target is relative to the link's directory */
                int r = apply(p, l->target, budget);
                if (r)
                    return r;
            }
        }
        s += n;
        if (*s == '/')
            s++;
    }
    return 0;
}

static void check_links(void)
{
    static struct path p;
    for (size_t i = 0; i < ntree; i++) {
        if (tree[i].kind != K_LINK)
            continue;
        p.n = 0;
        int budget = 40;
        /* the link itself, from the incoming dir: its directory, then its target */
        if (apply(&p, tree[i].path, &budget) < 0)
            abort(); /* a symlink (through the others) points outside the incoming dir */
    }
}

struct mem {
    const uint8_t *p;
    size_t n;
};

static ssize_t mread(void *ctx, void *buf, size_t n)
{
    struct mem *m = ctx;
    if (n > m->n)
        n = m->n;
    memcpy(buf, m->p, n);
    m->p += n, m->n -= n;
    return (ssize_t)n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct mem m = { data, size };
    struct bh_fc_reader r = { mread, &m };
    struct bh_fc_sink sink = { m_file_create, m_file_write, m_file_done, m_dir, m_symlink, NULL };
    /* Qubes' receiver's defaults (qfile-unpacker): non-canonical symlink targets */
    struct bh_fc_limits lim = { .max_files = MAX_FILES, .max_bytes = MAX_BYTES,
                                .name_flags = BH_FC_ALLOW_NON_CANONICAL_SYMLINKS };
    static struct bh_fc_result res;
    ntree = 0;
    data_bytes = 0;
    writing = false;
    if (bh_fc_unpack_to(&r, &sink, &lim, &res) < 0 && (!res.error || !res.msg[0]))
        abort(); /* a refusal says why */
    if (writing)
        abort(); /* a file left open */
    check_links();
    for (size_t i = 0; i < ntree; i++) {
        free(tree[i].path);
        free(tree[i].target);
    }
    return 0;
}
