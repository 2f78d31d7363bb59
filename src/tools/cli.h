/* Command-line handling shared by every qvm-* tool: an argparse-compatible option
 * parser (so that scripts written for Qubes' tools parse the same way) and the error
 * and log output formats of Qubes' tools:
 *   usage errors      "usage: ...\nPROG: error: MSG"  exit 2   (argparse's parser.error)
 *   runtime errors    "PROG: error: MSG"              exit 1   (error_runtime)
 *   printed errors    "Error: MSG"                              (print_error)
 *   log lines         "LOGGER: MSG" (just "MSG" under --quiet)  (Python logging) */
#pragma once
#include "util.h"
#include <stdbool.h>
#include <stdnoreturn.h>

enum cli_kind {
    CLI_FLAG,   /* --x */
    CLI_ARG,    /* --x VALUE */
    CLI_ARGS,   /* --x VALUE [VALUE ...] (argparse nargs='+') */
};

struct cli_opt {
    const char *lng;     /* without the leading "--"; NULL ends the table */
    char shrt;           /* 0 for none */
    enum cli_kind kind;
    int id;
};

struct cli_tool {
    const char *name;
    const char *usage;   /* after "usage: PROG " */
    const char *help;    /* the rest of --help output */
};

struct cli_optval {
    int id;
    const char *arg;     /* NULL for flags */
    const char *spelled; /* "--timeout" as the user wrote it (for messages) */
};

struct cli_args {
    struct strv pos;
    struct cli_optval *opts;
    size_t nopts, cap;
};

/* How api_must() and friends report a Qubes exception for this tool. */
enum cli_error_style { ERR_RUNTIME, ERR_PRINT };

extern const char *cli_prog;

void cli_init(const struct cli_tool *tool, enum cli_error_style style);
/* Parses argv[1..]; handles --help, --version, --verbose/-v, --quiet/-q, --force-root.
 * Unknown options and missing values are usage errors. */
void cli_parse(int argc, char **argv, const struct cli_opt *opts, struct cli_args *out);
bool cli_has(const struct cli_args *a, int id);
const char *cli_get(const struct cli_args *a, int id);     /* last occurrence */
/* Every value of an option (CLI_ARGS and repeated CLI_ARG), in order. */
void cli_get_all(const struct cli_args *a, int id, struct strv *out);

/* verbose - quiet, as Qubes' QubesArgumentParser computes it (default 1). */
int cli_verbosity(void);

noreturn void cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* argparse's "unrecognized arguments: ..." (usage error) when pos has more than max. */
void cli_at_most(const struct strv *pos, size_t max);
noreturn void cli_runtime_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_print_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Reports an error in the tool's style (see cli_init) and exits 1. */
noreturn void cli_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Python logging lines: info only when verbosity >= 1; warnings/errors always. */
void cli_log_info(const char *logger, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void cli_log_error(const char *logger, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Python repr() of a str, as argparse messages show names: 'x' (or "x'y"). */
char *py_repr(const char *s);
