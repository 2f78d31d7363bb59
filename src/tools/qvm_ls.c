/* qvm-ls: list qubes and their properties, as Qubes' qvm-ls does (columns, formats,
 * filters, --raw-data/--raw-list, sorting, --tree). */
#include "api.h"
#include "cli.h"
#include "table.h"
#include "tools.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

enum {
    O_FORMAT = 1, O_FIELDS, O_TREE, O_RAW_DATA, O_RAW_LIST, O_DISK, O_NETWORK, O_KERNEL,
    O_HELP_FORMATS, O_HELP_COLUMNS, O_CLASS, O_LABEL, O_TAGS, O_EXCLUDE_TAGS, O_RUNNING,
    O_PAUSED, O_HALTED, O_TEMPLATE_SOURCE, O_NETVM_IS, O_INTERNAL, O_SERVICEVM,
    O_PENDING_UPDATE, O_FEATURES, O_PREFS, O_SORT, O_REVERSE, O_IGNORE_CASE, O_SPINNER,
    O_NO_SPINNER, O_ALL, O_EXCLUDE,
};

static const struct cli_opt opts[] = {
    { "format", 'o', CLI_ARG, O_FORMAT },
    { "fields", 'O', CLI_ARG, O_FIELDS },
    { "tree", 't', CLI_FLAG, O_TREE },
    { "raw-data", 0, CLI_FLAG, O_RAW_DATA },
    { "raw-list", 0, CLI_FLAG, O_RAW_LIST },
    { "disk", 'd', CLI_FLAG, O_DISK },
    { "network", 'n', CLI_FLAG, O_NETWORK },
    { "kernel", 'k', CLI_FLAG, O_KERNEL },
    { "help-formats", 0, CLI_FLAG, O_HELP_FORMATS },
    { "help-columns", 0, CLI_FLAG, O_HELP_COLUMNS },
    { "class", 0, CLI_ARGS, O_CLASS },
    { "label", 0, CLI_ARGS, O_LABEL },
    { "tags", 0, CLI_ARGS, O_TAGS },
    { "exclude-tags", 0, CLI_ARGS, O_EXCLUDE_TAGS },
    { "running", 0, CLI_FLAG, O_RUNNING },
    { "paused", 0, CLI_FLAG, O_PAUSED },
    { "halted", 0, CLI_FLAG, O_HALTED },
    { "template-source", 0, CLI_ARGS, O_TEMPLATE_SOURCE },
    { "netvm-is", 0, CLI_ARGS, O_NETVM_IS },
    { "internal", 0, CLI_ARG, O_INTERNAL },
    { "servicevm", 0, CLI_ARG, O_SERVICEVM },
    { "pending-update", 0, CLI_FLAG, O_PENDING_UPDATE },
    { "features", 0, CLI_ARGS, O_FEATURES },
    { "prefs", 0, CLI_ARGS, O_PREFS },
    { "sort", 0, CLI_ARG, O_SORT },
    { "reverse", 0, CLI_FLAG, O_REVERSE },
    { "ignore-case", 0, CLI_FLAG, O_IGNORE_CASE },
    { "spinner", 0, CLI_FLAG, O_SPINNER },
    { "no-spinner", 0, CLI_FLAG, O_NO_SPINNER },
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-ls",
    "[--verbose] [--quiet] [--help] [--all] [--exclude EXCLUDE]\n"
    "              [--format FORMAT | --fields FIELD,... | --disk | --network | --kernel]\n"
    "              [--tree] [--raw-data] [--raw-list] [--help-formats] [--help-columns]\n"
    "              [--class CLASS [CLASS ...]] [--label LABEL [LABEL ...]]\n"
    "              [--tags TAG [TAG ...]] [--exclude-tags TAG [TAG ...]] [--running]\n"
    "              [--paused] [--halted] [--template-source TEMPLATE [TEMPLATE ...]]\n"
    "              [--netvm-is NETVM [NETVM ...]] [--internal <y|n>] [--servicevm <y|n>]\n"
    "              [--pending-update] [--features FEATURE=VALUE [FEATURE=VALUE ...]]\n"
    "              [--prefs PREFERENCE=VALUE [PREFERENCE=VALUE ...]] [--sort COLUMN]\n"
    "              [--reverse] [--ignore-case] [--spinner] [--no-spinner]\n"
    "              [VMNAME ...]",
    "\nList Qubes domains and their parameters.\n\n"
    "positional arguments:\n  VMNAME                zero or more domain names\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --all                 perform the action on all qubes\n"
    "  --exclude EXCLUDE     exclude the qube from --all\n\n"
    "formatting options:\n"
    "  --format FORMAT, -o FORMAT  preset format\n"
    "  --fields FIELD,..., -O FIELD,...  user specified format (see available columns below)\n"
    "  --tree, -t            sort domain list as network tree\n"
    "  --raw-data            Display specify data of specified VMs. Intended for bash-parsing.\n"
    "  --raw-list            Same as --raw-data --fields=name\n"
    "  --disk, -d            Same as --format=disk\n"
    "  --network, -n         Same as --format=network\n"
    "  --kernel, -k          Same as --format=kernel\n"
    "  --help-formats        list all available formats with their definitions and exit\n"
    "  --help-columns        list all available columns with short descriptions and exit\n\n"
    "filtering options:\n"
    "  --class CLASS [CLASS ...]  show only qubes of specific class(es)\n"
    "  --label LABEL [LABEL ...]  show only qubes with specific label(s)\n"
    "  --tags TAG [TAG ...]  show only qubes having specific tag(s)\n"
    "  --exclude-tags TAG [TAG ...]  exclude qubes having specific tag(s)\n"
    "  --running             show running VMs\n"
    "  --paused              show paused VMs\n"
    "  --halted              show halted VMs\n"
    "  --template-source TEMPLATE [TEMPLATE ...]  filter results to the qubes based on the TEMPLATE\n"
    "  --netvm-is NETVM [NETVM ...]  filter results to the qubes connecting via NETVM\n"
    "  --internal <y|n>      show only internal qubes or option to hide them\n"
    "  --servicevm <y|n>     show only ServiceVMs or option to hide them\n"
    "  --pending-update      filter results to qubes pending for update\n"
    "  --features FEATURE=VALUE [FEATURE=VALUE ...]  qubes that match all features\n"
    "  --prefs PREFERENCE=VALUE [PREFERENCE=VALUE ...]  qubes that match all preferences\n\n"
    "sorting options:\n"
    "  --sort COLUMN         sort based on provided column rather than NAME\n"
    "  --reverse             reverse sort\n"
    "  --ignore-case         ignore case distinctions when sorting\n\n"
    "available formats (see --help-formats):\n  disk, full, kernel, network, prefs, simple\n",
};

