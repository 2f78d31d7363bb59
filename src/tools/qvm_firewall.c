/* qvm-firewall: list, add, delete and reset a qube's firewall rules
 * (admin.vm.firewall.Get/Set/Reload), in Qubes' rule syntax. */
#include "api.h"
#include "cli.h"
#include "fwrule.h"
#include "table.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>
#include <time.h>

enum { O_RELOAD = 1, O_RAW, O_BEFORE, O_RULE_NO };

static const struct cli_opt opts[] = {
    { "reload", 'r', CLI_FLAG, O_RELOAD },
    { "raw", 0, CLI_FLAG, O_RAW },
    { "before", 0, CLI_ARG, O_BEFORE },
    { "rule-no", 0, CLI_ARG, O_RULE_NO },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-firewall",
    "[--verbose] [--quiet] [--help] [--reload] [--raw]\n"
    "                    VMNAME {add,del,list,reset} ...",
    "\npositional arguments:\n"
    "  VMNAME                a domain name\n"
    "  {add,del,list,reset}  action to perform\n"
    "    add                 add rule (add [--before N] match...)\n"
    "    del                 remove rule (del [--rule-no N] [match...])\n"
    "    list                list rules\n"
    "    reset               remove all firewall rules and reset to default (accept all\n"
    "                        connections)\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --reload, -r          force reload of rules even when unchanged\n"
    "  --raw                 output rules as raw strings, instead of nice table\n\n"
    "Rules can be given as positional arguments:\n"
    "    <action> [<dsthost> [<proto> [<dstports>|<icmptype>]]]\n\n"
    "And as keyword arguments:\n"
    "    action=<action> [specialtarget=dns] [dsthost=<dsthost>]\n"
    "    [proto=<proto>] [dstports=<dstports>] [icmptype=<icmptype>]\n"
    "    [expire=<expire>]\n\n"
    "Both formats, positional and keyword arguments, can be used\n"
    "interchangeably.\n\n"
    "Available matches:\n"
    "    action:        accept or drop\n"
    "    dst4           synonym for dsthost\n"
    "    dst6           synonym for dsthost\n"
    "    dsthost        IP, network or hostname\n"
    "                     (e.g. 10.5.3.2, 192.168.0.0/16,\n"
    "                     www.example.com, fd00::/8)\n"
    "    dstports       port or port range\n"
    "                     (e.g. 443 or 1200-1400)\n"
    "    icmptype       icmp type number (e.g. 8 for echo requests)\n"
    "    proto          icmp, tcp or udp\n"
    "    specialtarget  only the value dns is currently supported,\n"
    "                     it matches the configured dns servers of\n"
    "                     a VM\n"
    "    expire         the rule is automatically removed at the time given as\n"
    "                     seconds since 1/1/1970, or +seconds (e.g. +300 for a rule\n"
    "                     to expire in 5 minutes)\n"
    "    comment        a comment (must be the last element)\n",
};

struct rules {
    struct fwrule *r;
    size_t n;
};

static void load_rules(const char *vm, struct rules *out)
{
    struct strv lines = { 0 };
    strv_split_lines(&lines, api_must(vm, "admin.vm.firewall.Get", NULL, NULL, 0));
    out->r = qt_alloc((lines.n + 2) * sizeof *out->r);
    out->n = 0;
    for (size_t i = 0; i < lines.n; i++) {
        const char *err;
        if (!*lines.v[i])
            continue;
        if (!fwrule_parse_line(lines.v[i], &out->r[out->n], &err))
            cli_fail("invalid rule from qubesd: %s", err);
        out->n++;
    }
}

static void save_rules(const char *vm, const struct rules *rs)
{
    char *payload = qt_strdup("");
    for (size_t i = 0; i < rs->n; i++)
        payload = qt_printf("%s%s\n", payload, fwrule_format(&rs->r[i]));
    api_must(vm, "admin.vm.firewall.Set", NULL, payload, strlen(payload));
}

static struct fwrule rule_from(const struct strv *pos, size_t from)
{
    struct strv args = { 0 };
    for (size_t i = from; i < pos->n; i++)
        strv_push(&args, pos->v[i]);
    struct fwrule r;
    const char *err;
    if (!fwrule_parse_args(&args, time(NULL), &r, &err))
        cli_usage_error("%s", err);
    return r;
}

