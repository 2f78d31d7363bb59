/* Loading a policy directory: files in C-locale name order, !include* directives,
 * strict limits, and fail-closed barriers for broken files. */
#include "policy_int.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_FIELDS 32

enum fmt { FMT_V5, FMT_SERVICE };

struct loader {
    bh_policy *p;
    char *root;                              /* realpath of the policy dir, or NULL */
    /* A directory that only resolves includes (not the policy itself) is resolved at
     * the first include: most single files and buffers include nothing. */
    const char *include_dir;
    const char *stack[BH_POLICY_MAX_DEPTH + 2]; /* files being parsed (include loops) */
    size_t depth;
    bool unit_failed;                        /* the current top-level file has an error */
    char unit_msg[768];                      /* its first error: the barrier's reason */
    bool oom;
    /* Files already read in this load, by real path: a file included many times (Qubes'
     * admin-default includes four files 46 times) is read once, and every inclusion of
     * it parses the same bytes. */
    struct read_memo {
        char *path, *data;
        size_t len;
    } *memo;
    size_t n_memo, cap_memo;
};

bool policy_service_char(char c, bool allow_plus)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || (allow_plus && c == '+');
}

void *policy_grow(void *arr, size_t *cap, size_t n, size_t size)
{
    if (n < *cap)
        return arr;
    size_t nc = *cap ? *cap * 2 : 16;
    void *na = realloc(arr, nc * size);
    if (na)
        *cap = nc;
    return na;
}

