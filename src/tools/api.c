#include "api.h"
#include "admin_client.h"
#include "cli.h"
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A reply as the tools keep it (their allocator; a Qubes exception as type and message). */
static void reply_from_raw(struct reply *r, const struct bh_admin_reply *raw)
{
    memset(r, 0, sizeof *r);
    r->ok = raw->ok;
    if (raw->ok) {
        r->len = raw->len;
        r->body = qt_alloc(raw->len + 1);
        memcpy(r->body, raw->body, raw->len);
    } else {
        r->exc_type = qt_strdup(raw->exc_type);
        r->exc_msg = qt_strdup(raw->exc_msg);
    }
}

/* Qubes' QubesDaemonCommunicationError, reported in the tool's usual style. */
static _Noreturn void transport_fail(const bh_error *err)
{
    cli_fail("Failed to connect to qubesd service: %s", err->msg);
}

void api_call(struct reply *r, const char *dest, const char *method, const char *arg,
              const void *payload, size_t plen)
{
    _cleanup_reply_ struct bh_admin_reply raw;
    bh_error err = { 0 };
    if (bh_admin_call(method, arg ? arg : "", dest, payload ? payload : "", plen, &raw, &err) < 0)
        transport_fail(&err);
    reply_from_raw(r, &raw);
}

char *api_must(const char *dest, const char *method, const char *arg, const void *payload,
               size_t plen)
{
    struct reply r;
    api_call(&r, dest, method, arg, payload, plen);
    if (!r.ok)
        cli_fail("%s", r.exc_msg);
    return r.body;
}

bool exc_is(const struct reply *r, const char *type)
{
    return !r->ok && r->exc_type && !strcmp(r->exc_type, type);
}

bool exc_is_keyerror(const struct reply *r)
{
    return exc_is(r, "QubesVMNotFoundError") || exc_is(r, "QubesFeatureNotFoundError") ||
           exc_is(r, "QubesTagNotFoundError") || exc_is(r, "QubesLabelNotFoundError") ||
           exc_is(r, "KeyError");
}

bool exc_is_attrerror(const struct reply *r)
{
    return exc_is(r, "QubesNoSuchPropertyError") || exc_is(r, "AttributeError") ||
           exc_is(r, "QubesPropertyAccessError");
}

/* ---- domains ---- */

static struct vm *vms;
static size_t n_vms;
static bool vms_loaded;

static int cmp_vm(const void *a, const void *b)
{
    return strcmp(((const struct vm *)a)->name, ((const struct vm *)b)->name);
}

static void load_vms(void)
{
    char *body = api_must("dom0", "admin.vm.List", NULL, NULL, 0);
    struct strv lines = { 0 };
    strv_split_lines(&lines, body);
    vms = qt_alloc((lines.n + 1) * sizeof *vms);
    n_vms = 0;
    for (size_t i = 0; i < lines.n; i++) {
        char *line = lines.v[i], *save = NULL;
        char *name = strtok_r(line, " ", &save);
        if (!name)
            continue;
        struct vm *vm = &vms[n_vms++];
        vm->name = name;
        vm->klass = "";
        for (char *kv; (kv = strtok_r(NULL, " ", &save));) {
            if (str_startswith(kv, "class="))
                vm->klass = kv + 6;
            else if (str_startswith(kv, "state="))
                vm->state = kv + 6;
        }
    }
    qsort(vms, n_vms, sizeof *vms, cmp_vm);
    vms_loaded = true;
}

size_t vm_list(const struct vm **out)
{
    if (!vms_loaded)
        load_vms();
    *out = vms;
    return n_vms;
}

void vm_list_refresh(void)
{
    vms_loaded = false;
}

const struct vm *vm_find(const char *name)
{
    const struct vm *all;
    size_t n = vm_list(&all);
    for (size_t i = 0; i < n; i++)
        if (!strcmp(all[i].name, name))
            return &all[i];
    return NULL;
}

