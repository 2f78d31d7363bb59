/* Qubes' device API: admin.deviceclass.List, admin.vm.device.<class>.*, and the
 * per-qube list of denied device interfaces (admin.vm.device.denied.*, stored in the
 * devices_denied property).
 *
 * Bulkhead exports no devices yet: every class answers truthfully that nothing is
 * available, assigned or attached, so that clients which walk the device tree (qvm-clone,
 * Qubes.clone_vm, qvm-device ls) work, and a request to attach or assign is refused
 * with the error Qubes gives for a device that does not exist. */
#include "api.h"
#include "cleanup.h"
#include "props.h"
#include <stdlib.h>
#include <string.h>

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

/* The argument names a device: BACKEND+PORT[:DEVICE_ID], BACKEND an existing qube. */
static int device_arg(struct bh_call *c, char *port, size_t n)
{
    const char *plus = strchr(c->req->arg, '+');
    if (!plus || plus == c->req->arg || !plus[1])
        return bh_exc(c->exc, "ProtocolError", "Invalid device argument: expected BACKEND+PORT");
    char backend[64];
    size_t bl = (size_t)(plus - c->req->arg);
    if (bl >= sizeof backend)
        return bh_exc(c->exc, "QubesVMNotFoundError", "No such domain: '%.*s'", (int)bl, c->req->arg);
    memcpy(backend, c->req->arg, bl);
    backend[bl] = '\0';
    if (!bh_app_find(c->app, backend))
        return bh_exc(c->exc, "QubesVMNotFoundError", "No such domain: '%s'", backend);
    size_t pl = strcspn(plus + 1, ":");
    snprintf(port, n, "%.*s", (int)pl, plus + 1);
    return 0;
}

/* Available, Assigned, Attached: there are none (with or without a device named). */
static int dev_none(struct bh_call *c)
{
    /* Available takes a port id; Assigned and Attached take BACKEND+PORT. */
    char port[128];
    if (c->req->arg[0] && !strstr(c->req->method, ".Available") && device_arg(c, port, sizeof port) < 0)
        return -1;
    return 0;
}

static int dev_attach(struct bh_call *c)
{
    char port[128];
    if (device_arg(c, port, sizeof port) < 0)
        return -1;
    return bh_exc(c->exc, "ProtocolError", "Cannot attach unknown %s device.", class_of(c));
}

static int dev_assign(struct bh_call *c)
{
    char port[128];
    if (device_arg(c, port, sizeof port) < 0)
        return -1;
    return bh_exc(c->exc, "QubesException", "Assigning %s devices is not supported by Bulkhead yet", class_of(c));
}

static int dev_not_assigned(struct bh_call *c)
{
    char port[128];
    if (device_arg(c, port, sizeof port) < 0)
        return -1;
    bool detach = strstr(c->req->method, ".Detach") != NULL;
    return bh_exc(c->exc, "DeviceNotAssigned", "%s device %s not %s to %s", class_of(c), port,
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
    { "admin.vm.device." cls ".Available", dev_none, NP },             \
    { "admin.vm.device." cls ".Assigned", dev_none, NP },              \
    { "admin.vm.device." cls ".Attached", dev_none, NP },              \
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