static void note_error(struct loader *L, const char *file, unsigned line, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void note_error(struct loader *L, const char *file, unsigned line, const char *fmt, ...)
{
    char msg[512], full[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line)
        snprintf(full, sizeof full, "%s:%u: %s", file, line, msg);
    else
        snprintf(full, sizeof full, "%s: %s", file, msg);
    if (!L->unit_failed) {
        L->unit_failed = true;
        snprintf(L->unit_msg, sizeof L->unit_msg, "%s", full);
    }
    bh_policy *p = L->p;
    if (p->n_errors >= BH_POLICY_MAX_ERRORS)
        return;
    char **ne = policy_grow(p->errors, &p->cap_errors, p->n_errors, sizeof *ne);
    if (!ne || !(ne[p->n_errors] = strdup(full))) {
        if (ne)
            p->errors = ne;
        L->oom = true;
        return;
    }
    p->errors = ne;
    p->n_errors++;
}

static const char *intern_file(struct loader *L, const char *path)
{
    bh_policy *p = L->p;
    if (p->n_files && !strcmp(p->files[p->n_files - 1], path))
        return p->files[p->n_files - 1];
    char **nf = policy_grow(p->files, &p->cap_files, p->n_files, sizeof *nf);
    if (!nf)
        goto oom;
    p->files = nf;
    if (!(nf[p->n_files] = strdup(path)))
        goto oom;
    return nf[p->n_files++];
oom:
    L->oom = true;
    return NULL;
}

static void rule_free(struct rule *r)
{
    free(r->barrier);
    free(r->service);
    free(r->argument);
    tok_free(&r->source);
    tok_free(&r->target);
    tok_free(&r->redirect);
    tok_free(&r->default_target);
    free(r->user);
}

static struct rule *new_rule(struct loader *L, const char *file, unsigned line)
{
    bh_policy *p = L->p;
    if (p->n_rules >= BH_POLICY_MAX_RULES) {
        note_error(L, file, line, "too many rules (limit %d)", BH_POLICY_MAX_RULES);
        return NULL;
    }
    struct rule *nr = policy_grow(p->rules, &p->cap_rules, p->n_rules, sizeof *nr);
    const char *f = intern_file(L, file);
    if (!nr || !f) {
        L->oom = true;
        return NULL;
    }
    p->rules = nr;
    struct rule *r = &nr[p->n_rules++];
    memset(r, 0, sizeof *r);
    r->file = f;
    r->line = line;
    return r;
}

/* Reads a policy file: a regular file (a FIFO or device would block or never end),
 * at most BH_POLICY_MAX_FILE_SIZE bytes. */
static char *read_policy_file(struct policy_footprint *fp, const char *path, size_t *len, const char **why)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        *why = strerror(errno);
        fp_note_failure(fp);
        return NULL;
    }
    /* the file as opened: what stat(path) must show again for this read to still hold */
    fp_note_stat(fp, path, &st);
    if (!S_ISREG(st.st_mode)) {
        *why = "not a regular file";
        return NULL;
    }
    if (st.st_size > (off_t)BH_POLICY_MAX_FILE_SIZE) {
        *why = "file too large";
        return NULL;
    }
    size_t cap = (size_t)st.st_size + 1, n = 0;
    char *buf = malloc(cap + 1);
    if (!buf) {
        *why = "out of memory";
        return NULL;
    }
    /* Read one byte past the size seen by fstat to notice a file growing under us. */
    for (;;) {
        ssize_t r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            *why = strerror(errno);
            fp_note_failure(fp);
            free(buf);
            return NULL;
        }
        if (r == 0)
            break;
        n += (size_t)r;
        if (n == cap) {
            *why = "file changed while reading";
            fp_note_failure(fp);
            free(buf);
            return NULL;
        }
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static bool valid_file_name(const char *n)
{
    for (; *n; n++)
        if (!((*n >= '0' && *n <= '9') || (*n >= 'a' && *n <= 'z') || *n == '_' || *n == '.' ||
              *n == '-'))
            return false;
    return true;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.policy files of dir, sorted, hidden ones skipped. A file with a name outside
 * [0-9a-z_.-] is an error, not ignored: an admin who thought it was read must notice. */
static char **list_policy_files(struct loader *L, const char *dir, const char *errfile,
                                unsigned errline, size_t *count)
{
    _cleanup_closedir_ DIR *d = opendir(dir);
    struct stat dst;
    if (!d || fstat(dirfd(d), &dst) < 0) {
        note_error(L, errfile, errline, "cannot open directory %s: %s", dir, strerror(errno));
        fp_note_failure(&L->p->fp);
        return NULL;
    }
    /* the listing holds while the directory's mtime and ctime do (an entry added,
     * removed or renamed changes both) */
    fp_note_stat(&L->p->fp, dir, &dst);
    char **names = NULL;
    size_t n = 0, cap = 0;
    bool bad = false;
    struct dirent *de;
    while ((de = readdir(d))) {
        const char *nm = de->d_name;
        size_t l = strlen(nm);
        if (nm[0] == '.' || l < 7 || strcmp(nm + l - 7, ".policy"))
            continue;
        struct stat st;
        int sr = fstatat(dirfd(d), nm, &st, 0);
        if (L->p->fp.recording) {
            char ep[PATH_MAX];
            if (sr < 0 || (size_t)snprintf(ep, sizeof ep, "%s/%s", dir, nm) >= sizeof ep)
                fp_note_failure(&L->p->fp);
            else
                fp_note_stat(&L->p->fp, ep, &st); /* a symlink's target may change type */
        }
        if (sr == 0 && S_ISDIR(st.st_mode))
            continue;
        if (sr < 0 || !S_ISREG(st.st_mode)) {
            note_error(L, errfile, errline, "%s/%s: not a regular file", dir, nm);
            bad = true;
            continue;
        }
        if (!valid_file_name(nm)) {
            note_error(L, errfile, errline, "%s/%.64s: invalid file name (allowed: 0-9 a-z _ . -)",
                       dir, nm);
            bad = true;
            continue;
        }
        if (n >= BH_POLICY_MAX_FILES) {
            note_error(L, errfile, errline, "%s: more than %d policy files", dir,
                       BH_POLICY_MAX_FILES);
            bad = true;
            break;
        }
        char **nn = policy_grow(names, &cap, n, sizeof *nn);
        if (!nn || !(nn[n] = strdup(nm))) {
            if (nn)
                names = nn;
            L->oom = true;
            bad = true;
            break;
        }
        names = nn;
        n++;
    }
    if (n)
        qsort(names, n, sizeof *names, cmp_str);
    *count = n;
    if (bad) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        *count = 0;
        return NULL;
    }
    return names;
}