const char *vm_power_state(const struct vm *vm)
{
    struct reply r;
    api_call(&r, vm->name, "admin.vm.CurrentState", NULL, NULL, 0);
    if (r.ok) {
        char *save = NULL;
        for (char *kv = strtok_r(r.body, " \n", &save); kv; kv = strtok_r(NULL, " \n", &save))
            if (str_startswith(kv, "power_state="))
                return kv + 12;
    }
    if (exc_is(&r, "QubesVMNotFoundError"))
        return "NA";
    /* An older daemon without CurrentState: the list's state is all we have. */
    return vm->state ? vm->state : "NA";
}

bool vm_is_running(const struct vm *vm)
{
    const char *s = vm_power_state(vm);
    return strcmp(s, "Halted") && strcmp(s, "NA");
}

bool vm_is_paused(const struct vm *vm)
{
    const char *s = vm_power_state(vm);
    return !strcmp(s, "Paused") || !strcmp(s, "Suspended");
}

void vmsel_add(struct vmsel *s, const struct vm *vm)
{
    for (size_t i = 0; i < s->n; i++)
        if (s->v[i] == vm)
            return;
    s->v = qt_realloc_array(s->v, s->n, s->n + 1, sizeof *s->v);
    s->v[s->n++] = vm;
}

void vm_select(const struct strv *names, bool all, const struct strv *exclude,
               struct vmsel *out, struct strv *missing)
{
    memset(out, 0, sizeof *out);
    const struct vm *vl;
    size_t n = vm_list(&vl);
    if (all) {
        for (size_t i = 0; i < n; i++)
            if (strcmp(vl[i].klass, "AdminVM") && !(exclude && strv_contains(exclude, vl[i].name)))
                vmsel_add(out, &vl[i]);
        return;
    }
    if (exclude && exclude->n)
        cli_usage_error("--exclude can only be used with --all");
    for (size_t k = 0; names && k < names->n; k++) {
        const char *want = names->v[k];
        if (strpbrk(want, "*?[!]")) {
            for (size_t i = 0; i < n; i++)
                if (!fnmatch(want, vl[i].name, 0))
                    vmsel_add(out, &vl[i]);
            continue;
        }
        const struct vm *vm = vm_find(want);
        if (vm)
            vmsel_add(out, vm);
        else if (missing)
            strv_push(missing, want);
        else
            cli_usage_error("no such domain: %s", py_repr(want));
    }
}

/* ---- properties ---- */

bool prop_parse(const char *name, const char *text, struct prop *out)
{
    /* "default=<True|False> type=<t> <value>"; the value may hold spaces. */
    if (!str_startswith(text, "default="))
        return false;
    const char *sp1 = strchr(text, ' ');
    if (!sp1 || !str_startswith(sp1 + 1, "type="))
        return false;
    const char *sp2 = strchr(sp1 + 1, ' ');
    out->name = qt_strdup(name);
    out->is_default = !strncmp(text + 8, "True", 4) && text + 12 == sp1;
    if (!sp2) {
        /* Tolerate a missing separator for an empty value. */
        out->type = qt_strdup(sp1 + 6);
        out->value = qt_strdup("");
    } else {
        out->type = qt_strndup(sp1 + 6, (size_t)(sp2 - sp1 - 6));
        out->value = qt_strdup(sp2 + 1);
    }
    if (!strcmp(out->type, "bool") && *out->value)
        out->value = qt_strdup(!strcmp(out->value, "True") ? "True" : "False");
    return true;
}

bool prop_is_none(const struct prop *p)
{
    return (!strcmp(p->type, "vm") || !strcmp(p->type, "label")) && !*p->value;
}

bool prop_is_unset(const struct prop *p)
{
    return (!strcmp(p->type, "int") || !strcmp(p->type, "bool")) && !*p->value;
}