struct format {
    const char *name;
    const char *cols;
};
static const struct format formats[] = {
    { "disk", "name,state,disk,priv-curr,priv-max,priv-used,root-curr,root-max,root-used" },
    { "full", "name,state,class,label,qid,xid,uuid" },
    { "kernel", "name,state,class,template,kernel,kernelopts" },
    { "network", "name,state,netvm,ip,ipback,gateway" },
    { "prefs", "name,label,template,netvm,vcpus,initialmem,maxmem,virt_mode" },
    { "simple", "name,state,class,label,template,netvm" },
};

struct special {
    const char *head;
    const char *doc;
};
static const struct special specials[] = {
    { "CLASS", "Class of the qube." },
    { "DISK", "Total disk utilisation." },
    { "FLAGS", "Some fancy flags that describe general status of the domain." },
    { "GATEWAY", "Network gateway." },
    { "MEMORY", "Memory currently used by VM" },
    { "PRIV-CURR", "Disk utilisation by private image (/home, /usr/local)." },
    { "PRIV-MAX", "Maximum available space for private image." },
    { "PRIV-POOL", "Storage pool of private volume." },
    { "PRIV-USED", "Disk utilisation by private image as a percentage of available space." },
    { "ROOT-CURR", "Disk utilisation by root image (/usr, /lib, /etc, ...)." },
    { "ROOT-MAX", "Maximum available space for root image." },
    { "ROOT-POOL", "Storage pool of root volume." },
    { "ROOT-USED", "Disk utilisation by root image as a percentage of available space." },
    { "STATE", "Current power state." },
};

