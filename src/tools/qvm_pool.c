/* qvm-pool: Qubes' storage pool tool (qubesadmin/tools/qvm_pool.py): drivers, list,
 * info, add, remove, set, with its output and error texts. */
#include "api.h"
#include "cli.h"
#include "table.h"
#include "tools.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { O_OPTION = 1 };

static const struct cli_opt opts[] = {
    { "option", 'o', CLI_ARG, O_OPTION },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-pool",
    "[--verbose] [--quiet] [--help] {drivers,d,list,l,ls,info,i,add,a,remove,r,rm,set,s} ...",
    "\nManages Qubes pools and their options.\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n\n"
    "commands:\n"
    "  For more information see qvm-pool <command> -h\n\n"
    "  {drivers,d,list,l,ls,info,i,add,a,remove,r,rm,set,s}\n"
    "    drivers (d)         List all drivers with their options\n"
    "    list (l, ls)        List all available pools\n"
    "    info (i)            Print info about the specified pools\n"
    "    add (a)             Add a new pool (POOL_NAME DRIVER [-o OPT=VALUE]...)\n"
    "    remove (r, rm)      Remove the specified pools\n"
    "    set (s)             Modify driver options for a pool (POOL_NAME -o OPT=VALUE)\n",
};

static bool cmd_is(const char *c, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(c, *names))
            return true;
    return false;
}

static char *call_or_die(const char *method, const char *arg, const char *payload)
{
    struct reply r;
    api_call(&r, "dom0", method, arg, payload, payload ? strlen(payload) : 0);
    if (!r.ok)
        cli_runtime_error(1, "%s", r.exc_msg);
    return r.body;
}

/* The pool's config as qubesadmin's Pool.config: every KEY=VALUE line of Info. */
static void pool_config(const char *name, struct strv *keys, struct strv *vals)
{
    struct strv lines = { 0 };
    strv_split_lines(&lines, call_or_die("admin.pool.Info", name, NULL));
    strv_sort(&lines);
    for (size_t i = 0; i < lines.n; i++) {
        char *eq = strchr(lines.v[i], '=');
        if (!eq)
            continue;
        *eq = '\0';
        strv_push(keys, lines.v[i]);
        strv_push(vals, eq + 1);
    }
}

static int cmd_drivers(void)
{
    struct strv lines = { 0 };
    strv_split_lines(&lines, call_or_die("admin.pool.ListDrivers", NULL, NULL));
    strv_sort(&lines);
    struct table t;
    table_init(&t, 2);
    table_add(&t, (const char *const[]){ "DRIVER", "OPTIONS" }, 2);
    for (size_t i = 0; i < lines.n; i++) {
        char *sp = strchr(lines.v[i], ' ');
        struct strv params = { 0 };
        if (sp) {
            *sp = '\0';
            for (char *save, *p = strtok_r(sp + 1, " ", &save); p; p = strtok_r(NULL, " ", &save))
                strv_push(&params, p);
        }
        table_add(&t, (const char *const[]){ lines.v[i], strv_join(&params, ", ") }, 2);
    }
    table_print(&t, stdout);
    return 0;
}

static int cmd_list(void)
{
    struct strv pools = { 0 };
    strv_split_lines(&pools, call_or_die("admin.pool.List", NULL, NULL));
    struct table t;
    table_init(&t, 2);
    table_add(&t, (const char *const[]){ "NAME", "DRIVER" }, 2);
    for (size_t i = 0; i < pools.n; i++) {
        struct strv k = { 0 }, v = { 0 };
        pool_config(pools.v[i], &k, &v);
        const char *driver = "";
        for (size_t j = 0; j < k.n; j++)
            if (!strcmp(k.v[j], "driver"))
                driver = v.v[j];
        table_add(&t, (const char *const[]){ pools.v[i], driver }, 2);
    }
    table_print(&t, stdout);
    return 0;
}

static int cmd_info(const struct strv *names)
{
    if (names->n < 1)
        cli_usage_error("the following arguments are required: POOL_NAME");
    if (names->n > 1)
        cli_usage_error("unrecognized arguments: %s", names->v[1]);
    struct strv pools = { 0 };
    strv_split_lines(&pools, call_or_die("admin.pool.List", NULL, NULL));
    if (!strv_contains(&pools, names->v[0]))   /* qubesadmin's PoolsAction */
        cli_usage_error("no such pool: %s", py_repr(names->v[0]));
    struct table t;
    table_init(&t, 2);
    table_add(&t, (const char *const[]){ "name", names->v[0] }, 2);
    struct strv k = { 0 }, v = { 0 };
    pool_config(names->v[0], &k, &v);
    for (size_t j = 0; j < k.n; j++)
        if (strcmp(k.v[j], "name"))
            table_add(&t, (const char *const[]){ k.v[j], v.v[j] }, 2);
    table_print(&t, stdout);
    return 0;
}

