#include "prefs.h"
#include "api.h"
#include <stdio.h>
#include <string.h>

const struct cli_opt prefs_opts[] = {
    { "help-properties", 0, CLI_FLAG, PO_HELP_PROPERTIES },
    { "hide-default", 0, CLI_FLAG, PO_HIDE_DEFAULT },
    { "get", 'g', CLI_FLAG, PO_GET },
    { "set", 's', CLI_FLAG, PO_SET },
    { "default", 'D', CLI_FLAG, PO_DEFAULT },
    /* Older Qubes releases and qvm-features spell it these ways. */
    { "delete", 0, CLI_FLAG, PO_DEFAULT },
    { "unset", 0, CLI_FLAG, PO_DEFAULT },
    { NULL, 0, 0, 0 },
};

static const char *method(const char *vm, const char *op)
{
    return qt_printf("%s%s", vm ? "admin.vm.property." : "admin.property.", op);
}

static const char *dest(const char *vm)
{
    return vm ? vm : "dom0";
}

static void property_list(const char *vm, struct strv *out)
{
    strv_split_lines(out, api_must(dest(vm), method(vm, "List"), NULL, NULL, 0));
}

/* Python str() of a value as qvm-prefs prints it in listings (None for empty vm/label). */
static const char *listing_value(const struct prop *p)
{
    if (prop_is_none(p))
        return "None";
    return p->value;
}

static void help_properties(const char *vm)
{
    struct strv names = { 0 };
    property_list(vm, &names);
    strv_sort(&names);
    size_t width = 0;
    for (size_t i = 0; i < names.n; i++)
        if (strlen(names.v[i]) > width)
            width = strlen(names.v[i]);
    for (size_t i = 0; i < names.n; i++) {
        struct reply r;
        api_call(&r, dest(vm), method(vm, "Help"), names.v[i], NULL, 0);
        const char *help = r.ok ? r.body : "";
        /* One line per property; long help texts continue on indented lines. */
        printf("  %-*s  ", (int)width, names.v[i]);
        size_t col = width + 4;
        for (const char *w = help; *w;) {
            while (*w == ' ' || *w == '\n')
                w++;
            size_t len = strcspn(w, " \n");
            if (!len)
                break;
            if (col + len > 80 && col > width + 4) {
                printf("\n%*s", (int)(width + 6), "");
                col = width + 6;
            } else if (col > width + 4) {
                putchar(' ');
                col++;
            }
            printf("%.*s", (int)len, w);
            col += len;
            w += len;
        }
        putchar('\n');
    }
}

static int list_all(const char *vm, bool hide_default)
{
    struct strv names = { 0 };
    property_list(vm, &names);
    strv_sort(&names);
    const struct props *ps = props_all(vm);
    size_t width = 0;
    for (size_t i = 0; i < names.n; i++)
        if (strlen(names.v[i]) > width)
            width = strlen(names.v[i]);
    for (size_t i = 0; i < names.n; i++) {
        const struct prop *p = props_find(ps, names.v[i]);
        if (!p || prop_is_unset(p)) {
            printf("%-*s  U\n", (int)width, names.v[i]);
            continue;
        }
        if (!p->is_default)
            printf("%-*s  -  %s\n", (int)width, names.v[i], listing_value(p));
        else if (!hide_default)
            printf("%-*s  D  %s\n", (int)width, names.v[i], listing_value(p));
    }
    return 0;
}

static char *normalise_name(const char *name)
{
    char *n = str_lower(name);
    for (char *p = n; *p; p++)
        if (*p == '-')
            *p = '_';
    return n;
}

int prefs_run(const char *vm, const struct cli_args *a, const struct strv *pos)
{
    if (cli_has(a, PO_HELP_PROPERTIES)) {
        help_properties(vm);
        return 0;
    }
    if (pos->n == 0)
        return list_all(vm, cli_has(a, PO_HIDE_DEFAULT));
    cli_at_most(pos, 2);
    char *prop = normalise_name(pos->v[0]);
    struct reply r;
    if (pos->n == 2) {
        const char *value = pos->v[1];
        static const char *const vm_props[] = { "default_dispvm", "netvm", "template",
                                                "guivm", "audiovm", NULL };
        if (!strcmp(str_lower(value), "none"))
            for (size_t i = 0; vm_props[i]; i++)
                if (!strcmp(prop, vm_props[i]))
                    value = "";
        api_call(&r, dest(vm), method(vm, "Set"), prop, value, strlen(value));
        if (exc_is_attrerror(&r))
            cli_usage_error("no such property: %s", py_repr(prop));
        if (!r.ok)
            cli_runtime_error(1, "%s", r.exc_msg);
        return 0;
    }
    if (cli_has(a, PO_DEFAULT)) {
        api_call(&r, dest(vm), method(vm, "Reset"), prop, NULL, 0);
        if (exc_is_attrerror(&r))
            cli_usage_error("no such property: %s", py_repr(prop));
        if (!r.ok)
            cli_runtime_error(1, "%s", r.exc_msg);
        return 0;
    }
    api_call(&r, dest(vm), method(vm, "Get"), prop, NULL, 0);
    if (exc_is_attrerror(&r))
        cli_usage_error("no such property: %s", py_repr(prop));
    if (!r.ok)
        cli_runtime_error(1, "%s", r.exc_msg);
    struct prop p;
    if (!prop_parse(prop, r.body, &p))
        cli_runtime_error(1, "Invalid response format");
    /* An int/bool without a value is AttributeError in Qubes' client. */
    if (prop_is_unset(&p))
        cli_usage_error("no such property: %s", py_repr(prop));
    if (!prop_is_none(&p))
        printf("%s\n", p.value);
    return 0;
}