/* Columns whose values sort as numbers (Qubes' SORT_NUMERIC). */
static const char *const numeric_cols[] = {
    "MEMORY", "DISK", "PRIV-CURR", "PRIV-MAX", "ROOT-CURR", "XID", "ROOT-MAX", "MAXMEM",
    "QREXEC-TIMEOUT", "SHUTDOWN-TIMEOUT", "VCPUS", "PRIV-USED", "ROOT-USED", NULL,
};

struct column {
    char *head;   /* NAME, STATE, VIRT-MODE... */
    char *attr;   /* property name for property columns */
    bool special;
};

static void help_formats(void)
{
    puts("Available formats:");
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
        printf("  %-7s  %s\n", formats[i].name, str_upper(formats[i].cols));
    puts("");
    exit(0);
}

static void help_columns(void)
{
    puts("Available columns:");
    for (size_t i = 0; i < sizeof specials / sizeof specials[0]; i++)
        printf("  %-9s  %s\n", specials[i].head, specials[i].doc);
    puts("\nAdditionally any VM property may be used as a column, see qvm-prefs "
         "--help-properties for available values\n");
    exit(0);
}

static char *head_of(const char *col)
{
    char *h = str_upper(col);
    for (char *p = h; *p; p++)
        if (*p == '_')
            *p = '-';
    return h;
}

static void make_columns(const char *spec, struct column **out, size_t *n)
{
    struct strv parts = { 0 };
    char *copy = qt_strdup(spec), *save = NULL;
    for (char *p = strtok_r(copy, ",", &save); p; p = strtok_r(NULL, ",", &save)) {
        while (*p == ' ')
            p++;
        size_t len = strlen(p);
        while (len && p[len - 1] == ' ')
            p[--len] = '\0';
        strv_push(&parts, p);
    }
    *out = qt_alloc((parts.n + 1) * sizeof **out);
    *n = parts.n;
    for (size_t i = 0; i < parts.n; i++) {
        struct column *c = &(*out)[i];
        c->head = head_of(parts.v[i]);
        c->attr = str_lower(parts.v[i]);
        for (size_t s = 0; s < sizeof specials / sizeof specials[0]; s++)
            if (!strcmp(c->head, specials[s].head))
                c->special = true;
    }
}

/* ---- values ---- */

static const struct prop *vm_prop(const struct vm *vm, const char *name)
{
    return props_find(props_all(vm->name), name);
}

/* Python's str() of a property value; NULL for None / missing attribute. */
static const char *prop_str(const struct vm *vm, const char *name)
{
    if (!strcmp(name, "name"))
        return vm->name;
    if (!strcmp(name, "klass"))
        return vm->klass;
    const struct prop *p = vm_prop(vm, name);
    if (!p || prop_is_none(p) || prop_is_unset(p))
        return NULL;
    return p->value;
}

static bool prop_true(const struct vm *vm, const char *name)
{
    const char *v = prop_str(vm, name);
    return v && !strcmp(v, "True");
}

struct volinfo {
    bool present;
    unsigned long long size, usage;
    char *pool;
};

static struct volinfo ls_volume(const struct vm *vm, const char *volume)
{
    struct volinfo vi = { 0 };
    struct reply r;
    api_call(&r, vm->name, "admin.vm.volume.Info", volume, NULL, 0);
    if (!r.ok)
        return vi;
    vi.present = true;
    struct strv lines = { 0 };
    strv_split_lines(&lines, r.body);
    for (size_t i = 0; i < lines.n; i++) {
        char *eq = strchr(lines.v[i], '=');
        if (!eq)
            continue;
        *eq = '\0';
        if (!strcmp(lines.v[i], "size"))
            str_to_u64(eq + 1, &vi.size);
        else if (!strcmp(lines.v[i], "usage"))
            str_to_u64(eq + 1, &vi.usage);
        else if (!strcmp(lines.v[i], "pool"))
            vi.pool = eq + 1;
    }
    return vi;
}

