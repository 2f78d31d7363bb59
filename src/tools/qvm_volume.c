/* qvm-volume: list qubes' volumes, show one (info), change its settings (config),
 * resize it and revert it to a snapshot. */
#include "api.h"
#include "cli.h"
#include "sizes.h"
#include "table.h"
#include "tools.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

enum { O_POOL = 1, O_FULL, O_ALL, O_EXCLUDE, O_FORCE, O_SIZE, O_NO_RESIZE };

static const struct cli_opt opts[] = {
    { "pool", 'p', CLI_ARG, O_POOL },
    { "full", 0, CLI_FLAG, O_FULL },
    { "all", 0, CLI_FLAG, O_ALL },
    { "exclude", 0, CLI_ARG, O_EXCLUDE },
    { "force", 'f', CLI_FLAG, O_FORCE },
    { "size", 0, CLI_ARG, O_SIZE },
    { "no-resize", 0, CLI_FLAG, O_NO_RESIZE },
    { NULL, 0, 0, 0 },
};

static const struct cli_tool tool = {
    "qvm-volume",
    "[--verbose] [--quiet] [--help]\n"
    "                  {info,i,config,c,set,s,resize,extend,list,ls,l,revert,rv,r,import} ...",
    "\nQubes volume management\n\n"
    "options:\n"
    "  --verbose, -v         increase verbosity\n"
    "  --quiet, -q           decrease verbosity\n"
    "  --help, -h            show this help message and exit\n\n"
    "commands:\n"
    "  For more information see qvm-volume command -h\n\n"
    "    info (i)            info about volume: info VM:VOLUME [PROPERTY]\n"
    "    config (c,set,s)    set config option for a volume: config VM:VOLUME PROPERTY VALUE\n"
    "    resize (extend)     resize volume for domain: resize [-f] VM:VOLUME SIZE\n"
    "    list (ls,l)         list storage volumes: list [-p POOL] [--full] [--all | VMNAME...]\n"
    "    revert (rv,r)       revert volume to previous revision: revert VM:VOLUME [REVISION]\n"
    "    import              import data into a volume: import [--size SIZE | --no-resize] VM:VOLUME PATH|-\n",
};

static bool cmd_is(const char *c, const char *const *names)
{
    for (; *names; names++)
        if (!strcmp(c, *names))
            return true;
    return false;
}

static void need_args(const struct strv *pos, size_t min, size_t max, const char *names)
{
    if (pos->n < min)
        cli_usage_error("the following arguments are required: %s", names);
    cli_at_most(pos, max);
}

/* VM:VOLUME as Qubes' VMVolumeAction resolves it. */
static void vm_volume(const char *spec, const char **vm, const char **vol)
{
    const char *colon = strchr(spec, ':');
    if (!colon || strchr(colon + 1, ':'))
        cli_usage_error("expected a vm & volume combination like foo:bar");
    *vm = qt_strndup(spec, (size_t)(colon - spec));
    *vol = colon + 1;
    if (!vm_find(*vm))
        cli_runtime_error(1, "no vm %s", py_repr(*vm));
    struct strv vols = { 0 };
    struct reply err;
    if (!vm_volumes(*vm, &vols, &err))
        cli_fail("%s", err.exc_msg);
    if (!strv_contains(&vols, *vol))
        cli_runtime_error(1, "vm %s has no volume %s", py_repr(*vm), py_repr(*vol));
}

static void revisions(const char *vm, const char *vol, struct strv *out)
{
    strv_split_lines(out, api_must(vm, "admin.vm.volume.ListSnapshots", vol, NULL, 0));
}