static void parse_buffer(struct loader *L, const char *file, const char *data, size_t len,
                         enum fmt fmt, const char *svc, const char *arg);

/* Resolves an include path: relative to the policy directory, and it must stay inside
 * it after following symlinks. Returns a malloc'd real path or NULL (error noted). */
static char *resolve_include(struct loader *L, const char *path, bool want_dir,
                             const char *file, unsigned line)
{
    if (!L->root && L->include_dir) {
        L->root = realpath(L->include_dir, NULL);
        L->include_dir = NULL;
    }
    if (!L->root) {
        note_error(L, file, line, "includes are not available here (no policy directory)");
        return NULL;
    }
    if (!*path || strlen(path) >= PATH_MAX - strlen(L->root) - 2) {
        note_error(L, file, line, "invalid include path");
        return NULL;
    }
    char joined[PATH_MAX];
    if (path[0] == '/')
        snprintf(joined, sizeof joined, "%s", path);
    else
        snprintf(joined, sizeof joined, "%s/%s", L->root, path);
    bool seen = false;
    char *real = fp_seen_realpath(&L->p->fp, joined, &seen);
    if (!seen) {
        /* into a buffer, then a copy of its length (realpath(p, NULL) costs a PATH_MAX
         * allocation, filled and quarantined under the sanitizers) */
        char rbuf[PATH_MAX];
        if (!realpath(joined, rbuf)) {
            note_error(L, file, line, "cannot include %.256s: %s", path, strerror(errno));
            fp_note_failure(&L->p->fp);
            return NULL;
        }
        if (!(real = strdup(rbuf))) {
            L->oom = true;
            return NULL;
        }
        fp_note_realpath(&L->p->fp, joined, real);
    } else if (!real) {
        L->oom = true;
        return NULL;
    }
    size_t rl = strlen(L->root);
    if (strncmp(real, L->root, rl) || (real[rl] != '/' && real[rl] != '\0') ||
        (real[rl] == '\0' && !want_dir)) {
        note_error(L, file, line, "include outside the policy directory: %.256s", path);
        free(real);
        return NULL;
    }
    struct stat st;
    int sr = stat(real, &st);
    if (sr < 0)
        fp_note_failure(&L->p->fp);
    else
        fp_note_stat(&L->p->fp, real, &st);
    if (sr < 0 || (want_dir ? !S_ISDIR(st.st_mode) : !S_ISREG(st.st_mode))) {
        note_error(L, file, line, "%.256s: not a %s", path, want_dir ? "directory" : "regular file");
        free(real);
        return NULL;
    }
    return real;
}

/* The bytes of the file at path, read once per load (the limits still count each
 * inclusion: files_read, bytes_read). NULL with *why when it cannot be read. */
static const char *memo_read(struct loader *L, const char *path, size_t *len, const char **why)
{
    for (size_t i = 0; i < L->n_memo; i++) {
        if (!strcmp(L->memo[i].path, path)) {
            *len = L->memo[i].len;
            return L->memo[i].data;
        }
    }
    char *data = read_policy_file(&L->p->fp, path, len, why);
    if (!data)
        return NULL;
    struct read_memo *nm = policy_grow(L->memo, &L->cap_memo, L->n_memo, sizeof *nm);
    char *pc = nm ? strdup(path) : NULL;
    if (!pc) {
        if (nm)
            L->memo = nm;
        free(data);
        L->oom = true;
        *why = "out of memory";
        return NULL;
    }
    L->memo = nm;
    L->memo[L->n_memo++] = (struct read_memo){ .path = pc, .data = data, .len = *len };
    return data;
}

