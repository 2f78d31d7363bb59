/* qvm-device CLASS {list,ls,l,attach,at,a,detach,dt,d,assign,s,unassign,u} ..., and
 * qvm-block / qvm-pci (qvm-device with the class taken from the name): Qubes' device
 * tool over admin.vm.device.<class>.* (see src/admin/api_device.c). */
#include "api.h"
#include "cli.h"
#include "table.h"
#include "tools.h"
#include "util.h"
#include <stdio.h>
#include <string.h>
#include <unistd.h>

enum { O_RO = 1, O_PERSISTENT, O_ALL, O_OPTION, O_REQUIRED, O_ASK };

static const struct cli_opt opts[] = {
    { "ro", 0, CLI_FLAG, O_RO },
    { "persistent", 'p', CLI_FLAG, O_PERSISTENT },
    { "all", 0, CLI_FLAG, O_ALL },
    { "option", 'o', CLI_ARG, O_OPTION },
    { "required", 0, CLI_FLAG, O_REQUIRED },
    { "ask-to-attach", 0, CLI_FLAG, O_ASK },
    { "ask", 0, CLI_FLAG, O_ASK },
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
    "  --ro                  attach read-only (alias for read-only=yes option, takes precedence)\n"
    "  --option, -o OPTION   set option for the device in opt=value form (can be specified multiple times)\n"
    "  --persistent, -p      (attach) also assign it as required (attached at every start)\n"
    "  --required            (assign) mode required (default: auto-attach)\n"
    "  --ask-to-attach, --ask (assign) mode ask-to-attach\n\n"
    "commands:\n"
    "    list (ls,l) [VMNAME...]            list devices\n"
    "    attach (at,a) VMNAME BACKEND:DEVID attach a device\n"
    "    detach (dt,d) VMNAME [BACKEND:DEVID] detach a device\n"
    "    assign (s) VMNAME BACKEND:DEVID    assign a device (attached at every start)\n"
    "    unassign (u) VMNAME BACKEND:DEVID  unassign a device\n",
};

/* One value of a `key='value'` serialisation (Qubes' quoting: \\' inside). */
static const char *prop_of(const char *line, const char *key)
{
    const char *k = qt_printf(" %s='", key);
    const char *p = strstr(line, k);
    if (!p)
        return NULL;
    p += strlen(k);
    char *out = qt_alloc(strlen(p) + 1), *o = out;
    for (; *p && *p != '\''; p++) {
        if (*p == '\\' && p[1] == '\'')
            p++;
        *o++ = *p;
    }
    return out;
}