static char flag_power(const struct vm *vm)
{
    char *s = str_lower(vm_state_listed(vm));
    if (!strcmp(s, "unknown"))
        return '?';
    static const char *const known[] = { "running", "transient", "paused", "suspended",
                                         "halting", "dying", "crashed", NULL };
    for (size_t i = 0; known[i]; i++)
        if (!strcmp(s, known[i]))
            return s[0];
    return '-';
}

static char *flags_of(const struct vm *vm)
{
    char f[9];
    static const struct { const char *k; char c; } types[] = {
        { "TemplateVM", 't' }, { "AppVM", 'a' }, { "StandaloneVM", 's' }, { "DispVM", 'd' },
    };
    f[0] = '-';
    if (!strcmp(vm->klass, "AdminVM")) {
        f[0] = '0';
    } else {
        for (size_t i = 0; i < 4; i++)
            if (!strcmp(vm->klass, types[i].k)) {
                const char *vmode = prop_str(vm, "virt_mode");
                f[0] = vmode && !strcmp(vmode, "hvm") ? (char)(types[i].c - 32) : types[i].c;
            }
    }
    f[1] = flag_power(vm);
    f[2] = prop_true(vm, "updateable") ? 'U' : '-';
    f[3] = prop_true(vm, "provides_network") ? 'N' : '-';
    f[4] = prop_true(vm, "installed_by_rpm") ? 'R' : '-';
    f[5] = prop_true(vm, "internal") ? 'i' : '-';
    f[6] = prop_true(vm, "debug") ? 'D' : '-';
    f[7] = prop_true(vm, "autostart") ? 'A' : '-';
    f[8] = '\0';
    return qt_strdup(f);
}

static const char *special_value(const struct vm *vm, const char *head)
{
    if (!strcmp(head, "STATE"))
        return vm_state_listed(vm);
    if (!strcmp(head, "CLASS"))
        return vm->klass;
    if (!strcmp(head, "FLAGS"))
        return flags_of(vm);
    if (!strcmp(head, "GATEWAY")) {
        const char *netvm = prop_str(vm, "netvm");
        const struct vm *nv = netvm ? vm_find(netvm) : NULL;
        return nv ? prop_str(nv, "gateway") : NULL;
    }
    if (!strcmp(head, "MEMORY")) {
        if (!vm_is_running(vm))
            return NULL;
        struct reply r;
        api_call(&r, vm->name, "admin.vm.CurrentState", NULL, NULL, 0);
        if (!r.ok)
            return NULL;
        char *save = NULL;
        for (char *kv = strtok_r(r.body, " \n", &save); kv; kv = strtok_r(NULL, " \n", &save)) {
            unsigned long long mem;
            if (str_startswith(kv, "mem=") && str_to_u64(kv + 4, &mem))
                return qt_printf("%llu", mem / 1024);
        }
        return NULL;
    }
    if (!strcmp(head, "DISK")) {
        struct reply r;
        api_call(&r, vm->name, "admin.vm.volume.List", NULL, NULL, 0);
        if (!r.ok)
            return NULL;
        struct strv vols = { 0 };
        strv_split_lines(&vols, r.body);
        unsigned long long total = 0;
        for (size_t i = 0; i < vols.n; i++)
            total += ls_volume(vm, vols.v[i]).usage;
        return qt_printf("%llu", total / 1024 / 1024);
    }
    const char *volume = str_startswith(head, "PRIV-") ? "private" : "root";
    struct volinfo vi = ls_volume(vm, volume);
    const char *what = head + 5;
    if (!strcmp(what, "POOL"))
        return vi.present ? vi.pool : "-";
    unsigned long long size = vi.size / 1024 / 1024, usage = vi.usage / 1024 / 1024;
    if (!strcmp(what, "CURR"))
        return qt_printf("%llu", usage);
    if (!strcmp(what, "MAX"))
        return qt_printf("%llu", size);
    /* USED: Qubes prints a bare 0 when the size is unknown, else "N%". */
    if (!size)
        return "0";
    return qt_printf("%llu%%", usage * 100 / size);
}