/* Parses one file at `path` (already resolved when included). */
static void parse_file(struct loader *L, const char *path, enum fmt fmt, const char *svc,
                       const char *arg, const char *from_file, unsigned from_line)
{
    if (L->depth > BH_POLICY_MAX_DEPTH) {
        note_error(L, from_file, from_line, "includes nested deeper than %d", BH_POLICY_MAX_DEPTH);
        return;
    }
    for (size_t i = 0; i < L->depth; i++) {
        if (!strcmp(L->stack[i], path)) {
            note_error(L, from_file, from_line, "include loop: %s", path);
            return;
        }
    }
    if (L->p->files_read >= BH_POLICY_MAX_FILES) {
        note_error(L, from_file, from_line, "more than %d policy files read", BH_POLICY_MAX_FILES);
        return;
    }
    L->p->files_read++;
    const char *why = NULL;
    size_t len = 0;
    const char *data = memo_read(L, path, &len, &why);
    if (!data) {
        if (from_file)
            note_error(L, from_file, from_line, "cannot read %s: %s", path, why);
        else
            note_error(L, path, 0, "cannot read: %s", why);
        return;
    }
    L->p->bytes_read += len;
    if (L->p->bytes_read > BH_POLICY_MAX_TOTAL) {
        note_error(L, from_file ? from_file : path, from_line,
                   "more than %u bytes of policy read", BH_POLICY_MAX_TOTAL);
        return;
    }
    L->stack[L->depth++] = path;
    parse_buffer(L, path, data, len, fmt, svc, arg);
    L->depth--;
}

static void include_dir(struct loader *L, const char *dir, const char *file, unsigned line)
{
    size_t n = 0;
    char **names = list_policy_files(L, dir, file, line, &n);
    for (size_t i = 0; i < n; i++) {
        char path[PATH_MAX];
        if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) < sizeof path) {
            /* the realpath check again: a *.policy symlink must not lead outside */
            char *real = resolve_include(L, path, false, file, line);
            if (real)
                parse_file(L, real, FMT_V5, NULL, NULL, file, line);
            free(real);
        }
        free(names[i]);
    }
    free(names);
}

/* "*" -> NULL; else checks characters. Returns -1 with *why on error. */
static int check_service_arg(const char *svc, const char *arg, char **svc_out, char **arg_out,
                             const char **why)
{
    *svc_out = *arg_out = NULL;
    bool svc_any = !strcmp(svc, "*"), arg_any = !strcmp(arg, "*");
    if (!svc_any) {
        if (strlen(svc) > BH_POLICY_MAX_SERVICE) {
            *why = "service name too long";
            return -1;
        }
        for (const char *c = svc; *c; c++)
            if (!policy_service_char(*c, false)) {
                *why = "invalid character in service name";
                return -1;
            }
    }
    if (!arg_any) {
        if (arg[0] != '+') {
            *why = "argument must be * or start with +";
            return -1;
        }
        if (strlen(arg) > BH_POLICY_MAX_SERVICE + 1) {
            *why = "argument too long";
            return -1;
        }
        for (const char *c = arg + 1; *c; c++)
            if (!policy_service_char(*c, true)) {
                *why = "invalid character in argument";
                return -1;
            }
        if (svc_any) {
            *why = "only * argument allowed for * service";
            return -1;
        }
    }
    if ((!svc_any && !(*svc_out = strdup(svc))) || (!arg_any && !(*arg_out = strdup(arg)))) {
        free(*svc_out);
        *svc_out = NULL;
        *why = "out of memory";
        return -1;
    }
    return 0;
}

static bool valid_user(const char *u)
{
    size_t n = strlen(u);
    if (n == 0 || n > 63)
        return false;
    for (; *u; u++)
        if (!policy_service_char(*u, false))
            return false;
    return true;
}

static int parse_yesno(const char *v, bool *out)
{
    if (!strcmp(v, "yes"))
        *out = true;
    else if (!strcmp(v, "no"))
        *out = false;
    else
        return -1;
    return 0;
}

