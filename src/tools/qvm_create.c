/* qvm-create: create a new qube (admin.vm.Create.* / admin.vm.CreateInPool.*). */
#include "api.h"
#include "cli.h"
#include "clone.h"
#include "tools.h"
#include <stdio.h>
#include <string.h>

enum { O_CLASS = 1, O_STANDALONE, O_DISP, O_PROP, O_POOL, O_ONE_POOL, O_TEMPLATE, O_LABEL,
       O_HELP_CLASSES, O_ROOT_COPY, O_ROOT_MOVE, O_NO_ROOT };

/* -P has no long form (lng ""). */
static const struct cli_opt opts[] = {
    { "class", 'C', CLI_ARG, O_CLASS },
    { "standalone", 0, CLI_FLAG, O_STANDALONE },
    { "disp", 0, CLI_FLAG, O_DISP },
    { "property", 0, CLI_ARG, O_PROP },
    { "prop", 0, CLI_ARG, O_PROP },
    { "pool", 'p', CLI_ARG, O_POOL },
    { "", 'P', CLI_ARG, O_ONE_POOL },
    { "template", 't', CLI_ARG, O_TEMPLATE },
    { "label", 'l', CLI_ARG, O_LABEL },
    { "help-classes", 0, CLI_FLAG, O_HELP_CLASSES },
    { "root-copy-from", 'r', CLI_ARG, O_ROOT_COPY },
    { "root-move-from", 'R', CLI_ARG, O_ROOT_MOVE },
    { "no-root", 0, CLI_FLAG, O_NO_ROOT },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-create",
    "[--verbose] [--quiet] [--help] [--class CLS] [--standalone] [--disp]\n"
    "                  [--property NAME=VALUE] [--pool VOLUME_NAME=POOL_NAME] [-P POOL_NAME]\n"
    "                  [--template VALUE] [--label VALUE] [--help-classes]\n"
    "                  [--root-copy-from FILENAME | --root-move-from FILENAME] [VMNAME]",
    "\npositional arguments:\n"
    "  VMNAME                name of the domain to create\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n"
    "  --class CLS, -C CLS   specify the class of the new domain (default: AppVM)\n"
    "  --standalone          shortcut for --class StandaloneVM\n"
    "  --disp                alias for --class DispVM --label red\n"
    "  --property NAME=VALUE, --prop NAME=VALUE\n"
    "                        set domain's property, like \"internal\", \"memory\" or \"vcpus\"\n"
    "  --pool VOLUME_NAME=POOL_NAME, -p VOLUME_NAME=POOL_NAME\n"
    "                        specify the pool to use for a volume\n"
    "  -P POOL_NAME          change all volume pools to specified pool\n"
    "  --template VALUE, -t VALUE\n"
    "                        specify the TemplateVM to use\n"
    "  --label VALUE, -l VALUE\n"
    "                        specify the label to use for the new domain (e.g. red, yellow,\n"
    "                        green, ...)\n"
    "  --help-classes        List available classes and exit\n"
    "  --root-copy-from FILENAME, -r FILENAME\n"
    "                        use provided root.img instead of default/empty one (file will\n"
    "                        be COPIED)\n"
    "  --root-move-from FILENAME, -R FILENAME\n"
    "                        use provided root.img instead of default/empty one (file will\n"
    "                        be MOVED)\n",
};

struct kvlist {
    struct strv keys, vals;
};

static void kv_set(struct kvlist *l, const char *k, const char *v)
{
    for (size_t i = 0; i < l->keys.n; i++)
        if (!strcmp(l->keys.v[i], k)) {
            l->vals.v[i] = qt_strdup(v);
            return;
        }
    strv_push(&l->keys, k);
    strv_push(&l->vals, v);
}

static const char *kv_find(const struct kvlist *l, const char *k)
{
    for (size_t i = 0; i < l->keys.n; i++)
        if (!strcmp(l->keys.v[i], k))
            return l->vals.v[i];
    return NULL;
}

/* A label given by name, or by index as Qubes' get_label() also accepts. */
static const char *resolve_label(const char *want)
{
    struct strv labels = { 0 };
    labels_list(&labels);
    if (strv_contains(&labels, want))
        return want;
    unsigned long long idx;
    if (str_to_u64(want, &idx)) {
        for (size_t i = 0; i < labels.n; i++) {
            struct reply r;
            api_call(&r, "dom0", "admin.label.Index", labels.v[i], NULL, 0);
            unsigned long long have;
            if (r.ok && str_to_u64(r.body, &have) && have == idx)
                return labels.v[i];
        }
    }
    cli_usage_error("no such label: %s; available: %s", py_repr(want), strv_join(&labels, ", "));
}

