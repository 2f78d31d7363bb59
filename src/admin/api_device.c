/* Qubes' device API: admin.deviceclass.List, admin.vm.device.<class>.*, and the
 * per-qube list of denied device interfaces (admin.vm.device.denied.*, stored in the
 * devices_denied property).
 *
 * Class `block`: dom0 exports its free loop devices (blockdev.h); Attach hands one to a
 * running qube through its engine (read-write unless `read-only` or the device itself
 * is read-only, as Qubes' block extension), Detach takes it back, and a qube's halt
 * detaches what it had. Attachments are volatile, as in Qubes. Persistent assignment
 * (Assign) is not there yet. Class `pci`: nothing exists, and the answers say so. */
#include "api.h"
#include "blockdev.h"
#include "cleanup.h"
#include "devassign.h"
#include "engine_glue.h"
#include "events.h"
#include "log.h"
#include "loop.h"
#include "selfpath.h"
#include "props.h"
#include "store.h"
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <sys/epoll.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

/* As qubes-core-admin registers them (its qubes.devices entry points, in that order). */
static const char *const classes[] = { "pci", "block" };

static int deviceclass_list(struct bh_call *c)
{
    for (size_t i = 0; i < BH_ARRAY_SIZE(classes); i++)
        if (bh_buf_printf(c->out, "%s\n", classes[i]) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

/* "admin.vm.device.CLASS.OP" -> CLASS (static storage, from the table). */
static const char *class_of(const struct bh_call *c)
{
    const char *m = c->req->method + strlen("admin.vm.device.");
    for (size_t i = 0; i < BH_ARRAY_SIZE(classes); i++) {
        size_t n = strlen(classes[i]);
        if (!strncmp(m, classes[i], n) && m[n] == '.')
            return classes[i];
    }
    return "?";
}

static bool is_block(const struct bh_call *c) { return !strcmp(class_of(c), "block"); }

/* The argument names a device: BACKEND+PORT[:DEVICE_ID] (qrexec's spelling of
 * BACKEND:PORT:DEVICE_ID), BACKEND an existing qube. devid is "*" when not given. */
struct devarg {
    char backend[64], port[64], devid[64];
};

static int device_arg(struct bh_call *c, struct devarg *d)
{
    const char *plus = strchr(c->req->arg, '+');
    if (!plus || plus == c->req->arg || !plus[1])
        return bh_exc(c->exc, "ProtocolError", "Invalid device argument: expected BACKEND+PORT");
    size_t bl = (size_t)(plus - c->req->arg);
    if (bl >= sizeof d->backend)
        return bh_exc(c->exc, "QubesVMNotFoundError", "No such domain: '%.*s'", (int)bl, c->req->arg);
    memcpy(d->backend, c->req->arg, bl);
    d->backend[bl] = '\0';
    if (!bh_app_find(c->app, d->backend))
        return bh_exc(c->exc, "QubesVMNotFoundError", "No such domain: '%s'", d->backend);
    /* Qubes turns '+' after the port back into ':' and '_' alone into '*'. */
    const char *id = plus + 1;
    size_t pl = strcspn(id, ":+");
    snprintf(d->port, sizeof d->port, "%.*s", (int)pl, id);
    snprintf(d->devid, sizeof d->devid, "%s", id[pl] ? id + pl + 1 : "*");
    for (char *p = d->devid; *p; p++)
        if (*p == '+')
            *p = ':';
    if (!strcmp(d->port, "_"))
        snprintf(d->port, sizeof d->port, "*");
    if (!strcmp(d->devid, "_") || !d->devid[0])
        snprintf(d->devid, sizeof d->devid, "*");
    return 0;
}

/* ---- block: attachments (volatile, as Qubes') ---- */

struct attachment {
    char frontend[64];          /* the qube that has it */
    char backend[64], port[64]; /* dom0, loopN */
    char devid[64];
    unsigned major, minor;
    bool ro;
    char node[32];              /* frontend-dev */
    char devtype[8];            /* "" (disk) or "cdrom" */
    int hold;                   /* /dev/<port>, open while attached: see do_attach */
};

static struct attachment *atts;
static size_t natts;

static struct attachment *find_att(const char *backend, const char *port)
{
    for (size_t i = 0; i < natts; i++)
        if (!strcmp(atts[i].backend, backend) && !strcmp(atts[i].port, port))
            return &atts[i];
    return NULL;
}

static void drop_att(struct attachment *a)
{
    if (a->hold >= 0)
        close(a->hold);
    size_t i = (size_t)(a - atts);
    memmove(&atts[i], &atts[i + 1], (natts - i - 1) * sizeof *atts);
    natts--;
}

/* str() of Qubes' device objects in events: BACKEND:PORT[:DEVICE_ID]. */
static void dev_str(char *out, size_t n, const char *backend, const char *port, const char *devid)
{
    if (devid)
        snprintf(out, n, "%s:%s:%s", backend, port, devid);
    else
        snprintf(out, n, "%s:%s", backend, port);
}

static void emit_detach(const struct attachment *a, bool pre)
{
    char port[160];
    dev_str(port, sizeof port, a->backend, a->port, NULL);
    const char *kv[] = { "port", port, NULL };
    bh_events_emit(a->frontend, pre ? "device-pre-detach:block" : "device-detach:block", kv);
}

void bh_devices_qube_stopped(struct bh_app *app, struct bh_qube *q)
{
    (void)app;
    for (size_t i = natts; i-- > 0;)
        if (!strcmp(atts[i].frontend, q->name)) {
            struct attachment a = atts[i];
            drop_att(&atts[i]);
            emit_detach(&a, false);
        }
}

static int serialize_att(const struct attachment *a, char *buf, size_t n)
{
    buf[0] = '\0';
    bool ok = bh_dev_pack(buf, n, "device_id", a->devid) && bh_dev_pack(buf, n, "port_id", a->port) &&
              bh_dev_pack(buf, n, "devclass", "block") && bh_dev_pack(buf, n, "backend_domain", a->backend) &&
              bh_dev_pack(buf, n, "mode", "manual") && bh_dev_pack(buf, n, "frontend_domain", a->frontend) &&
              bh_dev_pack(buf, n, "_read-only", a->ro ? "yes" : "no") && bh_dev_pack(buf, n, "_frontend-dev", a->node) &&
              (!a->devtype[0] || bh_dev_pack(buf, n, "_devtype", a->devtype));
    return ok ? 0 : -1;
}

static int block_available(struct bh_call *c)
{
    if (c->dest->klass != BH_ADMINVM)
        return 0; /* only dom0 exports block devices here */
    _cleanup_free_ struct bh_blockdev *devs = NULL;
    size_t n;
    if (bh_blockdev_list(&devs, &n) < 0)
        return bh_exc(c->exc, "QubesException", "out of memory");
    for (size_t i = 0; i < n; i++) {
        const struct bh_blockdev *d = &devs[i];
        if (c->req->arg[0] && strcmp(c->req->arg, d->port))
            continue;
        char line[1024] = "", manuf[128];
        snprintf(manuf, sizeof manuf, "hosted by %s", c->dest->name);
        const struct attachment *a = find_att(c->dest->name, d->port);
        bool ok = bh_dev_pack(line, sizeof line, "device_id", d->device_id) &&
                  bh_dev_pack(line, sizeof line, "port_id", d->port) &&
                  bh_dev_pack(line, sizeof line, "devclass", "block") &&
                  bh_dev_pack(line, sizeof line, "backend_domain", c->dest->name) &&
                  bh_dev_pack(line, sizeof line, "serial", d->serial) &&
                  bh_dev_pack(line, sizeof line, "manufacturer", manuf) &&
                  (!a || bh_dev_pack(line, sizeof line, "attachment", a->frontend)) &&
                  bh_dev_pack(line, sizeof line, "interfaces", "b******");
        if (!ok || bh_buf_printf(c->out, "%s:%s %s\n", d->port, d->device_id, line) < 0)
            return bh_exc(c->exc, "QubesException", "device description too long");
    }
    return 0;
}

static int block_attached(struct bh_call *c)
{
    struct devarg want = { 0 };
    if (c->req->arg[0] && device_arg(c, &want) < 0)
        return -1;
    for (size_t i = 0; i < natts; i++) {
        const struct attachment *a = &atts[i];
        if (strcmp(a->frontend, c->dest->name))
            continue;
        if (c->req->arg[0] && (strcmp(a->backend, want.backend) || strcmp(a->port, want.port)))
            continue;
        char line[1024];
        if (serialize_att(a, line, sizeof line) < 0 ||
            bh_buf_printf(c->out, "%s+%s:%s %s\n", a->backend, a->port, a->devid, line) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    }
    return 0;
}

/* qubes.property.bool */
static int parse_bool(struct bh_exc *exc, const char *v, bool *out)
{
    if (bh_qubes_bool(v, out) < 0)
        return bh_exc(exc, "QubesValueError", "Invalid literal for boolean property: '%s'", v);
    return 0;
}

static bool node_name_ok(const char *v)
{
    if ((strncmp(v, "xvd", 3) && strncmp(v, "sd", 2)) || strlen(v) > 31)
        return false;
    for (const char *p = v; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9')))
            return false;
    return true;
}

/* str() of the options dict as Python prints it (values here are validated words). */
static void dict_str(char *out, size_t n, const struct bh_dev_props *o)
{
    size_t len = (size_t)snprintf(out, n, "{");
    for (size_t i = 0; i < o->n && len < n; i++)
        len += (size_t)snprintf(out + len, n - len, "%s'%s': '%s'", i ? ", " : "", o->kv[i].key, o->kv[i].val);
    if (len < n)
        snprintf(out + len, n - len, "}");
}

static void set_opt(struct bh_dev_props *o, const char *k, const char *v)
{
    for (size_t i = 0; i < o->n; i++)
        if (!strcmp(o->kv[i].key, k)) {
            snprintf(o->kv[i].val, sizeof o->kv[i].val, "%s", v);
            return;
        }
    if (o->n < BH_DEVA_MAX_PROPS) {
        snprintf(o->kv[o->n].key, sizeof o->kv[o->n].key, "%s", k);
        snprintf(o->kv[o->n].val, sizeof o->kv[o->n].val, "%s", v);
        o->n++;
    }
}

/* The block extension's part of an attach (qubes/ext/block.py pre_attachment_internal
 * and the engine), after the generic checks: options in Qubes' order, then the engine.
 * device-attach:block is sent on success. opts is changed as Qubes changes it. */
static int do_attach(struct bh_app *app, struct bh_qube *dest, const char *backend, const struct bh_blockdev *dev,
                     struct bh_dev_props *opts, struct bh_exc *exc)
{
    char devs[400];
    dev_str(devs, sizeof devs, backend, dev->port, dev->device_id);
    struct attachment *cur = find_att(backend, dev->port);
    struct attachment a = { .hold = -1 };
    bool ro_given = false;
    for (size_t i = 0; i < opts->n; i++) {
        struct bh_dev_kv *kv = &opts->kv[i];
        if (!strcmp(kv->key, "frontend-dev")) {
            if (!node_name_ok(kv->val))
                return bh_exc(exc, "QubesValueError", "Invalid frontend-dev option value: %s", kv->val);
            snprintf(a.node, sizeof a.node, "%s", kv->val);
        } else if (!strcmp(kv->key, "read-only")) {
            if (parse_bool(exc, kv->val, &a.ro) < 0)
                return -1;
            snprintf(kv->val, sizeof kv->val, "%s", a.ro ? "yes" : "no");
            ro_given = true;
        } else if (!strcmp(kv->key, "devtype")) {
            if (strcmp(kv->val, "disk") && strcmp(kv->val, "cdrom"))
                return bh_exc(exc, "QubesValueError", "devtype option can only have 'disk' or 'cdrom' value");
            if (!strcmp(kv->val, "cdrom"))
                snprintf(a.devtype, sizeof a.devtype, "cdrom");
        } else {
            return bh_exc(exc, "QubesValueError", "Unsupported option %s", kv->key);
        }
    }
    if (!ro_given) {
        a.ro = dev->ro;
        set_opt(opts, "read-only", a.ro ? "yes" : "no");
    }
    if (!a.ro && dev->ro)
        return bh_exc(exc, "QubesValueError", "This device can be attached only read-only");
    if (cur)
        return bh_exc(exc, "DeviceAlreadyAttached", "Device %s already attached to %s", devs, cur->frontend);
    if (!a.node[0]) {
        /* Storage.AVAILABLE_FRONTENDS: xvdi..xvdz, the first one this qube does not use
         * (a cdrom prefers xvdd). */
        static const char letters[] = "dijklmnopqrstuvwxyz";
        for (const char *l = a.devtype[0] ? letters : letters + 1; *l && !a.node[0]; l++) {
            char cand[8];
            snprintf(cand, sizeof cand, "xvd%c", *l);
            bool used = false;
            for (size_t i = 0; i < natts; i++)
                used |= !strcmp(atts[i].frontend, dest->name) && !strcmp(atts[i].node, cand);
            if (!used)
                snprintf(a.node, sizeof a.node, "%s", cand);
        }
        if (!a.node[0])
            return bh_exc(exc, "QubesException", "No free frontend device name left in %s", dest->name);
        set_opt(opts, "frontend-dev", a.node);
    }
    for (size_t i = 0; i < natts; i++)
        if (!strcmp(atts[i].frontend, dest->name) && !strcmp(atts[i].node, a.node))
            return bh_exc(exc, "QubesException", "%s already has a device at %s", dest->name, a.node);
    const struct bh_driver *drv = bh_glue_driver(app, dest);
    if (!drv || !drv->block_attach)
        return bh_exc(exc, "QubesException", "The engine of %s cannot attach block devices", dest->name);
    struct attachment *grown = realloc(atts, (natts + 1) * sizeof *atts);
    if (!grown)
        return bh_exc(exc, "QubesException", "out of memory");
    atts = grown;
    snprintf(a.frontend, sizeof a.frontend, "%s", dest->name);
    snprintf(a.backend, sizeof a.backend, "%s", backend);
    snprintf(a.port, sizeof a.port, "%s", dev->port);
    snprintf(a.devid, sizeof a.devid, "%s", dev->device_id);
    a.major = dev->major, a.minor = dev->minor;
    /* The qube is allowed a device number, not a device: if dom0 freed the loop device
     * (losetup -d) while it is attached, the engine could bind another qube's private
     * image to the same number. An open of it keeps the loop bound (the kernel defers
     * the clear to the last close) until the detach. */
    char path[96];
    snprintf(path, sizeof path, "/dev/%s", dev->port);
    a.hold = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (a.hold < 0 || fstat(a.hold, &st) < 0 || !S_ISBLK(st.st_mode) || major(st.st_rdev) != a.major ||
        minor(st.st_rdev) != a.minor) {
        if (a.hold >= 0)
            close(a.hold);
        return bh_exc(exc, "QubesException", "Attaching %s to %s failed: %s is not that device any more", devs,
                      dest->name, path);
    }
    struct bh_spec_buf sb;
    bh_glue_spec(app, dest, &sb);
    bh_error err = { 0 };
    int r = drv->block_attach(&sb.spec, a.major, a.minor, a.node, !a.ro, &err);
    bh_glue_spec_free(&sb);
    if (r < 0) {
        close(a.hold);
        return bh_exc(exc, "QubesException", "Attaching %s to %s failed: %s", devs, dest->name, err.msg);
    }
    atts[natts++] = a;
    bh_info("%s: block device %s attached as %s (%s)", dest->name, devs, a.node, a.ro ? "read-only" : "read-write");
    char os[1024];
    dict_str(os, sizeof os, opts);
    bh_events_emit(dest->name, "device-attach:block", (const char *const[]){ "device", devs, "options", os, NULL });
    return 0;
}

/* Attach and Assign: the argument's device (load_device_info: the device it names, if
 * it exists as named: *known) and the payload, Qubes' DeviceAssignment for it. */
static int device_and_assignment(struct bh_call *c, struct devarg *d, struct bh_blockdev *dev, bool *known,
                                 struct bh_dev_assignment *as)
{
    if (device_arg(c, d) < 0)
        return -1;
    *known = !strcmp(d->backend, "dom0") && bh_blockdev_get(d->port, dev) == 0 &&
             (!strcmp(d->devid, "*") || !strcmp(d->devid, dev->device_id));
    char msg[512];
    if (bh_dev_assignment_parse(c->req->payload, c->req->payload_len, d->backend, d->port, "block",
                                *known ? dev->device_id : d->devid, as, msg, sizeof msg) < 0)
        return bh_exc(c->exc, "ProtocolError", "%s", msg);
    return 0;
}

static int block_attach(struct bh_call *c)
{
    struct devarg d;
    struct bh_blockdev dev;
    struct bh_dev_assignment as;
    bool known;
    if (device_and_assignment(c, &d, &dev, &known, &as) < 0)
        return -1;
    if (!bh_qube_is_running(c->dest))
        return bh_exc(c->exc, "QubesVMNotRunningError", "VM not running, cannot attach device, do you mean `assign`?");
    if (!known) /* Qubes' "unknown" error is caught and re-raised as this one */
        return bh_exc(c->exc, "ProtocolError", "Cannot attach ambiguous block device.");
    char devs[400];
    dev_str(devs, sizeof devs, d.backend, d.port, dev.device_id);
    struct attachment *cur = find_att(d.backend, d.port);
    if (cur && !strcmp(cur->frontend, c->dest->name))
        return bh_exc(c->exc, "DeviceAlreadyAttached", "device %s of class block already attached to %s", devs,
                      c->dest->name);
    char opts[1024];
    dict_str(opts, sizeof opts, &as.options);
    bh_events_emit(c->dest->name, "device-pre-attach:block", (const char *const[]){ "device", devs, "options", opts, NULL });
    return do_attach(c->app, c->dest, d.backend, &dev, &as.options, c->exc);
}

/* ---- block: assignments (persistent, in the qube's stored properties) ---- */

#define ASSIGN_PREFIX "device-assign.block."

/* The stored key of an assignment: device-assign.block.BACKEND+PORT:DEVID */
static void assign_key(char *out, size_t n, const char *backend, const char *port, const char *devid)
{
    snprintf(out, n, ASSIGN_PREFIX "%s+%s:%s", backend, port, devid);
}

/* DEVID of a stored key (after the ':' that ends BACKEND+PORT; a DEVID may hold ':'). */
static const char *key_devid(const char *key)
{
    const char *plus = strchr(key + strlen(ASSIGN_PREFIX), '+');
    const char *colon = plus ? strchr(plus, ':') : NULL;
    return colon ? colon + 1 : "*";
}

struct kv_put {
    uint32_t qid;
    const char *key, *value;
};
static int kv_put(struct bh_store *s, void *ctx, bh_error *err)
{
    struct kv_put *t = ctx;
    return bh_store_put_kv(s, "props", t->qid, t->key, t->value, err);
}

static int store_assignment(struct bh_call *c, const char *key, const char *value)
{
    struct kv_put t = { c->dest->qid, key, value };
    bh_error err = { 0 };
    if (bh_store_txn(c->app->store, kv_put, &t, &err) < 0)
        return bh_exc(c->exc, "QubesException", "%s", err.msg);
    if (value ? bh_kv_set(&c->dest->props, key, value) < 0 : (bh_kv_del(&c->dest->props, key), false))
        return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int serialize_assignment(char *buf, size_t n, const char *backend, const char *port, const char *devid,
                                const char *mode, const char *frontend, const struct bh_dev_props *opts)
{
    buf[0] = '\0';
    bool ok = bh_dev_pack(buf, n, "device_id", devid) && bh_dev_pack(buf, n, "port_id", port) &&
              bh_dev_pack(buf, n, "devclass", "block") && bh_dev_pack(buf, n, "backend_domain", backend) &&
              bh_dev_pack(buf, n, "mode", mode) && bh_dev_pack(buf, n, "frontend_domain", frontend);
    for (size_t i = 0; ok && i < opts->n; i++) {
        char k[BH_DEVA_KEY + 1];
        snprintf(k, sizeof k, "_%s", opts->kv[i].key);
        ok = bh_dev_pack(buf, n, k, opts->kv[i].val);
    }
    return ok ? 0 : -1;
}

/* Options of an assignment are checked when it is made (Qubes checks them at attach). */
static int check_options(struct bh_exc *exc, const struct bh_dev_props *o)
{
    for (size_t i = 0; i < o->n; i++) {
        const char *k = o->kv[i].key, *v = o->kv[i].val;
        bool b;
        if (!strcmp(k, "frontend-dev") && !node_name_ok(v))
            return bh_exc(exc, "QubesValueError", "Invalid frontend-dev option value: %s", v);
        if (!strcmp(k, "read-only") && parse_bool(exc, v, &b) < 0)
            return -1;
        if (!strcmp(k, "devtype") && strcmp(v, "disk") && strcmp(v, "cdrom"))
            return bh_exc(exc, "QubesValueError", "devtype option can only have 'disk' or 'cdrom' value");
        if (strcmp(k, "frontend-dev") && strcmp(k, "read-only") && strcmp(k, "devtype"))
            return bh_exc(exc, "QubesValueError", "Unsupported option %s", k);
    }
    return 0;
}

static int block_assign(struct bh_call *c)
{
    struct devarg d;
    struct bh_blockdev dev;
    struct bh_dev_assignment as;
    bool known;
    if (device_and_assignment(c, &d, &dev, &known, &as) < 0)
        return -1;
    char devs[400], key[512];
    dev_str(devs, sizeof devs, d.backend, d.port, as.device_id);
    assign_key(key, sizeof key, d.backend, d.port, as.device_id);
    if (bh_kv_get(&c->dest->props, key))
        return bh_exc(c->exc, "DeviceAlreadyAssigned", "block device %s already assigned to %s", devs, c->dest->name);
    if (!strcmp(as.mode, "manual"))
        return bh_exc(c->exc, "QubesValueError", "Only auto-attachable devices can be assigned.");
    if (check_options(c->exc, &as.options) < 0)
        return -1;
    char val[2048];
    if (serialize_assignment(val, sizeof val, d.backend, d.port, as.device_id, as.mode, c->dest->name, &as.options) < 0)
        return bh_exc(c->exc, "QubesException", "assignment too long");
    char opts[1024];
    dict_str(opts, sizeof opts, &as.options);
    bh_events_emit(c->dest->name, "device-pre-assign:block", (const char *const[]){ "device", devs, "options", opts, NULL });
    if (store_assignment(c, key, val) < 0)
        return -1;
    bh_events_emit(c->dest->name, "device-assign:block", (const char *const[]){ "device", devs, "options", opts, NULL });
    return 0;
}

/* The stored assignment that the argument names (BACKEND+PORT[:DEVID]). */
static const struct bh_kv *find_assignment(const struct bh_qube *q, const struct devarg *d)
{
    char pre[400];
    snprintf(pre, sizeof pre, ASSIGN_PREFIX "%s+%s:", d->backend, d->port);
    for (size_t i = 0; i < q->props.n; i++) {
        const char *k = q->props.v[i].key;
        if (!strncmp(k, pre, strlen(pre)) && (!strcmp(d->devid, "*") || !strcmp(k + strlen(pre), d->devid)))
            return &q->props.v[i];
    }
    return NULL;
}

static int block_assigned(struct bh_call *c)
{
    struct devarg want = { 0 };
    if (c->req->arg[0] && device_arg(c, &want) < 0)
        return -1;
    for (size_t i = 0; i < c->dest->props.n; i++) {
        const char *k = c->dest->props.v[i].key;
        if (strncmp(k, ASSIGN_PREFIX, strlen(ASSIGN_PREFIX)))
            continue;
        const char *id = k + strlen(ASSIGN_PREFIX);
        if (c->req->arg[0]) {
            char pre[400];
            snprintf(pre, sizeof pre, "%s+%s:", want.backend, want.port);
            if (strncmp(id, pre, strlen(pre)))
                continue;
        }
        if (bh_buf_printf(c->out, "%s %s\n", id, c->dest->props.v[i].value) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    }
    return 0;
}

static int block_unassign(struct bh_call *c)
{
    struct devarg d;
    if (device_arg(c, &d) < 0)
        return -1;
    const struct bh_kv *kv = find_assignment(c->dest, &d);
    if (!kv)
        return bh_exc(c->exc, "DeviceNotAssigned", "block device %s not assigned to %s", d.port, c->dest->name);
    char key[512], devs[192];
    snprintf(key, sizeof key, "%s", kv->key);
    const char *devid = key_devid(key);
    dev_str(devs, sizeof devs, d.backend, d.port, devid);
    if (store_assignment(c, key, NULL) < 0)
        return -1;
    bh_events_emit(c->dest->name, "device-unassign:block", (const char *const[]){ "device", devs, NULL });
    return 0;
}

static int block_set_assignment(struct bh_call *c)
{
    struct devarg d;
    if (device_arg(c, &d) < 0)
        return -1;
    static const char *const modes[] = { "required", "ask-to-attach", "auto-attach" };
    const char *mode = NULL;
    for (size_t i = 0; i < 3; i++)
        if (c->req->payload_len == strlen(modes[i]) && !memcmp(c->req->payload, modes[i], c->req->payload_len))
            mode = modes[i];
    if (!mode && c->req->payload_len == 6 && !memcmp(c->req->payload, "manual", 6))
        return bh_exc(c->exc, "QubesValueError", "Cannot change assignment mode to 'manual'");
    if (!mode)
        return bh_exc(c->exc, "QubesUnrecognizedDeviceAssignmentMode", "Unrecognized assignment mode");
    const struct bh_kv *kv = find_assignment(c->dest, &d);
    char devs[400];
    dev_str(devs, sizeof devs, d.backend, d.port, d.devid);
    if (!kv)
        return bh_exc(c->exc, "QubesValueError", "Device %s not assigned to %s", devs, c->dest->name);
    char key[512];
    snprintf(key, sizeof key, "%s", kv->key);
    struct bh_dev_assignment as;
    char msg[512];
    const char *devid = key_devid(key);
    if (bh_dev_assignment_parse(kv->value, strlen(kv->value), d.backend, d.port, "block", devid, &as, msg,
                                sizeof msg) < 0)
        return bh_exc(c->exc, "QubesException", "stored assignment unreadable: %s", msg);
    if (!strcmp(as.mode, mode))
        return 0;
    dev_str(devs, sizeof devs, d.backend, d.port, devid);
    char opts[1024], val[2048];
    dict_str(opts, sizeof opts, &as.options);
    if (serialize_assignment(val, sizeof val, d.backend, d.port, devid, mode, c->dest->name, &as.options) < 0)
        return bh_exc(c->exc, "QubesException", "assignment too long");
    bh_events_emit(c->dest->name, "device-pre-assign:block", (const char *const[]){ "device", devs, "options", opts, NULL });
    if (store_assignment(c, key, val) < 0)
        return -1;
    bh_events_emit(c->dest->name, "device-assignment-changed:block", (const char *const[]){ "device", devs, NULL });
    return 0;
}

/* Assignment i of q's properties, if that property is one: its device and what it says
 * (id holds the strings backend, port and devid point into). */
static bool assignment_at(const struct bh_qube *q, size_t i, char id[512], const char **backend, const char **port,
                          const char **devid, struct bh_dev_assignment *as)
{
    const char *k = q->props.v[i].key;
    if (strncmp(k, ASSIGN_PREFIX, strlen(ASSIGN_PREFIX)))
        return false;
    snprintf(id, 512, "%s", k + strlen(ASSIGN_PREFIX));
    char *plus = strchr(id, '+'), *colon = plus ? strchr(plus, ':') : NULL;
    if (!plus || !colon)
        return false;
    *plus = '\0', *colon = '\0';
    *backend = id, *port = plus + 1, *devid = colon + 1;
    char msg[512];
    return bh_dev_assignment_parse(q->props.v[i].value, strlen(q->props.v[i].value), *backend, *port, "block",
                                   *devid, as, msg, sizeof msg) == 0;
}

/* The device an assignment names, if dom0 exports it as named and nobody has it. */
static bool assigned_device_free(const char *backend, const char *port, const char *devid, struct bh_blockdev *dev)
{
    return !strcmp(backend, "dom0") && bh_blockdev_get(port, dev) == 0 &&
           (!strcmp(devid, "*") || !strcmp(devid, dev->device_id)) && !find_att(backend, port);
}

/* Qubes' start check (QubesVM.start, before anything is started): a `required`
 * assignment whose device does not exist stops the start, with Qubes' message
 * ("Block device dom0:loop7::7 not available", str() of the assignment). A device that
 * exists but is attached to another qube is refused the same way here (Xen's start of
 * the domain would fail on it later). */
int bh_devices_required_check(struct bh_app *app, struct bh_qube *q, struct bh_exc *e)
{
    (void)app;
    for (size_t i = 0; i < q->props.n; i++) {
        char id[512];
        const char *backend, *port, *devid;
        struct bh_dev_assignment as;
        struct bh_blockdev dev;
        if (assignment_at(q, i, id, &backend, &port, &devid, &as) && !strcmp(as.mode, "required") &&
            !assigned_device_free(backend, port, devid, &dev))
            return bh_exc(e, "QubesException", "Block device %s:%s:%s not available", backend, port, devid);
    }
    return 0;
}

/* ---- ask-to-attach (Qubes 4.3: the block extension's domain-start handler asks the
 * person, through the GUI VM's device agent, before it attaches; only the qube the
 * answer names gets the device). Here the question goes through the same prompt as a
 * qrexec `ask` (qrexec-policy-ask, relayed to qrexec-policy-agent or a window; see
 * docs/qrexec.md): source = the backend, service = device.block+PORT, the qube as the
 * one choice and default. The prompt runs beside the event loop (its stdout on a pipe
 * the loop watches); the answer is acted on only if the same qube is still running
 * (same start), the assignment still says ask-to-attach and the device is still free. */
#define MAX_ASKS 32
static struct dev_ask {
    bool used;
    uint32_t qid;
    int64_t start_time;
    pid_t pid;
    int fd;
    size_t len;
    char out[128];
    char key[512]; /* the assignment's property key */
} asks[MAX_ASKS];

static struct bh_app *ask_app;

static void ask_end(struct dev_ask *a)
{
    bh_loop_del(a->fd);
    close(a->fd);
    int st = -1;
    while (waitpid(a->pid, &st, 0) < 0 && errno == EINTR)
        ;
    a->used = false;
    struct bh_qube *q = bh_app_find_qid(ask_app, a->qid);
    a->out[a->len] = '\0';
    char *nl = strchr(a->out, '\n');
    if (nl)
        *nl = '\0';
    if (!q || !bh_qube_is_running(q) || q->rt.start_time != a->start_time)
        return;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0 || strcmp(a->out, q->name)) {
        bh_info("%s: assigned block device %s not attached: the person did not choose it", q->name,
                a->key + strlen(ASSIGN_PREFIX));
        return;
    }
    for (size_t i = 0; i < q->props.n; i++) {
        char id[512];
        const char *backend, *port, *devid;
        struct bh_dev_assignment as;
        struct bh_blockdev dev;
        if (strcmp(q->props.v[i].key, a->key) || !assignment_at(q, i, id, &backend, &port, &devid, &as) ||
            strcmp(as.mode, "ask-to-attach"))
            continue;
        struct bh_exc ae = { 0 };
        if (!assigned_device_free(backend, port, devid, &dev))
            bh_warn("%s: assigned block device %s:%s no longer free", q->name, backend, port);
        else if (do_attach(ask_app, q, backend, &dev, &as.options, &ae) < 0)
            bh_warn("%s: assigned block device %s:%s not attached: %s", q->name, backend, port, ae.msg);
        return;
    }
}

static void ask_readable(void *ctx, uint32_t events)
{
    struct dev_ask *a = ctx;
    ssize_t n = read(a->fd, a->out + a->len, sizeof a->out - 1 - a->len);
    if (n > 0 && a->len + (size_t)n < sizeof a->out - 1) {
        a->len += (size_t)n;
        return;
    }
    if (n < 0 && errno == EINTR)
        return;
    if (n > 0) /* more than a qube name: not an answer */
        a->len = 0;
    ask_end(a);
}

static void ask_to_attach(struct bh_app *app, struct bh_qube *q, const char *key, const char *port)
{
    char prog[PATH_MAX];
    const char *env = getenv("BULKHEAD_QREXEC_ASK");
    static const char *const rels[] = { ".", "../qrexec", "../lib/bulkhead", NULL };
    if (env && *env)
        snprintf(prog, sizeof prog, "%s", env);
    else if (bh_find_near_self(rels, "qrexec-policy-ask", X_OK, prog, sizeof prog) < 0) {
        bh_warn("%s: no qrexec-policy-ask to ask about block device %s", q->name, port);
        return;
    }
    struct dev_ask *a = NULL;
    for (size_t i = 0; i < MAX_ASKS && !a; i++)
        if (!asks[i].used)
            a = &asks[i];
    if (!a) {
        bh_warn("%s: too many device questions waiting; block device %s not asked for", q->name, port);
        return;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0)
        return;
    char service[128];
    snprintf(service, sizeof service, "device.block+%s", port);
    pid_t pid = fork();
    if (pid < 0) {
        close(p[0]);
        close(p[1]);
        return;
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0)
            _exit(127);
        char *const argv[] = { prog, "--source", "dom0", "--service", service, "--default", q->name, "--",
                               q->name, NULL };
        execv(prog, argv);
        _exit(127);
    }
    close(p[1]);
    *a = (struct dev_ask){ .used = true, .qid = q->qid, .start_time = q->rt.start_time, .pid = pid, .fd = p[0] };
    snprintf(a->key, sizeof a->key, "%s", key);
    ask_app = app;
    if (bh_loop_add(p[0], EPOLLIN, ask_readable, a) < 0) {
        ask_end(a);
        return;
    }
    bh_info("%s: asking whether to attach block device dom0:%s", q->name, port);
}

/* At a start, as Qubes: `required` assignments are part of the domain it starts (a
 * failure fails the start: the first error is returned, the caller kills the qube);
 * `auto-attach` ones are attached by the block extension's domain-start handler (a
 * failure is logged); `ask-to-attach` ones are asked about first (above). */
int bh_devices_attach_assigned(struct bh_app *app, struct bh_qube *q, bool required, struct bh_exc *e)
{
    for (size_t i = 0; i < q->props.n; i++) {
        char id[512];
        const char *backend, *port, *devid;
        struct bh_dev_assignment as;
        if (!assignment_at(q, i, id, &backend, &port, &devid, &as))
            continue;
        bool ask = !required && !strcmp(as.mode, "ask-to-attach");
        if (!ask && strcmp(as.mode, required ? "required" : "auto-attach"))
            continue;
        struct bh_blockdev dev;
        if (!assigned_device_free(backend, port, devid, &dev)) {
            if (required)
                return bh_exc(e, "QubesException", "Block device %s:%s:%s not available", backend, port, devid);
            continue;
        }
        if (ask) {
            ask_to_attach(app, q, q->props.v[i].key, port);
            continue;
        }
        struct bh_exc ae = { 0 };
        if (do_attach(app, q, backend, &dev, &as.options, &ae) < 0) {
            if (required)
                return bh_exc(e, "QubesException", "%s", ae.msg);
            bh_warn("%s: assigned block device %s:%s not attached: %s", q->name, backend, port, ae.msg);
        }
    }
    return 0;
}

static int block_detach(struct bh_call *c)
{
    struct devarg d;
    if (device_arg(c, &d) < 0)
        return -1;
    struct attachment *a = find_att(d.backend, d.port);
    if (!a || strcmp(a->frontend, c->dest->name))
        return bh_exc(c->exc, "DeviceNotAssigned", "block device %s not attached to %s", d.port, c->dest->name);
    emit_detach(a, true);
    const struct bh_driver *drv = bh_glue_driver(c->app, c->dest);
    if (drv && drv->block_detach && bh_qube_is_running(c->dest)) {
        struct bh_spec_buf sb;
        bh_glue_spec(c->app, c->dest, &sb);
        bh_error err = { 0 };
        int r = drv->block_detach(&sb.spec, a->major, a->minor, a->node, &err);
        bh_glue_spec_free(&sb);
        if (r < 0)
            return bh_exc(c->exc, "QubesException", "Detaching %s:%s from %s failed: %s", a->backend, a->port,
                          c->dest->name, err.msg);
    }
    struct attachment gone = *a;
    drop_att(a);
    emit_detach(&gone, false);
    return 0;
}

/* Available, Assigned, Attached: there are none (with or without a device named). */
static int dev_none(struct bh_call *c)
{
    /* Available takes a port id; Assigned and Attached take BACKEND+PORT. */
    struct devarg d;
    if (c->req->arg[0] && !strstr(c->req->method, ".Available") && device_arg(c, &d) < 0)
        return -1;
    return 0;
}

static int dev_available(struct bh_call *c) { return is_block(c) ? block_available(c) : dev_none(c); }
static int dev_attached(struct bh_call *c) { return is_block(c) ? block_attached(c) : dev_none(c); }
static int dev_assigned(struct bh_call *c) { return is_block(c) ? block_assigned(c) : dev_none(c); }

static int dev_attach(struct bh_call *c)
{
    if (is_block(c))
        return block_attach(c);
    struct devarg d;
    if (device_arg(c, &d) < 0)
        return -1;
    if (!bh_qube_is_running(c->dest))
        return bh_exc(c->exc, "QubesVMNotRunningError", "VM not running, cannot attach device, do you mean `assign`?");
    return bh_exc(c->exc, "ProtocolError", "Cannot attach ambiguous %s device.", class_of(c));
}

static int dev_assign(struct bh_call *c)
{
    if (is_block(c))
        return block_assign(c);
    struct devarg d;
    if (device_arg(c, &d) < 0)
        return -1;
    return bh_exc(c->exc, "QubesException", "Assigning %s devices is not supported by Bulkhead yet", class_of(c));
}

static int dev_not_assigned(struct bh_call *c)
{
    struct devarg d;
    if (device_arg(c, &d) < 0)
        return -1;
    bool detach = strstr(c->req->method, ".Detach") != NULL;
    if (detach && is_block(c))
        return block_detach(c);
    if (is_block(c))
        return strstr(c->req->method, ".Unassign") ? block_unassign(c) : block_set_assignment(c);
    return bh_exc(c->exc, "DeviceNotAssigned", "%s device %s not %s to %s", class_of(c), d.port,
                  detach ? "attached" : "assigned", c->dest->name);
}

/* ---- denied device interfaces (7 characters each: class b, u, m, p or any, then 6 hex digits or stars) ---- */

#define IFC_LEN 7

static int cmp_ifc(const void *a, const void *b) { return memcmp(a, b, IFC_LEN); }

/* Splits text into 7-character interfaces; Qubes' errors for a bad length or encoding. */
static int parse_ifcs(struct bh_call *c, const char *text, size_t len, char (**out)[IFC_LEN], size_t *n)
{
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)text[i] > 0x7e || (unsigned char)text[i] < 0x20)
            return bh_exc(c->exc, "ProtocolError", "Device interface contains non-ASCII characters");
    /* Bounded (has_dup is quadratic; devices_denied holds at most as many). */
    if (len > IFC_LEN * 1024)
        return bh_exc(c->exc, "QubesValueError", "Too many device interfaces (at most 1024)");
    if (len % IFC_LEN)
        return bh_exc(c->exc, "QubesValueError", "Invalid length of interfaces='%.*s' (is %zu, expected multiple of 7)",
                      (int)(len > 200 ? 200 : len), text, len);
    *n = len / IFC_LEN;
    *out = calloc(*n ? *n : 1, IFC_LEN);
    if (!*out)
        return bh_exc(c->exc, "QubesException", "out of memory");
    memcpy(*out, text, len);
    return 0;
}

static bool has_dup(char (*v)[IFC_LEN], size_t n)
{
    for (size_t i = 0; i < n; i++)
        for (size_t j = i + 1; j < n; j++)
            if (!memcmp(v[i], v[j], IFC_LEN))
                return true;
    return false;
}

/* Sorted, without duplicates, as Qubes' setter stores it; then through the property. */
static int set_denied(struct bh_call *c, char (*v)[IFC_LEN], size_t n)
{
    qsort(v, n, IFC_LEN, cmp_ifc);
    _cleanup_free_ char *s = malloc(n * IFC_LEN + 1);
    if (!s)
        return bh_exc(c->exc, "QubesException", "out of memory");
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        if (!i || memcmp(v[i], v[i - 1], IFC_LEN)) {
            memcpy(s + len, v[i], IFC_LEN);
            len += IFC_LEN;
        }
    s[len] = '\0';
    _cleanup_free_ char *cur = bh_qube_prop(c->app, c->dest, "devices_denied");
    if (cur && !strcmp(cur, s))
        return 0; /* as Qubes: nothing changed, nothing saved */
    return bh_prop_set(c->app, c->dest, bh_prop_find(c->dest, "devices_denied"), s, len, c->exc);
}

static int denied_list(struct bh_call *c)
{
    _cleanup_free_ char *cur = bh_qube_prop(c->app, c->dest, "devices_denied");
    size_t len = cur ? strlen(cur) : 0;
    for (size_t i = 0; i + IFC_LEN <= len; i += IFC_LEN)
        if (bh_buf_printf(c->out, "%s%.7s", i ? "\n" : "", cur + i) < 0)
            return bh_exc(c->exc, "QubesException", "out of memory");
    return 0;
}

static int denied_add(struct bh_call *c)
{
    _cleanup_free_ char *cur = bh_qube_prop(c->app, c->dest, "devices_denied");
    _cleanup_free_ char(*add)[IFC_LEN] = NULL;
    size_t na;
    if (parse_ifcs(c, c->req->payload, c->req->payload_len, &add, &na) < 0)
        return -1;
    if (has_dup(add, na))
        return bh_exc(c->exc, "ProtocolError", "Duplicated device interfaces in payload.");
    size_t nc = cur ? strlen(cur) / IFC_LEN : 0;
    _cleanup_free_ char(*all)[IFC_LEN] = calloc(nc + na + 1, IFC_LEN);
    if (!all)
        return bh_exc(c->exc, "QubesException", "out of memory");
    memcpy(all, cur ? cur : "", nc * IFC_LEN);
    memcpy(all + nc, add, na * IFC_LEN);
    return set_denied(c, all, nc + na);
}

static int denied_remove(struct bh_call *c)
{
    _cleanup_free_ char *cur = bh_qube_prop(c->app, c->dest, "devices_denied");
    size_t nc = cur ? strlen(cur) / IFC_LEN : 0;
    _cleanup_free_ char(*keep)[IFC_LEN] = calloc(nc + 1, IFC_LEN);
    if (!keep)
        return bh_exc(c->exc, "QubesException", "out of memory");
    size_t nk = 0;
    if (!(c->req->payload_len == 3 && !memcmp(c->req->payload, "all", 3))) {
        _cleanup_free_ char(*rm)[IFC_LEN] = NULL;
        size_t nr;
        if (parse_ifcs(c, c->req->payload, c->req->payload_len, &rm, &nr) < 0)
            return -1;
        if (has_dup(rm, nr))
            return bh_exc(c->exc, "ProtocolError", "Duplicated device interfaces in payload.");
        for (size_t i = 0; i < nc; i++) {
            bool gone = false;
            for (size_t j = 0; j < nr && !gone; j++)
                gone = !memcmp(cur + i * IFC_LEN, rm[j], IFC_LEN);
            if (!gone)
                memcpy(keep[nk++], cur + i * IFC_LEN, IFC_LEN);
        }
    }
    return set_denied(c, keep, nk);
}

#define NP BH_M_NOPAYLOAD
#define NA BH_M_NOARG
#define A BH_M_ARG
#define CLASS_METHODS(cls)                                              \
    { "admin.vm.device." cls ".Available", dev_available, NP },        \
    { "admin.vm.device." cls ".Assigned", dev_assigned, NP },          \
    { "admin.vm.device." cls ".Attached", dev_attached, NP },          \
    { "admin.vm.device." cls ".Assign", dev_assign, A },               \
    { "admin.vm.device." cls ".Unassign", dev_not_assigned, A | NP },  \
    { "admin.vm.device." cls ".Attach", dev_attach, A },               \
    { "admin.vm.device." cls ".Detach", dev_not_assigned, A | NP },    \
    { "admin.vm.device." cls ".Set.assignment", dev_not_assigned, A }

const struct bh_method bh_api_device[] = {
    { "admin.deviceclass.List", deviceclass_list, BH_M_DOM0 | NA | NP },
    CLASS_METHODS("pci"),
    CLASS_METHODS("block"),
    { "admin.vm.device.denied.List", denied_list, NA | NP },
    { "admin.vm.device.denied.Add", denied_add, NA },
    { "admin.vm.device.denied.Remove", denied_remove, NA },
    { NULL, NULL, 0 },
};
