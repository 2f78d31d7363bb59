/* qvm-device CLASS {list,ls,l,attach,at,a,detach,dt,d,assign,s,unassign,u} ..., and
 * qvm-block / qvm-pci (qvm-device with the class taken from the name): Qubes' device
 * tool over admin.vm.device.<class>.* (see src/admin/api_device.c). */
#include "api.h"
#include "cli.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>

enum { O_RO = 1, O_PERSISTENT, O_ALL };

static const struct cli_opt opts[] = {
    { "ro", 0, CLI_FLAG, O_RO },
    { "persistent", 'p', CLI_FLAG, O_PERSISTENT },
    { "all", 0, CLI_FLAG, O_ALL },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-device",
    "[--verbose] [--quiet] [--help] DEVICE_CLASS {list,ls,l,attach,at,a,detach,dt,d,assign,s,unassign,u} ...",
    "\nList/set VM devices\n\n"
    "positional arguments:\n  DEVICE_CLASS          the device class (admin.deviceclass.List)\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --ro                  attach read-only (block devices)\n"
    "  --persistent, -p      (attach) also assign: the device is attached at every start\n\n"
    "commands:\n"
    "    list (ls,l) [VMNAME...]            list devices\n"
    "    attach (at,a) VMNAME BACKEND:DEVID attach a device\n"
    "    detach (dt,d) VMNAME [BACKEND:DEVID] detach a device\n"
    "    assign (s) VMNAME BACKEND:DEVID    assign a device (attached at every start)\n"
    "    unassign (u) VMNAME BACKEND:DEVID  unassign a device\n",
};

static bool is(const char *c, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(c, *names))
            return true;
    return false;
}

/* "BACKEND:PORT" -> "BACKEND+PORT", the Admin API argument. */
static const char *qarg(const char *dev)
{
    static char buf[256];
    const char *colon = strchr(dev, ':');
    if (!colon || colon == dev || !colon[1] || strlen(dev) >= sizeof buf)
        cli_usage_error("expected a backend vm & device id, separated by a colon, got %s", py_repr(dev));
    snprintf(buf, sizeof buf, "%.*s+%s", (int)(colon - dev), dev, colon + 1);
    return buf;
}

int qvm_device_main(int argc, char **argv)
{
    static const char *const ls_n[] = { "list", "ls", "l", NULL }, *const at_n[] = { "attach", "at", "a", NULL },
                             *const dt_n[] = { "detach", "dt", "d", NULL }, *const as_n[] = { "assign", "s", NULL },
                             *const un_n[] = { "unassign", "u", NULL };
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    const char *fixed = !strcmp(prog, "qvm-block") ? "block" : !strcmp(prog, "qvm-pci") ? "pci" : NULL;
    /* qvm-block and qvm-pci speak under their own names, as Qubes' entry points do. */
    static struct cli_tool named;
    named = tool;
    if (fixed)
        named.name = !strcmp(fixed, "block") ? "qvm-block" : "qvm-pci";
    cli_init(&named, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    size_t p = 0;
    const char *cls = fixed;
    if (!cls) {
        if (a.pos.n < 1)
            cli_usage_error("the following arguments are required: DEVICE_CLASS");
        cls = a.pos.v[p++];
    }
    struct strv classes = { 0 };
    strv_split_lines(&classes, api_must("dom0", "admin.deviceclass.List", NULL, NULL, 0));
    if (!strv_contains(&classes, cls))
        cli_usage_error("argument DEVICE_CLASS: invalid choice: %s (choose from %s)", py_repr(cls),
                        strv_join(&classes, ", "));
    const char *cmd = p < a.pos.n ? a.pos.v[p++] : "list";
    char method[128];
    struct reply r;
    if (is(cmd, ls_n)) {
        /* Every qube (or those named) as a backend: what it exposes. */
        const struct vm *all;
        size_t n = vm_list(&all);
        snprintf(method, sizeof method, "admin.vm.device.%s.Available", cls);
        for (size_t i = 0; i < n; i++) {
            bool named = p == a.pos.n;
            for (size_t k = p; k < a.pos.n; k++)
                named |= !strcmp(a.pos.v[k], all[i].name);
            if (!named)
                continue;
            api_call(&r, all[i].name, method, NULL, NULL, 0);
            if (!r.ok)
                continue;
            struct strv lines = { 0 };
            strv_split_lines(&lines, r.body);
            for (size_t k = 0; k < lines.n; k++) {
                size_t idlen = strcspn(lines.v[k], " :");
                printf("%s:%.*s\n", all[i].name, (int)idlen, lines.v[k]);
            }
        }
        return 0;
    }
    bool at = is(cmd, at_n), dt = is(cmd, dt_n), as = is(cmd, as_n), un = is(cmd, un_n);
    if (!at && !dt && !as && !un)
        cli_usage_error("argument command: invalid choice: %s (choose from 'list', 'ls', 'l', 'attach', 'at', "
                        "'a', 'detach', 'dt', 'd', 'assign', 's', 'unassign', 'u')", py_repr(cmd));
    if (p >= a.pos.n)
        cli_usage_error("the following arguments are required: VMNAME");
    const char *vm = a.pos.v[p++];
    if (!vm_find(vm))
        cli_usage_error("no such domain: %s", py_repr(vm));
    if (p >= a.pos.n)
        cli_usage_error("the following arguments are required: BACKEND:DEVICE_ID");
    const char *dev = qarg(a.pos.v[p]);
    const char *op = at ? (cli_has(&a, O_PERSISTENT) ? "Assign" : "Attach") : dt ? "Detach" : as ? "Assign" : "Unassign";
    snprintf(method, sizeof method, "admin.vm.device.%s.%s", cls, op);
    char payload[512];
    const char *colon = strchr(a.pos.v[p], ':');
    snprintf(payload, sizeof payload, "port_id='%s' devclass='%s' backend_domain='%.*s' mode='%s'%s", colon + 1, cls,
             (int)(colon - a.pos.v[p]), a.pos.v[p], at && !cli_has(&a, O_PERSISTENT) ? "manual" : "required",
             cli_has(&a, O_RO) ? " _read-only='yes'" : "");
    bool with_payload = at || as;
    api_call(&r, vm, method, dev, with_payload ? payload : NULL, with_payload ? strlen(payload) : 0);
    if (!r.ok)
        cli_runtime_error(1, "%s", r.exc_msg);
    return 0;
}