static int do_info(const struct strv *pos)
{
    need_args(pos, 2, 3, "VM:VOLUME");
    const char *vm, *vol;
    vm_volume(pos->v[1], &vm, &vol);
    struct kv info;
    struct reply err;
    if (!volume_info(vm, vol, &info, &err))
        cli_fail("%s", err.exc_msg);
    static const char *const items[] = { "pool", "vid", "rw", "source", "save_on_stop",
                                         "snap_on_start", "size", "usage", "revisions_to_keep",
                                         "ephemeral", "is_outdated", NULL };
    if (pos->n == 3) {
        const char *p = pos->v[2];
        if (!strcmp(p, "revisions")) {
            struct strv revs = { 0 };
            revisions(vm, vol, &revs);
            for (size_t i = 0; i < revs.n; i++)
                puts(revs.v[i]);
            return 0;
        }
        for (size_t i = 0; items[i]; i++)
            if (!strcmp(items[i], p)) {
                const char *v = kv_get(&info, p);
                puts(v ? v : "");
                return 0;
            }
        cli_fail("No such property: %s", p);
    }
    struct table t;
    table_init(&t, 2);
    for (size_t i = 0; items[i]; i++) {
        const char *v = kv_get(&info, items[i]);
        const char *row[2] = { items[i], v ? v : "" };
        table_add(&t, row, 2);
    }
    table_print(&t, stdout);
    struct strv revs = { 0 };
    revisions(vm, vol, &revs);
    if (!revs.n) {
        puts("List of available revisions (for revert): none");
    } else {
        puts("List of available revisions (for revert):");
        for (size_t i = 0; i < revs.n; i++)
            printf("  %s\n", revs.v[i]);
    }
    return 0;
}

static int do_config(const struct strv *pos)
{
    need_args(pos, 4, 4, "VM:VOLUME, property, value");
    const char *vm, *vol;
    vm_volume(pos->v[1], &vm, &vol);
    const char *prop = pos->v[2];
    if (strcmp(prop, "rw") && strcmp(prop, "revisions_to_keep") && strcmp(prop, "ephemeral"))
        cli_fail("Invalid property: %s", prop);
    api_must(vm, qt_printf("admin.vm.volume.Set.%s", prop), vol, pos->v[3], strlen(pos->v[3]));
    return 0;
}

static int do_resize(const struct cli_args *a, const struct strv *pos)
{
    need_args(pos, 3, 3, "VM:VOLUME, size");
    const char *vm, *vol;
    vm_volume(pos->v[1], &vm, &vol);
    unsigned long long size;
    if (!parse_size(pos->v[2], &size))
        cli_fail("Invalid size: %s.", str_upper(pos->v[2]));
    struct kv info;
    struct reply err;
    if (!volume_info(vm, vol, &info, &err))
        cli_fail("%s", err.exc_msg);
    unsigned long long cur = 0;
    const char *cs = kv_get(&info, "size");
    if (cs)
        str_to_u64(cs, &cur);
    if (!cli_has(a, O_FORCE) && size < cur)
        cli_fail("For your own safety, shrinking of %s is disabled (%llu < %llu). If you really "
                 "know what you are doing, resize filesystem manually first, then use `-f` "
                 "option.", vol, size, cur);
    char *payload = qt_printf("%llu", size);
    api_must(vm, "admin.vm.volume.Resize", vol, payload, strlen(payload));
    return 0;
}

static int do_revert(const struct strv *pos)
{
    need_args(pos, 2, 3, "VM:VOLUME");
    const char *vm, *vol;
    vm_volume(pos->v[1], &vm, &vol);
    const char *rev = pos->n == 3 ? pos->v[2] : NULL;
    if (!rev) {
        struct strv revs = { 0 };
        revisions(vm, vol, &revs);
        if (!revs.n)
            cli_fail("No snapshots available");
        rev = revs.v[revs.n - 1];
    }
    api_must(vm, "admin.vm.volume.Revert", vol, rev, strlen(rev));
    return 0;
}

struct vdata {
    char *pool, *vid;
    bool revisions;
    struct strv vms, names;
};

static int cmp_vdata(const void *a, const void *b)
{
    const struct vdata *x = a, *y = b;
    int c = strcmp(x->pool, y->pool);
    return c ? c : strcmp(x->vid, y->vid);
}