static const char *cell(const struct vm *vm, const struct column *c)
{
    const char *v = c->special ? special_value(vm, c->head) : prop_str(vm, c->attr);
    return v && *v ? v : "-";
}

/* ---- filters ---- */

static bool has_any_tag(const struct vm *vm, const struct strv *tags)
{
    struct reply r;
    api_call(&r, vm->name, "admin.vm.tag.List", NULL, NULL, 0);
    if (!r.ok)
        return false;
    struct strv have = { 0 };
    strv_split_lines(&have, r.body);
    for (size_t i = 0; i < tags->n; i++)
        if (strv_contains(&have, tags->v[i]))
            return true;
    return false;
}

/* features.get(): the value, or NULL when the feature is not set. */
static const char *feature_get(const struct vm *vm, const char *name)
{
    struct reply r;
    api_call(&r, vm->name, "admin.vm.feature.Get", name, NULL, 0);
    return r.ok ? r.body : NULL;
}

static bool feature_true(const struct vm *vm, const char *name)
{
    const char *v = feature_get(vm, name);
    return v && (!strcmp(v, "1") || !strcmp(v, "true") || !strcmp(v, "True"));
}

static void split_kv(const char *opt, const char *arg, char **k, char **v)
{
    const char *eq = strchr(arg, '=');
    if (!eq || eq == arg)
        cli_usage_error("Invalid argument: --%s %s", opt, arg);
    *k = qt_strndup(arg, (size_t)(eq - arg));
    *v = qt_strdup(eq + 1);
}

/* Filter value conventions: empty means None (unset), '' or "" means empty. */
static const char *filter_value(const char *v)
{
    if (!*v)
        return NULL;
    if (!strcmp(v, "''") || !strcmp(v, "\"\""))
        return "";
    return v;
}

static bool str_eq_null(const char *a, const char *b)
{
    if (!a || !b)
        return a == b;
    return !strcmp(a, b);
}

static bool yes(const char *v)
{
    return !strcmp(v, "y") || !strcmp(v, "yes");
}

static void check_yn(const char *opt, const char *v)
{
    if (v && !yes(v) && strcmp(v, "n") && strcmp(v, "no"))
        cli_usage_error("argument --%s: invalid choice: %s (choose from 'y', 'yes', 'n', 'no')",
                        opt, py_repr(v));
}

/* Whether a column or filter reads the qubes' properties (admin.vm.property.GetAll):
 * every property column (name and class come from the list), FLAGS and GATEWAY, and the
 * --label, --template-source, --netvm-is and --prefs filters (keep()). */
static bool reads_props(const struct column *cols, size_t ncols, const struct cli_args *a)
{
    for (size_t c = 0; c < ncols; c++) {
        const struct column *col = &cols[c];
        if (col->special ? !strcmp(col->head, "FLAGS") || !strcmp(col->head, "GATEWAY")
                         : strcmp(col->attr, "name") && strcmp(col->attr, "klass"))
            return true;
    }
    return cli_has(a, O_LABEL) || cli_has(a, O_TEMPLATE_SOURCE) || cli_has(a, O_NETVM_IS) || cli_has(a, O_PREFS);
}