/* Action parameters: which action takes which. */
enum param { P_TARGET, P_DEFAULT_TARGET, P_USER, P_NOTIFY, P_AUTOSTART, P_COUNT };
static const char *const param_names[P_COUNT] = { "target", "default_target", "user", "notify",
                                                  "autostart" };
static const unsigned param_allowed[] = {
    [ACT_DENY] = 1u << P_NOTIFY,
    [ACT_ALLOW] = 1u << P_TARGET | 1u << P_USER | 1u << P_NOTIFY | 1u << P_AUTOSTART,
    [ACT_ASK] = 1u << P_TARGET | 1u << P_DEFAULT_TARGET | 1u << P_USER | 1u << P_NOTIFY |
                1u << P_AUTOSTART,
};
static const char *const action_names[] = { [ACT_DENY] = "deny", [ACT_ALLOW] = "allow",
                                            [ACT_ASK] = "ask" };

/* Fills r from the fields after the target; returns -1 with the error noted. */
static int parse_action(struct loader *L, struct rule *r, char **f, size_t nf, const char *file,
                        unsigned line)
{
    int act = -1;
    for (size_t i = 0; i < BH_ARRAY_SIZE(action_names); i++)
        if (!strcmp(f[0], action_names[i]))
            act = (int)i;
    if (act < 0) {
        note_error(L, file, line, "invalid action '%.64s' (allow, deny or ask)", f[0]);
        return -1;
    }
    r->action = (enum action)act;
    r->notify = act == ACT_DENY;
    r->autostart = true;
    unsigned seen = 0;
    for (size_t i = 1; i < nf; i++) {
        char *eq = strchr(f[i], '=');
        if (!eq || eq == f[i]) {
            note_error(L, file, line, "invalid parameter '%.64s' (expected key=value)", f[i]);
            return -1;
        }
        *eq = '\0';
        const char *k = f[i], *v = eq + 1;
        int pi = -1;
        for (int j = 0; j < P_COUNT; j++)
            if (!strcmp(k, param_names[j]))
                pi = j;
        if (pi < 0 || !(param_allowed[act] & (1u << pi))) {
            note_error(L, file, line, "invalid parameter '%.64s' for action %s", k,
                       action_names[act]);
            return -1;
        }
        if (seen & (1u << pi)) {
            note_error(L, file, line, "parameter given twice: %s", k);
            return -1;
        }
        seen |= 1u << pi;
        const char *why = NULL;
        switch ((enum param)pi) {
        case P_TARGET:
        case P_DEFAULT_TARGET: {
            struct tok *t = pi == P_TARGET ? &r->redirect : &r->default_target;
            if (tok_parse(v, CTX_REDIRECT, t, &why) < 0) {
                note_error(L, file, line, "invalid %s= value '%.64s': %s", k, v, why);
                return -1;
            }
            if (pi == P_TARGET)
                r->has_redirect = true;
            else
                r->has_default_target = true;
            break;
        }
        case P_USER:
            if (!valid_user(v)) {
                note_error(L, file, line, "invalid user= value '%.64s'", v);
                return -1;
            }
            if (!(r->user = strdup(v))) {
                L->oom = true;
                return -1;
            }
            break;
        case P_NOTIFY:
        case P_AUTOSTART:
            if (parse_yesno(v, pi == P_NOTIFY ? &r->notify : &r->autostart) < 0) {
                note_error(L, file, line, "%s= must be yes or no, not '%.64s'", k, v);
                return -1;
            }
            break;
        case P_COUNT:
            break;
        }
    }
    return 0;
}