static int do_list(const struct cli_args *a, const struct strv *names)
{
    struct strv exclude = { 0 }, pools = { 0 };
    cli_get_all(a, O_EXCLUDE, &exclude);
    cli_get_all(a, O_POOL, &pools);
    bool all = cli_has(a, O_ALL);
    if (all && names->n)
        cli_usage_error("argument VMNAME: not allowed with argument --all");
    struct vmsel sel;
    bool some = names->n > 0;
    if (some || all) {
        vm_select(names, all, &exclude, &sel, NULL);
    } else {
        if (exclude.n)
            cli_usage_error("--exclude can only be used with --all");
        memset(&sel, 0, sizeof sel);
        const struct vm *vl;
        size_t n = vm_list(&vl);
        for (size_t i = 0; i < n; i++)
            vmsel_add(&sel, &vl[i]);
    }
    size_t cap = 16, n = 0;
    struct vdata *vd = qt_alloc(cap * sizeof *vd);
    for (size_t i = 0; i < sel.n; i++) {
        const char *vm = sel.v[i]->name;
        struct strv vols = { 0 };
        if (!vm_volumes(vm, &vols, NULL))
            continue;
        for (size_t k = 0; k < vols.n; k++) {
            struct kv info;
            if (!volume_info(vm, vols.v[k], &info, NULL))
                continue;
            const char *pool = kv_get(&info, "pool"), *vid = kv_get(&info, "vid");
            if (!pool || !vid)
                continue;
            if (pools.n && !strv_contains(&pools, pool))
                continue;
            struct vdata *d = NULL;
            for (size_t j = 0; j < n; j++)
                if (!strcmp(vd[j].pool, pool) && !strcmp(vd[j].vid, vid))
                    d = &vd[j];
            if (!d) {
                if (n == cap) {
                    vd = qt_realloc_array(vd, cap, cap * 2, sizeof *vd);
                    cap *= 2;
                }
                d = &vd[n++];
                d->pool = qt_strdup(pool);
                d->vid = qt_strdup(vid);
                struct reply r;
                api_call(&r, vm, "admin.vm.volume.ListSnapshots", vols.v[k], NULL, 0);
                d->revisions = r.ok && *r.body;
            }
            strv_push(&d->vms, vm);
            strv_push(&d->names, vols.v[k]);
        }
    }
    qsort(vd, n, sizeof *vd, cmp_vdata);
    struct table t;
    table_init(&t, 4);
    static const char *const head[] = { "POOL:VOLUME", "VMNAME", "VOLUME_NAME", "REVERT_POSSIBLE" };
    table_add(&t, head, 4);
    bool full = cli_has(a, O_FULL) || !isatty(STDOUT_FILENO);
    for (size_t j = 0; j < n; j++) {
        struct vdata *d = &vd[j];
        const char *id = qt_printf("%s:%s", d->pool, d->vid);
        const char *rev = d->revisions ? "Yes" : "No";
        /* Qubes pops the last (qube, volume) pair first, then lists the others. */
        size_t last = d->vms.n - 1;
        const char *row[4] = { id, d->vms.v[last], d->names.v[last], rev };
        table_add(&t, row, 4);
        for (size_t k = 0; k < last; k++) {
            const char *r2[4] = { full ? id : "", d->vms.v[k], d->names.v[k], rev };
            table_add(&t, r2, 4);
        }
    }
    table_print(&t, stdout);
    return 0;
}

/* Copies exactly `size` bytes of in into path (made by ImportBegin: opened without
 * creating, never through a link), leaving holes where the data is zero, as Qubes'
 * import script does with dd conv=sparse,notrunc,nocreat,fdatasync. NULL or an error. */
static const char *copy_in(int in, const char *path, unsigned long long size)
{
    int out = open(path, O_WRONLY | O_NOFOLLOW | O_CLOEXEC);
    if (out < 0)
        return qt_printf("error copying data (%s)", strerror(errno));
    static char buf[128 << 10];
    unsigned long long done = 0;
    while (done < size) {
        size_t want = size - done < sizeof buf ? (size_t)(size - done) : sizeof buf;
        ssize_t n = read(in, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(out);
            return "error copying data";
        }
        if (n == 0)
            break;
        bool zero = true;
        for (ssize_t i = 0; i < n && zero; i++)
            zero = buf[i] == 0;
        if (!zero && pwrite(out, buf, (size_t)n, (off_t)done) != n) {
            close(out);
            return "error copying data";
        }
        done += (unsigned long long)n;
    }
    bool synced = fdatasync(out) == 0;
    close(out);
    if (!synced)
        return "error copying data";
    if (done != size)
        return qt_printf("not enough data (copied %llu bytes, expected %llu bytes)", done, size);
    char extra;
    ssize_t more;
    while ((more = read(in, &extra, 1)) < 0 && errno == EINTR)
        ;
    if (more != 0)
        return qt_printf("too much data (expected %llu bytes)", size);
    return NULL;
}