static bool keep(const struct vm *vm, const struct cli_args *a)
{
    struct strv l = { 0 };
    cli_get_all(a, O_CLASS, &l);
    if (l.n && !strv_contains(&l, vm->klass))
        return false;
    l = (struct strv){ 0 };
    cli_get_all(a, O_LABEL, &l);
    if (l.n) {
        const char *label = prop_str(vm, "label");
        if (!label || !strv_contains(&l, label))
            return false;
    }
    l = (struct strv){ 0 };
    cli_get_all(a, O_TAGS, &l);
    if (l.n && !has_any_tag(vm, &l))
        return false;
    l = (struct strv){ 0 };
    cli_get_all(a, O_EXCLUDE_TAGS, &l);
    if (l.n && has_any_tag(vm, &l))
        return false;
    l = (struct strv){ 0 };
    cli_get_all(a, O_TEMPLATE_SOURCE, &l);
    if (l.n) {
        const char *t = prop_str(vm, "template");
        /* A qube without a template compares as "" in Qubes' filter. */
        if (!strv_contains(&l, t ? t : ""))
            return false;
    }
    l = (struct strv){ 0 };
    cli_get_all(a, O_NETVM_IS, &l);
    if (l.n) {
        const char *n = prop_str(vm, "netvm");
        if (!n || !strv_contains(&l, n))
            return false;
    }
    const char *internal = cli_get(a, O_INTERNAL), *servicevm = cli_get(a, O_SERVICEVM);
    if (internal && yes(internal) != feature_true(vm, "internal"))
        return false;
    if (servicevm && yes(servicevm) != feature_true(vm, "servicevm"))
        return false;
    if (cli_has(a, O_PENDING_UPDATE)) {
        const char *v = feature_get(vm, "updates-available");
        if (!v || !*v)
            return false;
    }
    l = (struct strv){ 0 };
    cli_get_all(a, O_FEATURES, &l);
    for (size_t i = 0; i < l.n; i++) {
        char *k, *v;
        split_kv("features", l.v[i], &k, &v);
        if (!str_eq_null(feature_get(vm, k), filter_value(v)))
            return false;
    }
    l = (struct strv){ 0 };
    cli_get_all(a, O_PREFS, &l);
    for (size_t i = 0; i < l.n; i++) {
        char *k, *v;
        split_kv("prefs", l.v[i], &k, &v);
        const struct prop *p = strcmp(k, "name") ? vm_prop(vm, k) : NULL;
        /* str(getattr(vm, key, None)): a missing or unset value reads "None". */
        const char *have = !strcmp(k, "name") ? vm->name
                           : (!p || prop_is_none(p) || prop_is_unset(p)) ? "None" : p->value;
        const char *want = filter_value(v);
        if (strcmp(have, want ? want : "None"))
            return false;
    }
    bool running = cli_has(a, O_RUNNING), paused = cli_has(a, O_PAUSED),
         halted = cli_has(a, O_HALTED);
    if (running || paused || halted) {
        char *s = str_lower(vm_state_listed(vm));
        if (!((running && !strcmp(s, "running")) || (paused && !strcmp(s, "paused")) ||
              (halted && !strcmp(s, "halted"))))
            return false;
    }
    return true;
}

/* ---- network tree ---- */

struct tree_item {
    const struct vm *vm;
    int level;
};

static bool in_sel(const struct vmsel *s, const struct vm *vm)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == vm)
            return true;
    return false;
}

static void tree_children(const struct vm *parent, int level, const struct vmsel *doms,
                          struct tree_item *out, size_t *n, size_t max)
{
    const struct vm *all;
    size_t na = vm_list(&all);
    for (size_t i = 0; i < na && *n < max; i++) {
        const struct vm *child = &all[i];
        const char *netvm = strcmp(child->klass, "AdminVM") ? prop_str(child, "netvm") : NULL;
        if (!netvm || strcmp(netvm, parent->name) || !in_sel(doms, child))
            continue;
        out[(*n)++] = (struct tree_item){ child, level };
        if (prop_true(child, "provides_network") && level < 64)
            tree_children(child, level + 1, doms, out, n, max);
    }
}