static void parse_rule(struct loader *L, const char *file, unsigned line, char **f, size_t nf,
                       enum fmt fmt, const char *svc, const char *arg)
{
    size_t need = fmt == FMT_V5 ? 5 : 3;
    if (nf < need) {
        note_error(L, file, line, "wrong number of fields (expected %s)",
                   fmt == FMT_V5 ? "SERVICE ARGUMENT SOURCE TARGET ACTION [PARAMS]"
                                 : "SOURCE TARGET ACTION [PARAMS]");
        return;
    }
    if (fmt == FMT_V5) {
        svc = f[0];
        arg = f[1];
        f += 2;
        nf -= 2;
    }
    struct rule tmp = { 0 };
    const char *why = NULL;
    char tb[64];
    if (check_service_arg(svc, arg, &tmp.service, &tmp.argument, &why) < 0) {
        note_error(L, file, line, "%s", why);
        goto fail;
    }
    if (tok_parse(f[0], CTX_SOURCE, &tmp.source, &why) < 0) {
        note_error(L, file, line, "invalid source '%.64s': %s", f[0], why);
        goto fail;
    }
    if (tok_parse(f[1], CTX_TARGET, &tmp.target, &why) < 0) {
        note_error(L, file, line, "invalid target '%.64s': %s", f[1], why);
        goto fail;
    }
    if (parse_action(L, &tmp, f + 2, nf - 2, file, line) < 0)
        goto fail;
    if (tmp.target.kind == TOK_DEFAULT && tmp.action == ACT_ALLOW && !tmp.has_redirect) {
        note_error(L, file, line, "allow action for %s rule must specify target= option",
                   tok_str(&tmp.target, tb, sizeof tb));
        goto fail;
    }
    struct rule *r = new_rule(L, file, line);
    if (!r)
        goto fail;
    const char *interned = r->file;
    *r = tmp;
    r->file = interned;
    r->line = line;
    return;
fail:
    rule_free(&tmp);
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f';
}

static size_t split_fields(char *s, char **f, size_t max, bool *too_many)
{
    size_t n = 0;
    *too_many = false;
    for (;;) {
        while (is_space(*s))
            s++;
        if (!*s)
            return n;
        if (n == max) {
            *too_many = true;
            return n;
        }
        f[n++] = s;
        while (*s && !is_space(*s))
            s++;
        if (*s)
            *s++ = '\0';
    }
}

/* Qubes' substitutions for the old per-service format of !include-service files:
 * "$include:" -> "!include ", "$" -> "@", "," -> " ". */
static void compat_rewrite(const char *in, size_t len, char *out, size_t outsz)
{
    size_t o = 0;
    for (const char *s = in; s < in + len && o + 10 < outsz; s++) {
        if ((size_t)(in + len - s) >= 9 && !strncmp(s, "$include:", 9)) {
            memcpy(out + o, "!include ", 9);
            o += 9;
            s += 8;
        } else {
            out[o++] = *s == '$' ? '@' : *s == ',' ? ' ' : *s;
        }
    }
    out[o] = '\0';
}

static void parse_directive(struct loader *L, const char *file, unsigned line, char **f, size_t nf,
                            enum fmt fmt, const char *svc, const char *arg)
{
    if (!strcmp(f[0], "!include")) {
        if (nf != 2) {
            note_error(L, file, line, "invalid number of params for !include");
            return;
        }
        char *real = resolve_include(L, f[1], false, file, line);
        if (real)
            parse_file(L, real, fmt, svc, arg, file, line);
        free(real);
        return;
    }
    if (fmt == FMT_SERVICE) {
        note_error(L, file, line, "invalid directive '%.64s' in a service file", f[0]);
        return;
    }
    if (!strcmp(f[0], "!include-dir")) {
        if (nf != 2) {
            note_error(L, file, line, "invalid number of params for !include-dir");
            return;
        }
        char *real = resolve_include(L, f[1], true, file, line);
        /* Loops end at the file stack (a file cannot be read inside itself) and at
         * the depth limit. */
        if (real)
            include_dir(L, real, file, line);
        free(real);
        return;
    }
    if (!strcmp(f[0], "!include-service")) {
        if (nf != 4) {
            note_error(L, file, line, "invalid number of params for !include-service");
            return;
        }
        char *s = NULL, *a = NULL;
        const char *why;
        if (check_service_arg(f[1], f[2], &s, &a, &why) < 0) {
            note_error(L, file, line, "%s", why);
            return;
        }
        free(s);
        free(a);
        char *real = resolve_include(L, f[3], false, file, line);
        if (real)
            parse_file(L, real, FMT_SERVICE, f[1], f[2], file, line);
        free(real);
        return;
    }
    note_error(L, file, line, "invalid directive '%.64s'", f[0]);
}