/* "OPT=VALUE" options, sorted by option as qubesadmin's add_pool sorts them. */
static char *options_payload(const char *name, const struct strv *o)
{
    struct strv lines = { 0 };
    for (size_t i = 0; i < o->n; i++) {
        if (!strchr(o->v[i], '='))   /* dict(opt.split('=', 1)): a Python ValueError */
            cli_runtime_error(1, "dictionary update sequence element #%zu has length 1; 2 is required", i);
        strv_push(&lines, o->v[i]);
    }
    strv_sort(&lines);
    size_t len = strlen(name) + 8;
    for (size_t i = 0; i < lines.n; i++)
        len += strlen(lines.v[i]) + 1;
    char *p = malloc(len), *w = p;
    if (!p)
        cli_runtime_error(1, "out of memory");
    w += sprintf(w, "name=%s\n", name);
    for (size_t i = 0; i < lines.n; i++)
        w += sprintf(w, "%s\n", lines.v[i]);
    return p;
}

int qvm_pool_main(int argc, char **argv)
{
    static const char *const c_drivers[] = { "drivers", "d", NULL }, *const c_list[] = { "list", "l", "ls", NULL };
    static const char *const c_info[] = { "info", "i", NULL }, *const c_add[] = { "add", "a", NULL };
    static const char *const c_remove[] = { "remove", "r", "rm", NULL }, *const c_set[] = { "set", "s", NULL };
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    const char *cmd = a.pos.n ? a.pos.v[0] : "list";
    struct strv rest = { 0 };
    for (size_t i = 1; i < a.pos.n; i++)
        strv_push(&rest, a.pos.v[i]);
    struct strv o = { 0 };
    cli_get_all(&a, O_OPTION, &o);
    if (cmd_is(cmd, c_drivers))
        return cmd_drivers();
    if (cmd_is(cmd, c_list))
        return cmd_list();
    if (cmd_is(cmd, c_info))
        return cmd_info(&rest);
    if (cmd_is(cmd, c_add)) {
        if (rest.n < 2)
            cli_usage_error("the following arguments are required: %s", rest.n ? "DRIVER" : "POOL_NAME, DRIVER");
        if (rest.n > 2)
            cli_usage_error("unrecognized arguments: %s", rest.v[2]);
        char *payload = options_payload(rest.v[0], &o);
        struct reply r;
        api_call(&r, "dom0", "admin.pool.Add", rest.v[1], payload, strlen(payload));
        free(payload);
        if (!r.ok)
            cli_runtime_error(1, "Failed to add pool %s: %s\n", rest.v[0], r.exc_msg);
        return 0;
    }
    if (cmd_is(cmd, c_remove)) {
        if (rest.n < 1)
            cli_usage_error("the following arguments are required: POOL_NAME");
        struct strv errors = { 0 };
        for (size_t i = 0; i < rest.n; i++) {
            struct reply r;
            api_call(&r, "dom0", "admin.pool.Remove", rest.v[i], NULL, 0);
            if (!r.ok) {
                char buf[1200];
                snprintf(buf, sizeof buf, "Failed to remove pool %s: %s\n", rest.v[i], r.exc_msg);
                strv_push(&errors, buf);
            }
        }
        if (errors.n)
            cli_runtime_error(1, "%s", strv_join(&errors, "\n"));
        return 0;
    }
    if (cmd_is(cmd, c_set)) {
        if (rest.n != 1)
            cli_usage_error("the following arguments are required: POOL_NAME");
        struct strv errors = { 0 };
        for (size_t i = 0; i < o.n; i++) {
            char *eq = strchr(o.v[i], '=');
            if (!eq)
                cli_runtime_error(1, "not enough values to unpack (expected 2, got 1)");
            *eq = '\0';
            char buf[1200];
            if (strcmp(o.v[i], "revisions_to_keep") && strcmp(o.v[i], "ephemeral_volatile")) {
                snprintf(buf, sizeof buf, "Setting option %s is not supported for pool %s\n", o.v[i], rest.v[0]);
                strv_push(&errors, buf);
                continue;
            }
            char method[64];
            snprintf(method, sizeof method, "admin.pool.Set.%s", o.v[i]);
            struct reply r;
            api_call(&r, "dom0", method, rest.v[0], eq + 1, strlen(eq + 1));
            if (!r.ok) {
                snprintf(buf, sizeof buf, "Failed to set option %s for pool %s: %s\n", o.v[i], rest.v[0], r.exc_msg);
                strv_push(&errors, buf);
            }
        }
        if (errors.n)
            cli_runtime_error(1, "%s", strv_join(&errors, "\n"));
        return 0;
    }
    cli_usage_error("argument command: invalid choice: %s (choose from 'drivers', 'd', 'list', 'l', 'ls', 'info', "
                    "'i', 'add', 'a', 'remove', 'r', 'rm', 'set', 's')", py_repr(cmd));
}
