/* qvm-label: the labels (trust colours) as the Admin API offers them:
 * admin.label.List/Get/Index/Create/Remove. Qubes has no such tool; the commands
 * follow the style of qvm-tags. */
#include "api.h"
#include "cli.h"
#include "table.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>

enum { O_FULL = 1 };

static const struct cli_opt opts[] = {
    { "full", 0, CLI_FLAG, O_FULL },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-label",
    "[--verbose] [--quiet] [--help] {list,ls,l,get,index,create,add,remove,del,rm} ...",
    "\nmanage labels (the trust colours of qubes)\n\n"
    "commands:\n"
    "    list (ls,l) [--full]   list label names (--full: NAME INDEX COLOR table)\n"
    "    get LABEL              print the label's colour (0xRRGGBB)\n"
    "    index LABEL            print the label's index\n"
    "    create (add) NAME COLOR\n"
    "                           create a label with colour 0xRRGGBB\n"
    "    remove (del,rm) LABEL  remove a label no qube uses\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n",
};

static bool cmd_is(const char *c, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(c, *names))
            return true;
    return false;
}

static void nargs(const struct strv *pos, size_t want, const char *names)
{
    if (pos->n < want)
        cli_usage_error("the following arguments are required: %s", names);
    cli_at_most(pos, want);
}

static char *call_or_die(const char *method, const char *arg, const char *payload)
{
    struct reply r;
    api_call(&r, "dom0", method, arg, payload, payload ? strlen(payload) : 0);
    if (!r.ok)
        cli_runtime_error(1, "%s", r.exc_msg);
    return r.body;
}

int qvm_label_main(int argc, char **argv)
{
    static const char *const c_list[] = { "list", "ls", "l", NULL };
    static const char *const c_create[] = { "create", "add", NULL };
    static const char *const c_remove[] = { "remove", "del", "rm", NULL };
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    const char *cmd = a.pos.n ? a.pos.v[0] : "list";
    if (cmd_is(cmd, c_list)) {
        nargs(&a.pos, a.pos.n ? 1 : 0, "");
        struct strv labels = { 0 };
        labels_list(&labels);
        if (!cli_has(&a, O_FULL)) {
            for (size_t i = 0; i < labels.n; i++)
                puts(labels.v[i]);
            return 0;
        }
        struct table t;
        table_init(&t, 3);
        static const char *const head[] = { "NAME", "INDEX", "COLOR" };
        table_add(&t, head, 3);
        for (size_t i = 0; i < labels.n; i++) {
            const char *row[3] = { labels.v[i],
                                   call_or_die("admin.label.Index", labels.v[i], NULL),
                                   call_or_die("admin.label.Get", labels.v[i], NULL) };
            table_add(&t, row, 3);
        }
        table_print(&t, stdout);
        return 0;
    }
    if (!strcmp(cmd, "get") || !strcmp(cmd, "index")) {
        nargs(&a.pos, 2, "LABEL");
        puts(call_or_die(!strcmp(cmd, "get") ? "admin.label.Get" : "admin.label.Index",
                         a.pos.v[1], NULL));
        return 0;
    }
    if (cmd_is(cmd, c_create)) {
        nargs(&a.pos, 3, "NAME, COLOR");
        call_or_die("admin.label.Create", a.pos.v[1], a.pos.v[2]);
        return 0;
    }
    if (cmd_is(cmd, c_remove)) {
        nargs(&a.pos, 2, "LABEL");
        call_or_die("admin.label.Remove", a.pos.v[1], NULL);
        return 0;
    }
    cli_usage_error("argument command: invalid choice: %s (choose from 'list', 'ls', 'l', "
                    "'get', 'index', 'create', 'add', 'remove', 'del', 'rm')", py_repr(cmd));
}