static void parse_buffer(struct loader *L, const char *file, const char *data, size_t len,
                         enum fmt fmt, const char *svc, const char *arg)
{
    /* Fields of an included service file point into svc/arg copies that outlive it. */
    char svcbuf[BH_POLICY_MAX_SERVICE + 2], argbuf[BH_POLICY_MAX_SERVICE + 3];
    if (fmt == FMT_SERVICE) {
        snprintf(svcbuf, sizeof svcbuf, "%s", svc);
        snprintf(argbuf, sizeof argbuf, "%s", arg);
        svc = svcbuf;
        arg = argbuf;
    }
    size_t pos = 0;
    unsigned lineno = 0;
    while (pos < len && !L->oom) {
        lineno++;
        const char *start = data + pos;
        const char *nl = memchr(start, '\n', len - pos);
        size_t ll = nl ? (size_t)(nl - start) : len - pos;
        pos += ll + (nl ? 1 : 0);
        if (ll > BH_POLICY_MAX_LINE) {
            note_error(L, file, lineno, "line longer than %d bytes", BH_POLICY_MAX_LINE);
            continue;
        }
        if (memchr(start, '\0', ll)) {
            note_error(L, file, lineno, "NUL byte in line");
            continue;
        }
        /* On the stack, not static: includes recurse into parse_buffer. */
        char local[BH_POLICY_MAX_LINE * 2 + 16];
        if (fmt == FMT_SERVICE) {
            compat_rewrite(start, ll, local, sizeof local);
        } else {
            memcpy(local, start, ll);
            local[ll] = '\0';
        }
        char *f[MAX_FIELDS];
        bool too_many;
        size_t nf = split_fields(local, f, MAX_FIELDS, &too_many);
        if (nf == 0 || f[0][0] == '#')
            continue;
        if (too_many) {
            note_error(L, file, lineno, "too many fields (limit %d)", MAX_FIELDS);
            continue;
        }
        for (size_t i = 0; i < nf; i++) {
            for (const char *c = f[i]; *c; c++) {
                if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) {
                    note_error(L, file, lineno, "control or non-ASCII byte in line");
                    goto next_line;
                }
            }
        }
        if (f[0][0] == '!')
            parse_directive(L, file, lineno, f, nf, fmt, svc, arg);
        else
            parse_rule(L, file, lineno, f, nf, fmt, svc, arg);
    next_line:;
    }
}

/* --- top level --------------------------------------------------------------------- */

static void push_barrier(struct loader *L, const char *file, size_t start)
{
    bh_policy *p = L->p;
    for (size_t i = start; i < p->n_rules; i++)
        rule_free(&p->rules[i]);
    p->n_rules = start;
    struct rule *r = new_rule(L, file, 0);
    if (!r)
        return;
    if (!(r->barrier = strdup(L->unit_msg))) {
        L->oom = true;
        return;
    }
    if (p->first_barrier == SIZE_MAX)
        p->first_barrier = p->n_rules - 1;
}

/* One top-level file (or buffer) is one unit: an error anywhere in it or in what it
 * includes replaces all its rules by a single barrier at its place. */
static void load_unit(struct loader *L, const char *path, const char *name, const char *data,
                      size_t len)
{
    size_t start = L->p->n_rules;
    L->unit_failed = false;
    L->unit_msg[0] = '\0';
    if (data) {
        L->p->files_read++;
        L->stack[L->depth++] = path;
        parse_buffer(L, path, data, len, FMT_V5, NULL, NULL);
        L->depth--;
    } else {
        /* resolved against the real root: a symlink must not lead outside */
        char *real = resolve_include(L, name, false, path, 0);
        if (real)
            parse_file(L, real, FMT_V5, NULL, NULL, NULL, 0);
        free(real);
    }
    if (L->unit_failed)
        push_barrier(L, path, start);
}