int qvm_create_main(int argc, char **argv)
{
    cli_init(&tool, ERR_RUNTIME);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    if (cli_has(&a, O_HELP_CLASSES)) {
        struct strv classes = { 0 };
        strv_split_lines(&classes, api_must("dom0", "admin.vmclass.List", NULL, NULL, 0));
        strv_sort(&classes);
        for (size_t i = 0; i < classes.n; i++)
            puts(classes.v[i]);
        return 0;
    }
    cli_at_most(&a.pos, 1);
    if (cli_has(&a, O_ROOT_COPY) && cli_has(&a, O_ROOT_MOVE))
        cli_usage_error("argument --root-move-from/-R: not allowed with argument "
                        "--root-copy-from/-r");

    /* Properties in the order given; -t/-l/VMNAME are properties too, as in Qubes. */
    struct kvlist props = { 0 };
    for (size_t i = 0; i < a.nopts; i++) {
        const struct cli_optval *o = &a.opts[i];
        if (o->id == O_PROP) {
            const char *eq = strchr(o->arg, '=');
            if (!eq)
                cli_usage_error("invalid property token: %s", py_repr(o->arg));
            kv_set(&props, qt_strndup(o->arg, (size_t)(eq - o->arg)), eq + 1);
        } else if (o->id == O_TEMPLATE) {
            kv_set(&props, "template", o->arg);
        } else if (o->id == O_LABEL) {
            kv_set(&props, "label", o->arg);
        }
    }
    if (a.pos.n)
        kv_set(&props, "name", a.pos.v[0]);

    struct strv pools = { 0 }, pool_args = { 0 };
    cli_get_all(&a, O_POOL, &pool_args);
    for (size_t i = 0; i < pool_args.n; i++) {
        const char *eq = strchr(pool_args.v[i], '=');
        if (!eq || strchr(eq + 1, '='))
            cli_usage_error("Pool argument must be of form: -P volume_name=pool_name");
        strv_push(&pools, pool_args.v[i]);
    }
    strv_sort(&pools);
    const char *pool = cli_get(&a, O_ONE_POOL);

    const char *cls = cli_get(&a, O_CLASS);
    if (!cls)
        cls = "AppVM";
    if (cli_has(&a, O_DISP)) {
        if (!kv_find(&props, "label"))
            kv_set(&props, "label", "red");
        cls = "DispVM";
    }
    if (cli_has(&a, O_STANDALONE))
        cls = "StandaloneVM";
    if (!kv_find(&props, "label"))
        cli_usage_error("--label option is mandatory");
    if (!kv_find(&props, "name"))
        cli_usage_error("VMNAME is mandatory");
    if (cli_has(&a, O_ROOT_COPY) || cli_has(&a, O_ROOT_MOVE)) {
        if (!strcmp(cls, "AppVM") || !strcmp(cls, "DispVM"))
            cli_usage_error("--root-copy-from/--root-move-from used but this qube does not "
                            "have own 'root' volume (uses template's one)");
        cli_runtime_error(1, "--root-copy-from/--root-move-from: importing volume data is not "
                             "supported by Bulkhead's Admin API yet");
    }
    if (pool && pools.n)
        cli_runtime_error(1, "only one of pool= and pools= can be used");

    const char *name = kv_find(&props, "name");
    const char *label = resolve_label(kv_find(&props, "label"));
    const char *template = kv_find(&props, "template");

    if (!strcmp(cls, "StandaloneVM") && template) {
        /* A "template-based" standalone is a copy of the template (without its private
         * volume), as in Qubes. */
        struct clone_opts co = { .new_class = cls, .pool = pool, .pools = pools };
        strv_push(&co.ignore_volumes, "private");
        const char *why;
        if (!clone_vm(template, name, &co, &why)) {
            cli_log_error("app", "Error creating VM: %s", why);
            return 1;
        }
    } else {
        const char *prefix;
        char *payload = create_payload(name, label, pool, &pools, &prefix);
        struct reply r;
        api_call(&r, "dom0", qt_printf("%s%s", prefix, cls), template, payload, strlen(payload));
        if (!r.ok) {
            cli_log_error("app", "Error creating VM: %s", r.exc_msg);
            return 1;
        }
    }
    int rc = 0;
    for (size_t i = 0; i < props.keys.n; i++) {
        const char *k = props.keys.v[i];
        if (!strcmp(k, "name") || !strcmp(k, "template"))
            continue;
        const char *v = props.vals.v[i];
        if (!strcmp(k, "label")) {
            /* Already applied at creation; a standalone clone takes its source's label. */
            if (!(!strcmp(cls, "StandaloneVM") && template))
                continue;
            v = label;
        }
        struct reply r;
        api_call(&r, name, "admin.vm.property.Set", k, v, strlen(v));
        if (!r.ok) {
            cli_log_error("app", "Error setting property %s (but VM created): %s", k, r.exc_msg);
            rc = 2;
        }
    }
    return rc;
}