static long int_arg(const struct cli_args *a, int id, const char *name)
{
    const char *v = cli_get(a, id);
    long n;
    if (!str_to_long(v, &n))
        cli_usage_error("argument %s: invalid int value: %s", name, py_repr(v));
    return n;
}

static void list_rules(const char *vm, bool raw)
{
    struct rules rs;
    load_rules(vm, &rs);
    if (raw) {
        for (size_t i = 0; i < rs.n; i++)
            printf("%s\n", fwrule_format(&rs.r[i]));
        return;
    }
    struct table t;
    table_init(&t, 9);
    static const char *const head[] = { "NO", "ACTION", "HOST", "PROTOCOL", "PORT(S)",
                                        "SPECIAL TARGET", "ICMP TYPE", "EXPIRE", "COMMENT" };
    table_add(&t, head, 9);
    time_t now = time(NULL);
    for (size_t i = 0; i < rs.n; i++) {
        const char *row[9];
        row[0] = qt_printf("%zu", i);
        fwrule_cells(&rs.r[i], now, row + 1);
        table_add(&t, row, 9);
    }
    table_print(&t, stdout);
}

int qvm_firewall_main(int argc, char **argv)
{
    cli_init(&tool, ERR_PRINT);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    const struct vm *vm = vm_arg(&a.pos);
    const char *cmd = a.pos.n > 1 ? a.pos.v[1] : "list";
    if (strcmp(cmd, "add") && strcmp(cmd, "del") && strcmp(cmd, "list") && strcmp(cmd, "reset"))
        cli_usage_error("argument command: invalid choice: %s (choose from 'add', 'del', "
                        "'list', 'reset')", py_repr(cmd));
    if (cli_has(&a, O_BEFORE) && strcmp(cmd, "add"))
        cli_usage_error("unrecognized arguments: --before");
    if (cli_has(&a, O_RULE_NO) && strcmp(cmd, "del"))
        cli_usage_error("unrecognized arguments: --rule-no");
    if (!strcmp(cmd, "list") || !strcmp(cmd, "reset"))
        cli_at_most(&a.pos, 2);

    if (!strcmp(cmd, "add")) {
        if (a.pos.n < 3)
            cli_usage_error("the following arguments are required: match");
        struct fwrule nr = rule_from(&a.pos, 2);
        long before = cli_has(&a, O_BEFORE) ? int_arg(&a, O_BEFORE, "--before") : -1;
        struct rules rs;
        load_rules(vm->name, &rs);
        /* list.insert(): negative counts from the end, out of range clamps. */
        size_t at = rs.n;
        if (before >= 0)
            at = (size_t)before < rs.n ? (size_t)before : rs.n;
        else if (cli_has(&a, O_BEFORE))
            at = (size_t)(-before) >= rs.n ? 0 : rs.n - (size_t)(-before);
        memmove(&rs.r[at + 1], &rs.r[at], (rs.n - at) * sizeof rs.r[0]);
        rs.r[at] = nr;
        rs.n++;
        save_rules(vm->name, &rs);
        return 0;
    }
    if (!strcmp(cmd, "del")) {
        struct rules rs;
        load_rules(vm->name, &rs);
        size_t at;
        if (cli_has(&a, O_RULE_NO)) {
            long no = int_arg(&a, O_RULE_NO, "--rule-no");
            if (no < 0)
                no += (long)rs.n;
            if (no < 0 || (size_t)no >= rs.n)
                cli_fail("pop index out of range");
            at = (size_t)no;
        } else {
            if (a.pos.n < 3)
                cli_usage_error("either --rule-no or a rule to remove is required");
            struct fwrule want = rule_from(&a.pos, 2);
            char *w = fwrule_format(&want);
            for (at = 0; at < rs.n; at++)
                if (!strcmp(fwrule_format(&rs.r[at]), w))
                    break;
            if (at == rs.n)
                cli_fail("no such rule: %s", w);
        }
        memmove(&rs.r[at], &rs.r[at + 1], (rs.n - at - 1) * sizeof rs.r[0]);
        rs.n--;
        save_rules(vm->name, &rs);
        return 0;
    }
    if (!strcmp(cmd, "reset")) {
        api_must(vm->name, "admin.vm.firewall.Set", NULL, "action=accept\n", 14);
        return 0;
    }
    list_rules(vm->name, cli_has(&a, O_RAW));
    if (cli_has(&a, O_RELOAD))
        api_must(vm->name, "admin.vm.firewall.Reload", NULL, NULL, 0);
    return 0;
}