/* qubesadmin's DeviceInfo.description: "CATEGORY: VENDOR PRODUCT". */
static const char *device_description(const char *cls, const char *line)
{
    const char *prod = NULL, *vendor = NULL;
    static const char *const prods[] = { "product", "name", "serial" }, *const vendors[] = { "vendor", "manufacturer" };
    for (size_t i = 0; i < 3 && !prod; i++) {
        const char *v = prop_of(line, prods[i]);
        if (v && *v && strcmp(v, "unknown"))
            prod = v;
    }
    for (size_t i = 0; i < 2 && !vendor; i++) {
        const char *v = prop_of(line, vendors[i]);
        if (v && *v && strcmp(v, "unknown"))
            vendor = v;
    }
    const char *ifc = prop_of(line, "interfaces");
    const char *cat = ifc && !strncmp(ifc, "b******", 7) ? "Block_Storage" : qt_printf("%s device", str_upper(cls));
    return qt_printf("%s: %s %s", cat, vendor ? vendor : "unknown vendor",
                     prod ? prod : qt_printf("unknown %s device", cls));
}

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
        /* Qubes' table: BACKEND:DEVID, DESCRIPTION, USED BY (the qubes it is attached to). */
        char att_method[128];
        snprintf(att_method, sizeof att_method, "admin.vm.device.%s.Attached", cls);
        struct strv users = { 0 }; /* "BACKEND:PORT\tQUBE" */
        for (size_t i = 0; i < n; i++) {
            api_call(&r, all[i].name, att_method, NULL, NULL, 0);
            struct strv lines = { 0 };
            if (r.ok)
                strv_split_lines(&lines, r.body);
            for (size_t k = 0; k < lines.n; k++) {
                const char *plus = strchr(lines.v[k], '+');
                size_t pl = plus ? strcspn(plus + 1, ": ") : 0;
                if (plus)
                    strv_push(&users, qt_printf("%.*s:%.*s\t%s", (int)(plus - lines.v[k]), lines.v[k], (int)pl,
                                                plus + 1, all[i].name));
            }
        }
        struct table t;
        table_init(&t, 3);
        struct strv rows = { 0 };
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
                const char *ident = qt_printf("%s:%.*s", all[i].name, (int)idlen, lines.v[k]);
                const char *desc = device_description(cls, lines.v[k]);
                struct strv used = { 0 };
                for (size_t u = 0; u < users.n; u++)
                    if (str_startswith(users.v[u], ident) && users.v[u][strlen(ident)] == '\t')
                        strv_push(&used, users.v[u] + strlen(ident) + 1);
                strv_push(&rows, qt_printf("%s\t%s\t%s", ident, desc, strv_join(&used, ", ")));
            }
        }
        strv_sort(&rows);
        if (isatty(1) && rows.n)
            table_add(&t, (const char *const[]){ "BACKEND:DEVID", "DESCRIPTION", "USED BY" }, 3);
        for (size_t i = 0; i < rows.n; i++) {
            char *c1 = qt_strdup(rows.v[i]), *c2 = strchr(c1, '\t'), *c3;
            *c2++ = '\0';
            c3 = strchr(c2, '\t');
            *c3++ = '\0';
            table_add(&t, (const char *const[]){ c1, c2, c3 }, 3);
        }
        table_print(&t, stdout);
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
    /* Qubes: attach --persistent is attach (its failure ignored) then assign --required. */
    bool persistent = at && cli_has(&a, O_PERSISTENT);
    const char *op = at ? "Attach" : dt ? "Detach" : as ? "Assign" : "Unassign";
    const char *mode = at && !persistent ? "manual"
                       : persistent || cli_has(&a, O_REQUIRED) ? "required"
                       : cli_has(&a, O_ASK)                    ? "ask-to-attach"
                                                               : "auto-attach";
    snprintf(method, sizeof method, "admin.vm.device.%s.%s", cls, op);
    char payload[4096];
    const char *colon = strchr(a.pos.v[p], ':');
    const char *port = colon + 1;
    size_t portlen = strcspn(port, ":");
    snprintf(payload, sizeof payload, "port_id='%.*s' devclass='%s' backend_domain='%.*s' mode='%s'", (int)portlen, port,
             cls, (int)(colon - a.pos.v[p]), a.pos.v[p], mode);
    /* -o opt=value (repeatable), `ro=` spelled as read-only, --ro taking precedence. */
    struct strv o = { 0 }, keys = { 0 }, vals = { 0 };
    cli_get_all(&a, O_OPTION, &o);
    for (size_t i = 0; i < o.n; i++) {
        const char *eq = strchr(o.v[i], '=');
        if (!eq)
            cli_usage_error("option %s: expected opt=value", py_repr(o.v[i]));
        const char *k = qt_strndup(o.v[i], (size_t)(eq - o.v[i])), *v = eq + 1;
        if (!strcmp(k, "ro")) {
            const char *lv = str_lower(v);
            if (!strcmp(lv, "1") || !strcmp(lv, "true") || !strcmp(lv, "yes"))
                k = "read-only", v = "yes";
            else if (!strcmp(lv, "0") || !strcmp(lv, "false") || !strcmp(lv, "no"))
                k = "read-only", v = "no";
            else
                cli_runtime_error(1, "Unknown `read-only` option value: %s", v);
        }
        size_t at_i = keys.n;
        for (size_t j = 0; j < keys.n; j++)
            if (!strcmp(keys.v[j], k))
                at_i = j;
        if (at_i == keys.n) {
            strv_push(&keys, k);
            strv_push(&vals, v);
        } else {
            vals.v[at_i] = qt_strdup(v);
        }
    }
    if (cli_has(&a, O_RO)) {
        size_t at_i = keys.n;
        for (size_t j = 0; j < keys.n; j++)
            if (!strcmp(keys.v[j], "read-only"))
                at_i = j;
        if (at_i == keys.n) {
            strv_push(&keys, "read-only");
            strv_push(&vals, "yes");
        } else {
            vals.v[at_i] = "yes";
        }
    }
    for (size_t i = 0; i < keys.n; i++) {
        size_t len = strlen(payload);
        snprintf(payload + len, sizeof payload - len, " _%s='", keys.v[i]);
        for (const char *c = vals.v[i]; *c && strlen(payload) + 3 < sizeof payload; c++) {
            len = strlen(payload);
            if (*c == '\'')
                payload[len++] = '\\';
            payload[len++] = *c;
            payload[len] = '\0';
        }
        len = strlen(payload);
        snprintf(payload + len, sizeof payload - len, "'");
    }
    bool with_payload = at || as;
    api_call(&r, vm, method, dev, with_payload ? payload : NULL, with_payload ? strlen(payload) : 0);
    if (persistent) { /* the attach's failure is ignored, as Qubes' qvm-device does */
        snprintf(method, sizeof method, "admin.vm.device.%s.Assign", cls);
        api_call(&r, vm, method, dev, payload, strlen(payload));
    }
    if (!r.ok)
        cli_runtime_error(1, "%s", r.exc_msg);
    return 0;
}