/* dir_required: the directory is the policy (load_dir); otherwise it only resolves
 * includes, and without it includes are refused. */
static bh_policy *policy_new(struct loader *L, const char *dir, bool dir_required)
{
    memset(L, 0, sizeof *L);
    bh_policy *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->refs = 1;
    p->first_barrier = SIZE_MAX;
    L->p = p;
    /* the directory's load is what a cache may keep (policy_cache.c): record it */
    p->fp.recording = dir_required;
    clock_gettime(CLOCK_REALTIME, &p->fp.started);
    if (dir && !dir_required)
        L->include_dir = dir;
    if (dir && dir_required) {
        L->root = realpath(dir, NULL);
        if (L->root)
            fp_note_realpath(&p->fp, dir, L->root);
        else
            fp_note_failure(&p->fp);
        if (!L->root) {
            note_error(L, dir, 0, "cannot open policy directory: %s", strerror(errno));
            push_barrier(L, dir, 0);
        }
    }
    return p;
}

static bh_policy *policy_finish(struct loader *L)
{
    free(L->root);
    for (size_t i = 0; i < L->n_memo; i++) {
        free(L->memo[i].path);
        free(L->memo[i].data);
    }
    free(L->memo);
    if (!L->oom && policy_build_index(L->p) < 0)
        L->oom = true;
    if (L->oom) {
        bh_policy_free(L->p);
        return NULL;
    }
    return L->p;
}

bh_policy *bh_policy_load_dir(const char *dir)
{
    struct loader L;
    bh_policy *p = policy_new(&L, dir, true);
    if (!p)
        return NULL;
    if (L.root) {
        size_t n = 0;
        L.unit_failed = false;
        char **names = list_policy_files(&L, L.root, dir, 0, &n);
        if (L.unit_failed) {
            /* A bad name in the top directory is a configuration error that rejects
             * every call (Qubes does the same): a barrier before everything. */
            push_barrier(&L, dir, 0);
        }
        for (size_t i = 0; i < n; i++) {
            char path[PATH_MAX];
            if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, names[i]) < sizeof path)
                load_unit(&L, path, names[i], NULL, 0);
            free(names[i]);
        }
        free(names);
    }
    return policy_finish(&L);
}

bh_policy *bh_policy_load_buffer(const char *name, const void *data, size_t len, const char *dir)
{
    struct loader L;
    bh_policy *p = policy_new(&L, dir, false);
    if (!p)
        return NULL;
    load_unit(&L, name, NULL, data, len);
    return policy_finish(&L);
}

bh_policy *bh_policy_load_file(const char *path, const char *dir)
{
    struct loader L;
    bh_policy *p = policy_new(&L, dir, false);
    if (!p)
        return NULL;
    /* The file named on the command line need not be inside dir. */
    char *real = realpath(path, NULL);
    if (real)
        parse_file(&L, real, FMT_V5, NULL, NULL, NULL, 0);
    else
        note_error(&L, path, 0, "cannot open: %s", strerror(errno));
    free(real);
    if (L.unit_failed)
        push_barrier(&L, path, 0);
    return policy_finish(&L);
}

void bh_policy_free(bh_policy *p)
{
    if (!p || --p->refs > 0)
        return;
    fp_free(&p->fp);
    for (size_t i = 0; i < p->n_rules; i++)
        rule_free(&p->rules[i]);
    free(p->rules);
    free(p->by_svc);
    free(p->always);
    for (size_t i = 0; i < p->n_files; i++)
        free(p->files[i]);
    free(p->files);
    for (size_t i = 0; i < p->n_errors; i++)
        free(p->errors[i]);
    free(p->errors);
    free(p);
}

size_t bh_policy_error_count(const bh_policy *p) { return p->n_errors; }
const char *bh_policy_error(const bh_policy *p, size_t i)
{
    return i < p->n_errors ? p->errors[i] : NULL;
}
size_t bh_policy_rule_count(const bh_policy *p) { return p->n_rules; }