static char *unescape_line(const char *s)
{
    char *o = qt_alloc(strlen(s) + 1), *p = o;
    for (; *s; s++) {
        if (*s == '\\' && s[1] == 'n') {
            *p++ = '\n';
            s++;
        } else if (*s == '\\' && s[1] == '\\') {
            *p++ = '\\';
            s++;
        } else {
            *p++ = *s;
        }
    }
    *p = '\0';
    return o;
}

bool props_parse_all(const char *body, struct props *out)
{
    struct strv lines = { 0 };
    strv_split_lines(&lines, body);
    out->p = qt_alloc((lines.n + 1) * sizeof *out->p);
    out->n = 0;
    for (size_t i = 0; i < lines.n; i++) {
        if (!*lines.v[i])
            continue;
        char *line = unescape_line(lines.v[i]);
        char *sp = strchr(line, ' ');
        if (!sp)
            return false;
        *sp = '\0';
        if (!prop_parse(line, sp + 1, &out->p[out->n]))
            return false;
        out->n++;
    }
    return true;
}

struct props_cache {
    char *vm;
    bool parsed;        /* props holds the parse of reply */
    struct reply reply; /* admin.(vm.)property.GetAll's */
    struct props props;
    struct props_cache *next;
};
static struct props_cache *pcache;

static struct props_cache *cache_find(const char *key)
{
    for (struct props_cache *c = pcache; c; c = c->next)
        if (!strcmp(c->vm, key))
            return c;
    return NULL;
}

static struct props_cache *cache_add(const char *key, const struct reply *r)
{
    struct props_cache *c = qt_alloc(sizeof *c);
    c->vm = qt_strdup(key);
    c->reply = *r;
    c->next = pcache;
    pcache = c;
    return c;
}

/* admin.vm.property.GetAll of qube vm (admin.property.GetAll, the global ones, for NULL):
 * the request sent, its fd; -1 on a transport error (err). */
static int getall_send(const char *vm, bh_error *err)
{
    return bh_admin_send(vm ? "admin.vm.property.GetAll" : "admin.property.GetAll", "", vm ? vm : "dom0", "", 0, err);
}

/* Its reply, kept under key for props_all; closes fd. NULL on a transport error (err). */
static struct props_cache *getall_finish(int fd, const char *key, bh_error *err)
{
    _cleanup_reply_ struct bh_admin_reply raw;
    int rc = bh_admin_recv(fd, &raw, NULL, err);
    close(fd);
    if (rc < 0)
        return NULL;
    struct reply r;
    reply_from_raw(&r, &raw);
    return cache_add(key, &r);
}

/* Requests in flight at once. A failure here is never the tool's error: what could not
 * be fetched ahead is fetched by props_all when a row needs it, as without the prefetch
 * (so a qube the filters drop, or a daemon that refuses a connection, fails nothing
 * that would have worked). */
#define PREFETCH_WINDOW 16

void props_prefetch(const struct vm *const *v, size_t n)
{
    const char **todo = qt_alloc((n + 1) * sizeof *todo);
    size_t nt = 0;
    for (size_t i = 0; i < n; i++) {
        bool dup = cache_find(v[i]->name) != NULL;
        for (size_t k = 0; k < nt && !dup; k++)
            dup = !strcmp(todo[k], v[i]->name);
        if (!dup)
            todo[nt++] = v[i]->name;
    }
    /* Replies are read in the order of the requests (request i uses slot i % window); a
     * window of them is always queued at bulkheadd, which serves every waiting
     * connection in one wake-up. */
    int fds[PREFETCH_WINDOW];
    size_t sent = 0;
    bool refill = true;
    bh_error err = { 0 }; /* ignored: see above */
    for (; sent < nt && sent < PREFETCH_WINDOW; sent++)
        if ((fds[sent] = getall_send(todo[sent], &err)) < 0) {
            refill = false;
            break;
        }
    for (size_t i = 0; i < sent; i++) {
        int *fd = &fds[i % PREFETCH_WINDOW];
        (void)getall_finish(*fd, todo[i], &err);
        if (refill && sent < nt) {
            if ((*fd = getall_send(todo[sent], &err)) < 0)
                refill = false;
            else
                sent++;
        }
    }
}

