/* qvm-tags: list, query, add and remove a qube's tags. */
#include "api.h"
#include "cli.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>

static const struct cli_tool tool = {
    "qvm-tags",
    "[--verbose] [--quiet] [--help] VMNAME {list,ls,l,add,a,set,del,d,unset,u} ...",
    "\nmanage domain's tags\n\n"
    "positional arguments:\n  VMNAME                a domain name\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n\n"
    "commands:\n"
    "  For more information see qvm-tags command -h\n\n"
    "  {list,ls,l,add,a,set,del,d,unset,u}\n"
    "    list (ls,l)         list tags\n"
    "    add (a,set)         add tag\n"
    "    del (d,unset,u)     remove tag\n",
};

static bool is_cmd(const char *c, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(c, *names))
            return true;
    return false;
}

int qvm_tags_main(int argc, char **argv)
{
    static const char *const list_names[] = { "list", "ls", "l", NULL };
    static const char *const add_names[] = { "add", "a", "set", NULL };
    static const char *const del_names[] = { "del", "d", "unset", "u", NULL };
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, NULL, &a);
    const struct vm *vm = vm_arg(&a.pos);
    const char *cmd = a.pos.n > 1 ? a.pos.v[1] : "list";
    if (a.pos.n > 1 && !is_cmd(cmd, list_names) && !is_cmd(cmd, add_names) &&
        !is_cmd(cmd, del_names))
        cli_usage_error("argument command: invalid choice: %s (choose from 'list', 'ls', 'l', "
                        "'add', 'a', 'set', 'del', 'd', 'unset', 'u')", py_repr(cmd));
    struct reply r;
    if (is_cmd(cmd, list_names)) {
        cli_at_most(&a.pos, 3);
        struct strv tags = { 0 };
        strv_split_lines(&tags, api_must(vm->name, "admin.vm.tag.List", NULL, NULL, 0));
        if (a.pos.n > 2)
            /* A query: prints the tag and succeeds only if the qube has it. */
            return strv_contains(&tags, a.pos.v[2]) ? (puts(a.pos.v[2]), 0) : 1;
        strv_sort(&tags);
        for (size_t i = 0; i < tags.n; i++)
            puts(tags.v[i]);
        return 0;
    }
    if (a.pos.n < 3)
        cli_usage_error("the following arguments are required: tag");
    if (is_cmd(cmd, add_names)) {
        for (size_t i = 2; i < a.pos.n; i++) {
            api_call(&r, vm->name, "admin.vm.tag.Set", a.pos.v[i], NULL, 0);
            if (!r.ok)
                cli_runtime_error(1, "%s", r.exc_msg);
        }
        return 0;
    }
    cli_at_most(&a.pos, 3);
    api_call(&r, vm->name, "admin.vm.tag.Remove", a.pos.v[2], NULL, 0);
    /* discard(): removing a tag the qube does not have is fine. */
    if (!r.ok && !exc_is_keyerror(&r))
        cli_runtime_error(1, "%s", r.exc_msg);
    return 0;
}