/* Qubes' admin.vm.volume.Import / ImportWithSize flow, as its dom0 script runs it:
 * internal.vm.volume.ImportBegin answers "SIZE PATH", the data goes there, and
 * internal.vm.volume.ImportEnd ("ok" or "fail\nWHY") answers for the whole import. */
static int do_import(const struct cli_args *a, const struct strv *pos)
{
    need_args(pos, 3, 3, "VM:VOLUME, INPUT_PATH");
    const char *vm, *vol;
    vm_volume(pos->v[1], &vm, &vol);
    const char *input = pos->v[2];
    int in = !strcmp(input, "-") ? 0 : open(input, O_RDONLY | O_CLOEXEC);
    if (in < 0)
        cli_fail("[Errno %d] %s: %s", errno, strerror(errno), py_repr(input));
    const char *size_payload = NULL;
    if (!cli_has(a, O_NO_RESIZE)) {
        unsigned long long size;
        if (cli_get(a, O_SIZE)) {
            if (!parse_size(cli_get(a, O_SIZE), &size))
                cli_fail("Invalid size: %s.", str_upper(cli_get(a, O_SIZE)));
        } else {
            struct stat st;
            if (fstat(in, &st) < 0 || !S_ISREG(st.st_mode))
                cli_fail("Failed to get %s file size, specify it explicitly with --size, or use --no-resize option",
                         input);
            size = (unsigned long long)st.st_size;
        }
        size_payload = qt_printf("%llu", size);
    }
    char *begin = api_must(vm, "internal.vm.volume.ImportBegin", vol, size_payload,
                           size_payload ? strlen(size_payload) : 0);
    char *space = strchr(begin, ' ');
    unsigned long long size;
    if (!space || (*space = '\0', !str_to_u64(begin, &size)))
        cli_fail("unexpected answer to internal.vm.volume.ImportBegin");
    const char *error = copy_in(in, space + 1, size);
    const char *status = error ? qt_printf("fail\n%s", error) : "ok";
    api_must(vm, "internal.vm.volume.ImportEnd", vol, status, strlen(status));
    return 0;
}

int qvm_volume_main(int argc, char **argv)
{
    static const char *const c_info[] = { "info", "i", NULL };
    static const char *const c_config[] = { "config", "c", "set", "s", NULL };
    static const char *const c_resize[] = { "resize", "extend", NULL };
    static const char *const c_list[] = { "list", "ls", "l", NULL };
    static const char *const c_revert[] = { "revert", "rv", "r", NULL };
    cli_init(&tool, ERR_PRINT);
    struct cli_args a;
    cli_parse(argc, argv, opts, &a);
    if (!a.pos.n)
        return do_list(&a, &a.pos);
    const char *cmd = a.pos.v[0];
    if (cmd_is(cmd, c_info))
        return do_info(&a.pos);
    if (cmd_is(cmd, c_config))
        return do_config(&a.pos);
    if (cmd_is(cmd, c_resize))
        return do_resize(&a, &a.pos);
    if (cmd_is(cmd, c_revert))
        return do_revert(&a.pos);
    if (cmd_is(cmd, c_list)) {
        struct strv names = { 0 };
        for (size_t i = 1; i < a.pos.n; i++)
            strv_push(&names, a.pos.v[i]);
        return do_list(&a, &names);
    }
    if (!strcmp(cmd, "import"))
        return do_import(&a, &a.pos);
    cli_usage_error("argument command: invalid choice: %s (choose from 'info', 'i', 'config', "
                    "'c', 'set', 's', 'resize', 'extend', 'list', 'ls', 'l', 'revert', 'rv', "
                    "'r', 'import')", py_repr(cmd));
}
