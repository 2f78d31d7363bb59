#include "cli.h"
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *cli_prog = "qvm";
static const struct cli_tool *cur_tool;
static enum cli_error_style err_style = ERR_RUNTIME;
static int n_verbose = 1, n_quiet;

enum { ID_HELP = -1, ID_VERSION = -2, ID_VERBOSE = -3, ID_QUIET = -4, ID_FORCE_ROOT = -5 };

static const struct cli_opt common_opts[] = {
    { "help", 'h', CLI_FLAG, ID_HELP },
    { "version", 0, CLI_FLAG, ID_VERSION },
    { "verbose", 'v', CLI_FLAG, ID_VERBOSE },
    { "quiet", 'q', CLI_FLAG, ID_QUIET },
    { "force-root", 0, CLI_FLAG, ID_FORCE_ROOT },
    { NULL, 0, 0, 0 },
};

void cli_init(const struct cli_tool *tool, enum cli_error_style style)
{
    cur_tool = tool;
    cli_prog = tool->name;
    err_style = style;
}

int cli_verbosity(void)
{
    return n_verbose - n_quiet;
}

static void print_usage(FILE *f)
{
    fprintf(f, "usage: %s %s\n", cli_prog, cur_tool ? cur_tool->usage : "");
}

noreturn void cli_usage_error(const char *fmt, ...)
{
    fflush(stdout);
    print_usage(stderr);
    fprintf(stderr, "%s: error: ", cli_prog);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    exit(2);
}