static size_t sort_to_tree(const struct vmsel *doms, struct tree_item *out, size_t max)
{
    size_t n = 0;
    bool *used = qt_alloc((doms->n + 1) * sizeof *used);
    for (size_t i = 0; i < doms->n; i++) {
        const struct vm *vm = doms->v[i];
        const char *netvm = prop_str(vm, "netvm");
        if (!strcmp(vm->klass, "AdminVM") || (!netvm && !prop_true(vm, "provides_network"))) {
            out[n++] = (struct tree_item){ vm, 0 };
            used[i] = true;
        }
    }
    for (size_t i = 0; i < doms->n && n < max; i++) {
        const struct vm *vm = doms->v[i];
        if (used[i] || prop_str(vm, "netvm") || !prop_true(vm, "provides_network"))
            continue;
        out[n++] = (struct tree_item){ vm, 0 };
        tree_children(vm, 1, doms, out, &n, max);
    }
    return n;
}

/* ---- sorting ---- */

static size_t sort_col;
static bool sort_numeric, sort_icase;

static long numeric_key(const char *s)
{
    char *copy = qt_strdup(s);
    size_t len = strlen(copy);
    if (len && copy[len - 1] == '%')
        copy[len - 1] = '\0';
    long v;
    return str_to_long(copy, &v) ? v : 0;
}

static int cmp_rows(const void *a, const void *b)
{
    const char *x = (*(char ***)a)[sort_col], *y = (*(char ***)b)[sort_col];
    if (sort_numeric) {
        long p = numeric_key(x), q = numeric_key(y);
        return p < q ? -1 : p > q;
    }
    return sort_icase ? strcmp(str_upper(x), str_upper(y)) : strcmp(x, y);
}

/* qsort is not stable; Python's sort is. Decorate with the original index. */
struct srow {
    char **cells;
    size_t idx;
};
static bool sort_reverse;

static int cmp_srows(const void *a, const void *b)
{
    const struct srow *x = a, *y = b;
    int c = cmp_rows(&x->cells, &y->cells);
    if (sort_reverse)
        c = -c;
    if (c)
        return c;
    return x->idx < y->idx ? -1 : x->idx > y->idx;
}