const struct props *props_all(const char *vm)
{
    const char *key = vm ? vm : "";
    struct props_cache *c = cache_find(key);
    if (!c) {
        bh_error err = { 0 };
        int fd = getall_send(vm, &err);
        if (fd < 0 || !(c = getall_finish(fd, key, &err)))
            transport_fail(&err);
    }
    if (c->parsed)
        return &c->props;
    /* A qube removed since the list was read has no properties (Qubes' qvm-ls skips
     * such rows without failing). */
    if (!c->reply.ok && !exc_is(&c->reply, "QubesVMNotFoundError"))
        cli_fail("%s", c->reply.exc_msg);
    if (!c->reply.ok)
        memset(&c->props, 0, sizeof c->props);
    else if (!props_parse_all(c->reply.body, &c->props))
        cli_fail("Invalid response format");
    c->parsed = true;
    return &c->props;
}

const struct prop *props_find(const struct props *ps, const char *name)
{
    for (size_t i = 0; i < ps->n; i++)
        if (!strcmp(ps->p[i].name, name))
            return &ps->p[i];
    return NULL;
}

void labels_list(struct strv *out)
{
    char *body = api_must("dom0", "admin.label.List", NULL, NULL, 0);
    strv_split_lines(out, body);
}

const char *vm_state_listed(const struct vm *vm)
{
    return vm->state ? vm->state : vm_power_state(vm);
}

void kv_parse(const char *text, struct kv *out)
{
    memset(out, 0, sizeof *out);
    struct strv lines = { 0 };
    strv_split_lines(&lines, text);
    for (size_t i = 0; i < lines.n; i++) {
        char *eq = strchr(lines.v[i], '=');
        if (!eq)
            continue;
        *eq = '\0';
        strv_push(&out->keys, lines.v[i]);
        strv_push(&out->vals, eq + 1);
    }
}

const char *kv_get(const struct kv *kv, const char *key)
{
    for (size_t i = 0; i < kv->keys.n; i++)
        if (!strcmp(kv->keys.v[i], key))
            return kv->vals.v[i];
    return NULL;
}

bool vm_volumes(const char *vm, struct strv *out, struct reply *err)
{
    struct reply r;
    api_call(&r, vm, "admin.vm.volume.List", NULL, NULL, 0);
    if (!r.ok) {
        if (err)
            *err = r;
        return false;
    }
    strv_split_lines(out, r.body);
    return true;
}

bool volume_info(const char *vm, const char *volume, struct kv *out, struct reply *err)
{
    struct reply r;
    api_call(&r, vm, "admin.vm.volume.Info", volume, NULL, 0);
    if (!r.ok) {
        if (err)
            *err = r;
        return false;
    }
    kv_parse(r.body, out);
    return true;
}

const struct vm *vm_arg(const struct strv *pos)
{
    if (pos->n < 1)
        cli_usage_error("the following arguments are required: VMNAME");
    struct strv one = { 0 };
    strv_push(&one, pos->v[0]);
    struct vmsel sel;
    vm_select(&one, false, NULL, &sel, NULL);
    if (!sel.n)
        cli_usage_error("no such domain: %s", py_repr(pos->v[0]));
    return sel.v[sel.n - 1];
}

void vm_args_multi(const struct strv *names, bool all, const struct strv *exclude,
                   struct vmsel *out)
{
    if (all && names->n)
        cli_usage_error("argument VMNAME: not allowed with argument --all");
    if (!all && !names->n)
        cli_usage_error("one of the arguments --all VMNAME is required");
    vm_select(names, all, exclude, out, NULL);
}