static void vrt(const char *fmt, va_list ap)
{
    fflush(stdout);
    fprintf(stderr, "%s: error: ", cli_prog);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

noreturn void cli_runtime_error(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vrt(fmt, ap);
    va_end(ap);
    exit(code);
}

static void vpe(const char *fmt, va_list ap)
{
    fflush(stdout);
    fputs("Error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_print_error(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vpe(fmt, ap);
    va_end(ap);
}

noreturn void cli_fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (err_style == ERR_PRINT)
        vpe(fmt, ap);
    else
        vrt(fmt, ap);
    va_end(ap);
    exit(1);
}

static void vlog(const char *logger, bool prefix, const char *fmt, va_list ap)
{
    fflush(stdout);
    if (prefix)
        fprintf(stderr, "%s: ", logger);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

void cli_log_info(const char *logger, const char *fmt, ...)
{
    if (cli_verbosity() < 1)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(logger, true, fmt, ap);
    va_end(ap);
}

void cli_log_error(const char *logger, const char *fmt, ...)
{
    /* Without a configured handler (--quiet) Python's last-resort handler prints the
     * bare message. */
    va_list ap;
    va_start(ap, fmt);
    vlog(logger, cli_verbosity() >= 1, fmt, ap);
    va_end(ap);
}

char *py_repr(const char *s)
{
    bool has_sq = strchr(s, '\'') != NULL, has_dq = strchr(s, '"') != NULL;
    char q = (has_sq && !has_dq) ? '"' : '\'';
    size_t n = strlen(s);
    char *o = qt_alloc(n * 4 + 3), *p = o;
    *p++ = q;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
        if (*c == '\\') { *p++ = '\\'; *p++ = '\\'; }
        else if (*c == (unsigned char)q) { *p++ = '\\'; *p++ = (char)q; }
        else if (*c == '\n') { *p++ = '\\'; *p++ = 'n'; }
        else if (*c == '\t') { *p++ = '\\'; *p++ = 't'; }
        else if (*c < 0x20 || *c == 0x7f) p += sprintf(p, "\\x%02x", *c);
        else *p++ = (char)*c;
    }
    *p++ = q;
    *p = '\0';
    return o;
}

static void add_opt(struct cli_args *a, int id, const char *arg, const char *spelled)
{
    if (a->nopts == a->cap) {
        size_t cap = a->cap ? a->cap * 2 : 8;
        a->opts = qt_realloc_array(a->opts, a->cap, cap, sizeof *a->opts);
        a->cap = cap;
    }
    a->opts[a->nopts++] = (struct cli_optval){ id, arg, spelled };
}

/* argparse treats "-5" as a positional when no option looks like a number. */
static bool is_option_like(const char *s)
{
    if (s[0] != '-' || s[1] == '\0')
        return false;
    if (s[1] >= '0' && s[1] <= '9')
        return false;
    return true;
}

static const struct cli_opt *find_long(const struct cli_opt *opts, const char *name, size_t len)
{
    const struct cli_opt *tables[2] = { common_opts, opts };
    /* Exact match first, then a unique prefix (argparse allows abbreviations). */
    for (int t = 0; t < 2; t++)
        for (const struct cli_opt *o = tables[t]; o->lng; o++)
            if (*o->lng && strlen(o->lng) == len && !strncmp(o->lng, name, len))
                return o;
    const struct cli_opt *found = NULL;
    struct strv cands = { 0 };
    for (int t = 0; t < 2; t++)
        for (const struct cli_opt *o = tables[t]; o->lng; o++)
            if (*o->lng && !strncmp(o->lng, name, len)) {
                found = o;
                strv_push(&cands, qt_printf("--%s", o->lng));
            }
    if (cands.n > 1)
        cli_usage_error("ambiguous option: --%.*s could match %s", (int)len, name,
                        strv_join(&cands, ", "));
    return found;
}

static const struct cli_opt *find_short(const struct cli_opt *opts, char c)
{
    const struct cli_opt *tables[2] = { common_opts, opts };
    for (int t = 0; t < 2; t++)
        for (const struct cli_opt *o = tables[t]; o->lng; o++)
            if (o->shrt == c)
                return o;
    return NULL;
}

static void handle_common(const struct cli_opt *o)
{
    switch (o->id) {
    case ID_HELP:
        print_usage(stdout);
        if (cur_tool && cur_tool->help)
            fputs(cur_tool->help, stdout);
        exit(0);
    case ID_VERSION:
        printf("%s (Bulkhead) 0.1.0\n", cli_prog);
        exit(0);
    case ID_VERBOSE:
        n_verbose++;
        break;
    case ID_QUIET:
        n_quiet++;
        break;
    default:
        break;
    }
}

static int take_values(const struct cli_opt *o, const char *spelled, char **argv, int i,
                       int argc, const char *attached, struct cli_args *out)
{
    if (o->kind == CLI_ARG) {
        if (attached) {
            add_opt(out, o->id, attached, spelled);
            return i;
        }
        if (i + 1 >= argc || is_option_like(argv[i + 1]) || !strcmp(argv[i + 1], "--"))
            cli_usage_error("argument %s: expected one argument", spelled);
        add_opt(out, o->id, argv[i + 1], spelled);
        return i + 1;
    }
    /* CLI_ARGS */
    int n = 0;
    if (attached) {
        add_opt(out, o->id, attached, spelled);
        n++;
    }
    while (i + 1 < argc && !is_option_like(argv[i + 1]) && strcmp(argv[i + 1], "--")) {
        add_opt(out, o->id, argv[++i], spelled);
        n++;
    }
    if (!n)
        cli_usage_error("argument %s: expected at least one argument", spelled);
    return i;
}

void cli_parse(int argc, char **argv, const struct cli_opt *opts, struct cli_args *out)
{
    static const struct cli_opt none[] = { { NULL, 0, 0, 0 } };
    if (!opts)
        opts = none;
    memset(out, 0, sizeof *out);
    struct strv unknown = { 0 };
    bool only_pos = false;
    for (int i = 1; i < argc; i++) {
        char *a = argv[i];
        if (only_pos || !is_option_like(a)) {
            strv_push(&out->pos, a);
            continue;
        }
        if (!strcmp(a, "--")) {
            only_pos = true;
            continue;
        }
        if (a[1] == '-') {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const struct cli_opt *o = find_long(opts, name, len);
            if (!o) {
                strv_push(&unknown, a);
                continue;
            }
            const char *spelled = qt_printf("--%s", o->lng);
            if (o->kind == CLI_FLAG) {
                if (eq)
                    cli_usage_error("argument %s: ignored explicit argument %s", spelled,
                                    py_repr(eq + 1));
                if (o->id < 0)
                    handle_common(o);
                else
                    add_opt(out, o->id, NULL, spelled);
                continue;
            }
            i = take_values(o, spelled, argv, i, argc, eq ? eq + 1 : NULL, out);
            continue;
        }
        /* A cluster of short options: -vq, -Ofoo, -O foo. */
        for (const char *c = a + 1; *c; c++) {
            const struct cli_opt *o = find_short(opts, *c);
            if (!o) {
                strv_push(&unknown, c == a + 1 ? a : qt_printf("-%c", *c));
                break;
            }
            const char *spelled = qt_printf("-%c", *c);
            if (o->kind == CLI_FLAG) {
                if (o->id < 0)
                    handle_common(o);
                else
                    add_opt(out, o->id, NULL, spelled);
                continue;
            }
            i = take_values(o, spelled, argv, i, argc, c[1] ? c + 1 : NULL, out);
            break;
        }
    }
    if (unknown.n)
        cli_usage_error("unrecognized arguments: %s", strv_join(&unknown, " "));
}

bool cli_has(const struct cli_args *a, int id)
{
    for (size_t i = 0; i < a->nopts; i++)
        if (a->opts[i].id == id)
            return true;
    return false;
}

const char *cli_get(const struct cli_args *a, int id)
{
    const char *v = NULL;
    for (size_t i = 0; i < a->nopts; i++)
        if (a->opts[i].id == id)
            v = a->opts[i].arg;
    return v;
}

void cli_get_all(const struct cli_args *a, int id, struct strv *out)
{
    for (size_t i = 0; i < a->nopts; i++)
        if (a->opts[i].id == id && a->opts[i].arg)
            strv_push(out, a->opts[i].arg);
}

void cli_at_most(const struct strv *pos, size_t max)
{
    if (pos->n <= max)
        return;
    struct strv extra = { 0 };
    for (size_t i = max; i < pos->n; i++)
        strv_push(&extra, pos->v[i]);
    cli_usage_error("unrecognized arguments: %s", strv_join(&extra, " "));
}