int qvm_ls_main(int argc, char **argv)
{
    cli_init(&tool, ERR_PRINT);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    if (cli_has(&a, O_HELP_FORMATS))
        help_formats();
    if (cli_has(&a, O_HELP_COLUMNS))
        help_columns();
    check_yn("internal", cli_get(&a, O_INTERNAL));
    check_yn("servicevm", cli_get(&a, O_SERVICEVM));

    const char *format = "simple";
    int nfmt = 0;
    for (size_t i = 0; i < a.nopts; i++) {
        int id = a.opts[i].id;
        if (id == O_FORMAT || id == O_FIELDS || id == O_DISK || id == O_NETWORK || id == O_KERNEL) {
            if (nfmt++ && id != a.opts[i - 1].id)
                cli_usage_error("argument %s: not allowed with another format option",
                                a.opts[i].spelled);
        }
        if (id == O_FORMAT)
            format = a.opts[i].arg;
        else if (id == O_DISK)
            format = "disk";
        else if (id == O_NETWORK)
            format = "network";
        else if (id == O_KERNEL)
            format = "kernel";
    }
    const char *fields = cli_get(&a, O_FIELDS);
    if (!fields) {
        for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++)
            if (!strcmp(formats[i].name, format))
                fields = formats[i].cols;
        if (!fields)
            cli_usage_error("argument --format/-o: invalid choice: %s (choose from 'simple', "
                            "'network', 'kernel', 'full', 'prefs', 'disk')", py_repr(format));
    }
    bool raw = cli_has(&a, O_RAW_DATA);
    if (cli_has(&a, O_RAW_LIST)) {
        raw = true;
        fields = "name";
    }
    struct column *cols;
    size_t ncols;
    make_columns(fields, &cols, &ncols);

    struct strv exclude = { 0 };
    cli_get_all(&a, O_EXCLUDE, &exclude);
    bool all = cli_has(&a, O_ALL);
    if (all && a.pos.n)
        cli_usage_error("argument VMNAME: not allowed with argument --all");
    struct vmsel sel;
    if (all) {
        /* qvm-ls --all keeps the AdminVM (unlike other tools' --all). */
        memset(&sel, 0, sizeof sel);
        const struct vm *vl;
        size_t n = vm_list(&vl);
        for (size_t i = 0; i < n; i++)
            if (!strv_contains(&exclude, vl[i].name))
                vmsel_add(&sel, &vl[i]);
    } else if (a.pos.n) {
        vm_select(&a.pos, false, &exclude, &sel, NULL);
    } else {
        if (exclude.n)
            cli_usage_error("--exclude can only be used with --all");
        memset(&sel, 0, sizeof sel);
        const struct vm *vl;
        size_t n = vm_list(&vl);
        for (size_t i = 0; i < n; i++)
            vmsel_add(&sel, &vl[i]);
    }

    /* The qubes' properties, when a column or filter reads them, are fetched all at once
     * rather than in a round trip to bulkheadd per row. */
    if (reads_props(cols, ncols, &a))
        props_prefetch(sel.v, sel.n);

    /* Sorted by name, then filtered. */
    struct vmsel doms = { 0 };
    const struct vm *vl;
    size_t nall = vm_list(&vl);
    for (size_t i = 0; i < nall; i++)
        if (in_sel(&sel, &vl[i]) && keep(&vl[i], &a))
            vmsel_add(&doms, &vl[i]);

    if (raw) {
        for (size_t i = 0; i < doms.n; i++) {
            for (size_t c = 0; c < ncols; c++)
                printf("%s%s", c ? "|" : "", cell(doms.v[i], &cols[c]));
            putchar('\n');
        }
        return 0;
    }

    struct table t;
    table_init(&t, ncols);
    const char **row = qt_alloc((ncols + 1) * sizeof *row);
    for (size_t c = 0; c < ncols; c++)
        row[c] = cols[c].head;
    table_add(&t, row, ncols);
    if (cli_has(&a, O_TREE)) {
        struct tree_item *items = qt_alloc((doms.n * 4 + 1) * sizeof *items);
        size_t n = sort_to_tree(&doms, items, doms.n * 4);
        for (size_t i = 0; i < n; i++) {
            for (size_t c = 0; c < ncols; c++) {
                row[c] = cell(items[i].vm, &cols[c]);
                if (items[i].level > 0 && !strcmp(cols[c].head, "NAME")) {
                    char *pad = qt_alloc((size_t)items[i].level * 2 + 1);
                    for (int l = 1; l < items[i].level; l++)
                        strcat(pad, "  ");
                    row[c] = qt_printf("%s\u2514\u2500%s", pad, row[c]);
                }
            }
            table_add(&t, row, ncols);
        }
    } else {
        for (size_t i = 0; i < doms.n; i++) {
            for (size_t c = 0; c < ncols; c++)
                row[c] = cell(doms.v[i], &cols[c]);
            table_add(&t, row, ncols);
        }
        const char *sort = cli_get(&a, O_SORT);
        /* Qubes upper-cases --sort but does not turn '_' into '-'. */
        char *sort_head = str_upper(sort ? sort : "NAME");
        for (size_t c = 0; c < ncols; c++) {
            if (strcmp(cols[c].head, sort_head))
                continue;
            sort_col = c;
            sort_numeric = false;
            for (size_t k = 0; numeric_cols[k]; k++)
                if (!strcmp(numeric_cols[k], sort_head))
                    sort_numeric = true;
            sort_icase = cli_has(&a, O_IGNORE_CASE);
            sort_reverse = cli_has(&a, O_REVERSE);
            size_t nr = t.nrows - 1;
            struct srow *sr = qt_alloc((nr + 1) * sizeof *sr);
            for (size_t i = 0; i < nr; i++)
                sr[i] = (struct srow){ t.rows[i + 1], i };
            qsort(sr, nr, sizeof *sr, cmp_srows);
            for (size_t i = 0; i < nr; i++)
                t.rows[i + 1] = sr[i].cells;
            break;
        }
    }
    table_print(&t, stdout);
    return 0;
}
