#include "props.h"
#include "driver/driver.h"
#include "cleanup.h"
#include "events.h"
#include "hooks.h"
#include "names.h"
#include "store.h"
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct bh_hooks bh_hooks;

typedef char *(*deflt_fn)(struct bh_app *, const struct bh_qube *);
typedef int (*check_fn)(struct bh_app *, struct bh_qube *, const char *, struct bh_exc *);

struct bh_prop_def {
    const char *name;
    enum bh_ptype type;
    unsigned classes; /* 0 = global property */
    unsigned flags;
    deflt_fn deflt;   /* NULL: no default */
    check_fn check;   /* extra validation after the type's own */
    long long min, max;
    const char *help;
};

const char *bh_ptype_name(enum bh_ptype t)
{
    static const char *const n[] = { "str", "int", "bool", "vm", "label" };
    return n[t];
}

static char *fmt_ll(long long v)
{
    char b[32];
    snprintf(b, sizeof b, "%lld", v);
    return strdup(b);
}

char *bh_global_prop(struct bh_app *app, const char *name)
{
    const struct bh_prop_def *d = bh_prop_find(NULL, name);
    if (!d)
        return NULL;
    bool def, has;
    return bh_prop_value(app, NULL, d, &def, &has);
}

char *bh_qube_prop(struct bh_app *app, const struct bh_qube *q, const char *name)
{
    const struct bh_prop_def *d = bh_prop_find(q, name);
    if (!d)
        return NULL;
    bool def, has;
    return bh_prop_value(app, q, d, &def, &has);
}

bool bh_qube_prop_bool(struct bh_app *app, const struct bh_qube *q, const char *name)
{
    _cleanup_free_ char *v = bh_qube_prop(app, q, name);
    return v && !strcmp(v, "True");
}

long long bh_qube_prop_int(struct bh_app *app, const struct bh_qube *q, const char *name)
{
    _cleanup_free_ char *v = bh_qube_prop(app, q, name);
    return v ? strtoll(v, NULL, 10) : 0;
}

/* The qube a vm-typed property of q points at (default applied), or NULL. */
static struct bh_qube *qube_ref(struct bh_app *app, const struct bh_qube *q, const char *prop)
{
    _cleanup_free_ char *v = bh_qube_prop(app, q, prop);
    return v && *v ? bh_app_find(app, v) : NULL;
}

/* ---- defaults ---- */

#define CONST_DEFAULT(fname, value) \
    static char *fname(struct bh_app *a, const struct bh_qube *q) { (void)a; (void)q; return strdup(value); }
CONST_DEFAULT(d_true, "True")
CONST_DEFAULT(d_false, "False")
CONST_DEFAULT(d_400, "400")
CONST_DEFAULT(d_2, "2")
CONST_DEFAULT(d_3, "3")
CONST_DEFAULT(d_60, "60")
CONST_DEFAULT(d_empty, "")
CONST_DEFAULT(d_default_str, "default")
CONST_DEFAULT(d_mac, "00:16:3e:5e:6c:00")
CONST_DEFAULT(d_kbd, "us++")
CONST_DEFAULT(d_pool, "default")
CONST_DEFAULT(d_dom0, "dom0")
CONST_DEFAULT(d_netmask, "255.255.255.255")

#define GLOBAL_DEFAULT(fname, gname) \
    static char *fname(struct bh_app *a, const struct bh_qube *q) { (void)q; return bh_global_prop(a, gname); }
GLOBAL_DEFAULT(d_g_kernel, "default_kernel")
GLOBAL_DEFAULT(d_g_mgmt_dispvm, "management_dispvm")
GLOBAL_DEFAULT(d_g_qrexec_timeout, "default_qrexec_timeout")
GLOBAL_DEFAULT(d_g_shutdown_timeout, "default_shutdown_timeout")
GLOBAL_DEFAULT(d_g_pool, "default_pool")
GLOBAL_DEFAULT(d_g_guivm, "default_guivm")
GLOBAL_DEFAULT(d_g_audiovm, "default_audiovm")

static char *d_virt_mode_global(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    (void)q;
    /* The strongest engine the host offers at a desktop's speed: pvh where KVM works
     * and the vm engine can run, else ns (docs/vm-engine.md, "How to choose"). */
    return strdup(bh_driver_default_virt_mode());
}

static char *d_installed_kernel(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    (void)q;
    char name[256];
    return strdup(bh_kernel_default(name, sizeof name) == 0 ? name : "");
}

static char *d_netvm(struct bh_app *a, const struct bh_qube *q)
{
    /* A disposable inherits its template's network; a qube that provides network is
     * not itself behind one unless set. */
    if (q->klass == BH_DISPVM) {
        struct bh_qube *t = qube_ref(a, q, "template");
        if (t)
            return bh_qube_prop(a, t, "netvm");
    }
    /* Templates are not on the network by default (Qubes updates them through a proxy);
     * a qube that provides network is not itself behind one unless set. */
    if (q->klass == BH_TEMPLATEVM || bh_qube_prop_bool(a, q, "provides_network"))
        return strdup("");
    return bh_global_prop(a, "default_netvm");
}

static char *d_virt_mode(struct bh_app *a, const struct bh_qube *q)
{
    /* As Qubes: a disposable runs in its disposable template's engine (a pvh template
     * gives VM disposables). */
    /* A qube that provides network runs in namespaces: the vm engine cannot be a
     * netvm (docs/vm-engine.md); its clients may be VMs. (A disposable netvm too.) */
    if (bh_qube_prop_bool(a, q, "provides_network"))
        return strdup("ns");
    if (q->klass == BH_DISPVM) {
        struct bh_qube *t = qube_ref(a, q, "template");
        if (t)
            return bh_qube_prop(a, t, "virt_mode");
    }
    return bh_global_prop(a, "default_virt_mode");
}

static char *d_default_dispvm(struct bh_app *a, const struct bh_qube *q)
{
    if (q->klass == BH_DISPVM) {
        struct bh_qube *t = qube_ref(a, q, "template");
        if (t)
            return bh_qube_prop(a, t, "default_dispvm");
    }
    return bh_global_prop(a, "default_dispvm");
}

static char *d_label(struct bh_app *a, const struct bh_qube *q)
{
    if (q->klass == BH_DISPVM) {
        struct bh_qube *t = qube_ref(a, q, "template");
        if (t)
            return bh_qube_prop(a, t, "label");
    }
    return NULL;
}

static char *d_default_user(struct bh_app *a, const struct bh_qube *q)
{
    struct bh_qube *t = (q->klass == BH_APPVM || q->klass == BH_DISPVM) ? qube_ref(a, q, "template") : NULL;
    return t ? bh_qube_prop(a, t, "default_user") : strdup("user");
}

static char *d_include_in_backups(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    /* As Qubes: a disposable is backed up unless it is destroyed at its halt. */
    if (q->klass == BH_DISPVM)
        return strdup(bh_kv_get(&q->features, "internal.auto-cleanup") ? "False" : "True");
    return strdup("True");
}

static char *d_updateable(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    return strdup(q->klass == BH_TEMPLATEVM || q->klass == BH_STANDALONEVM || q->klass == BH_ADMINVM ? "True" : "False");
}

/* A disposable's auto_cleanup is whether bulkheadd destroys it at its halt (the
 * internal.auto-cleanup feature that CreateDisposable and preloading set). */
static char *d_auto_cleanup(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    return strdup(bh_kv_get(&q->features, "internal.auto-cleanup") ? "True" : "False");
}

static char *d_is_preload(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    return strdup(bh_kv_get(&q->features, "preload-dispvm") ? "True" : "False");
}

/* As Qubes: the number in a disposable's name "dispN" (its qid if it has no such name). */
static char *d_dispid(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    const char *n = q->name;
    if (!strncmp(n, "disp", 4) && n[4] >= '1' && n[4] <= '9' && strspn(n + 4, "0123456789") == strlen(n + 4) &&
        strlen(n + 4) < 10)
        return strdup(n + 4);
    return fmt_ll(q->qid);
}

/* As Qubes: an app qube boots in its template's appvm_default_bootmode. */
static char *d_bootmode(struct bh_app *a, const struct bh_qube *q)
{
    struct bh_qube *t = (q->klass == BH_APPVM || q->klass == BH_DISPVM) ? qube_ref(a, q, "template") : NULL;
    if (t && t->klass == BH_TEMPLATEVM)
        return bh_qube_prop(a, t, "appvm_default_bootmode");
    return strdup("default");
}

/* dom0's and the system's memory: the host's, in MiB. */
static char *d_host_maxmem(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    (void)q;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    return fmt_ll(pages > 0 && psize > 0 ? (long long)pages * psize / (1024 * 1024) : 0);
}

static char *d_no_cpus(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    (void)q;
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return fmt_ll(n > 0 ? n : 1);
}

static char *d_maxmem(struct bh_app *a, const struct bh_qube *q)
{
    return q->klass == BH_ADMINVM ? d_host_maxmem(a, q) : strdup("4000");
}

static char *d_stubdom_xid(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    (void)q;
    return strdup("-1");
}

static bool is_networked(struct bh_app *a, const struct bh_qube *q)
{
    if (q->klass == BH_ADMINVM)
        return false;
    if (bh_qube_prop_bool(a, q, "provides_network"))
        return true;
    _cleanup_free_ char *n = bh_qube_prop(a, q, "netvm");
    return n && *n;
}

static char *d_ip(struct bh_app *a, const struct bh_qube *q)
{
    if (!is_networked(a, q))
        return strdup("");
    /* Qubes' rule: 10.137.(qid>>8).(qid&255); disposables live in 10.138/16. */
    char b[32];
    snprintf(b, sizeof b, "10.%d.%u.%u", q->klass == BH_DISPVM ? 138 : 137, (q->qid >> 8) & 255, q->qid & 255);
    return strdup(b);
}

static char *d_visible_ip(struct bh_app *a, const struct bh_qube *q) { return bh_qube_prop(a, q, "ip"); }

static char *d_dns(struct bh_app *a, const struct bh_qube *q)
{
    return strdup(is_networked(a, q) ? "10.139.1.1 10.139.1.2" : "");
}

static char *d_gateway(struct bh_app *a, const struct bh_qube *q)
{
    /* The address this qube offers as gateway to the qubes behind it. */
    return bh_qube_prop_bool(a, q, "provides_network") ? bh_qube_prop(a, q, "visible_ip") : strdup("");
}

static char *d_visible_gateway(struct bh_app *a, const struct bh_qube *q)
{
    struct bh_qube *n = qube_ref(a, q, "netvm");
    return n ? bh_qube_prop(a, n, "gateway") : strdup("");
}

static char *d_visible_netmask(struct bh_app *a, const struct bh_qube *q)
{
    return is_networked(a, q) ? d_netmask(a, q) : strdup("");
}

/* Qubes' features.check_with_netvm("ipv6", False): the qube's own value if it has one,
 * else its netvm's (recursively); a feature is true when its value is not empty. */
static bool ipv6_with_netvm(struct bh_app *a, const struct bh_qube *q)
{
    for (int hops = 0; q && hops < 64; hops++) {
        const char *v = bh_kv_get(&q->features, "ipv6");
        if (v)
            return *v != '\0';
        q = qube_ref(a, q, "netvm");
    }
    return false;
}

static char *d_ip6(struct bh_app *a, const struct bh_qube *q)
{
    if (!is_networked(a, q) || !ipv6_with_netvm(a, q))
        return strdup("");
    /* Qubes' site-local prefix with the IPv4 address's low half (0xa89 is 10.137.,
     * 0xa8a 10.138. for disposables), so both addresses carry the same number. */
    char b[64];
    snprintf(b, sizeof b, "fd09:24ef:4179::%s:%x", q->klass == BH_DISPVM ? "a8a" : "a89", q->qid & 0xffff);
    return strdup(b);
}

static char *d_visible_ip6(struct bh_app *a, const struct bh_qube *q) { return bh_qube_prop(a, q, "ip6"); }

static char *d_gateway6(struct bh_app *a, const struct bh_qube *q)
{
    if (!ipv6_with_netvm(a, q) || !bh_qube_prop_bool(a, q, "provides_network"))
        return strdup("");
    return bh_qube_prop(a, q, "visible_ip6");
}

static char *d_visible_gateway6(struct bh_app *a, const struct bh_qube *q)
{
    if (!ipv6_with_netvm(a, q))
        return strdup("");
    struct bh_qube *n = qube_ref(a, q, "netvm");
    return n ? bh_qube_prop(a, n, "gateway6") : strdup("");
}

static char *d_xid(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    if (q->klass == BH_ADMINVM)
        return strdup("0");
    return bh_qube_is_running(q) ? fmt_ll(q->qid) : strdup("-1");
}

static char *d_start_time(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    return bh_qube_is_running(q) && q->rt.start_time ? fmt_ll(q->rt.start_time) : strdup("");
}

static char *d_icon(struct bh_app *a, const struct bh_qube *q)
{
    static const char *const prefix[] = { "adminvm", "templatevm", "appvm", "dispvm", "standalonevm" };
    const struct bh_label *l = bh_label_of(a, q);
    char b[64];
    snprintf(b, sizeof b, "%s-%s", prefix[q->klass], l ? l->name : "black");
    return strdup(b);
}

static char *d_klass(struct bh_app *a, const struct bh_qube *q)
{
    (void)a;
    return strdup(bh_klass_name(q->klass));
}

/* ---- extra checks ---- */

static int chk_not_self(struct bh_qube *q, const char *v, struct bh_exc *e)
{
    if (q && !strcmp(v, q->name))
        return bh_exc(e, "QubesValueError", "Qube cannot reference itself");
    return 0;
}

/* True if some qube's netvm chain, defaults included, never ends. */
static bool netvm_cycle(struct bh_app *a)
{
    for (size_t i = 0; i < a->nqubes; i++) {
        size_t hops = 0;
        for (struct bh_qube *cur = qube_ref(a, a->qubes[i], "netvm"); cur; cur = qube_ref(a, cur, "netvm"))
            if (++hops > a->nqubes)
                return true;
    }
    return false;
}

/* Checks for netvm loops with key=v applied to l, then puts l back. The new value has
 * to be in place: defaults can make a chain run through the qube being changed (a
 * disposable's netvm is its template's, so setting the template's netvm to the
 * disposable loops without ever reaching the template again). */
static int chk_no_netvm_loop(struct bh_app *a, struct bh_kvlist *l, const char *key, const char *v, struct bh_exc *e)
{
    const char *cur = bh_kv_get(l, key);
    _cleanup_free_ char *old = cur ? strdup(cur) : NULL;
    if ((cur && !old) || bh_kv_set(l, key, v) < 0)
        return bh_exc(e, "QubesException", "out of memory");
    bool loop = netvm_cycle(a);
    if (old ? bh_kv_set(l, key, old) < 0 : !bh_kv_del(l, key))
        abort(); /* cannot put the model back as it was: do not serve a wrong one */
    return loop ? bh_exc(e, "QubesValueError", "Loops in network are unsupported") : 0;
}

static int chk_netvm(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    if (!*v)
        return 0;
    struct bh_qube *n = bh_app_find(a, v);
    if (chk_not_self(q, v, e) < 0)
        return -1;
    if (!bh_qube_prop_bool(a, n, "provides_network"))
        return bh_exc(e, "QubesValueError", "VM %s does not provide network (provides_network=False)", v);
    /* As Qubes: a running qube is re-plugged at once, which needs a running netvm. */
    if (q && bh_qube_is_running(q) && !bh_qube_is_running(n))
        return bh_exc(e, "QubesVMNotStartedError", "Cannot dynamically attach to stopped NetVM: %s", v);
    return chk_no_netvm_loop(a, q ? &q->props : &a->globals, q ? "netvm" : "default_netvm", v, e);
}

static int chk_template(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    struct bh_qube *t = bh_app_find(a, v);
    if (q && q->klass == BH_DISPVM) {
        if (!bh_qube_prop_bool(a, t, "template_for_dispvms"))
            return bh_exc(e, "QubesValueError", "%s is not a disposable template (template_for_dispvms=False)", v);
        return chk_no_netvm_loop(a, &q->props, "template", v, e); /* its netvm defaults to the template's */
    }
    if (t->klass != BH_TEMPLATEVM)
        return bh_exc(e, "QubesValueError", "%s is not a TemplateVM", v);
    return 0;
}

static int chk_default_template(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)q;
    if (*v && bh_app_find(a, v)->klass != BH_TEMPLATEVM)
        return bh_exc(e, "QubesValueError", "%s is not a TemplateVM", v);
    return 0;
}

static int chk_dispvm_template(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)q;
    if (*v && !bh_qube_prop_bool(a, bh_app_find(a, v), "template_for_dispvms"))
        return bh_exc(e, "QubesValueError", "%s is not a disposable template (template_for_dispvms=False)", v);
    return 0;
}

static int chk_virt_mode(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    /* pvh and hvm are Qubes' names for a hardware VM: both select the vm engine */
    if (strcmp(v, "ns") != 0 && strcmp(v, "vm") != 0 && strcmp(v, "pvh") != 0 && strcmp(v, "hvm") != 0)
        return bh_exc(e, "QubesValueError", "Invalid virt_mode '%s' (expected ns, pvh, hvm or vm)", v);
    return 0;
}

static int chk_pool(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    if (strcmp(v, "default") != 0)
        return bh_exc(e, "QubesValueError", "No such pool: %s", v);
    return 0;
}

/* As Qubes: a qube's kernel is a name (no '/'), checked against the installed kernels
 * when the qube starts; default_kernel must be installed (or empty). */
static int chk_kernel(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    if (strchr(v, '/'))
        return bh_exc(e, "QubesPropertyValueError", "Kernel name cannot contain '/'");
    if (*v && !bh_ident_valid(v, 128))
        return bh_exc(e, "QubesPropertyValueError", "Invalid kernel name");
    return 0;
}

static int chk_default_kernel(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    if (chk_kernel(a, q, v, e) < 0)
        return -1;
    if (*v && bh_kernel_find(v, NULL, 0) < 0)
        return bh_exc(e, "QubesPropertyValueError", "Kernel '%s' not installed", v);
    return 0;
}

static int chk_user(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    /* A user name goes into qrexec command lines "user:cmd": keep it a plain identifier. */
    if (!bh_ident_valid(v, 32) || v[0] == '-')
        return bh_exc(e, "QubesValueError", "Invalid user name");
    return 0;
}

static int chk_mac(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    unsigned x[6];
    char tail;
    if (strlen(v) != 17 || sscanf(v, "%2x:%2x:%2x:%2x:%2x:%2x%c", &x[0], &x[1], &x[2], &x[3], &x[4], &x[5], &tail) != 6)
        return bh_exc(e, "QubesValueError", "Invalid MAC address value");
    return 0;
}

static int chk_ip(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    unsigned o[4];
    char tail;
    if (!*v)
        return 0;
    if (sscanf(v, "%3u.%3u.%3u.%3u%c", &o[0], &o[1], &o[2], &o[3], &tail) != 4 || o[0] > 255 || o[1] > 255 || o[2] > 255 ||
        o[3] > 255)
        return bh_exc(e, "QubesValueError", "Invalid IPv4 address");
    return 0;
}

static int chk_ip6(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    struct in6_addr x;
    if (*v && (strlen(v) > 45 || inet_pton(AF_INET6, v, &x) != 1))
        return bh_exc(e, "QubesValueError", "Invalid IPv6 address");
    return 0;
}

static int chk_kbd(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    /* layout+variant+options, as Qubes: three '+'-separated parts of [a-zA-Z0-9_,:-]. */
    int plus = 0;
    for (const char *p = v; *p; p++) {
        char c = *p;
        if (c == '+')
            plus++;
        else if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == ',' ||
                   c == ':' || c == '-'))
            return bh_exc(e, "QubesValueError", "Invalid keyboard layout");
    }
    if (plus != 2 || v[0] == '+' || strlen(v) > 256)
        return bh_exc(e, "QubesValueError", "Invalid keyboard layout");
    return 0;
}

static int chk_devices_denied(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    /* Qubes' pattern: ([bump*][0-9a-f*]{6})* */
    size_t n = strlen(v);
    bool ok = n % 7 == 0;
    for (size_t i = 0; ok && i < n; i++)
        ok = i % 7 == 0 ? strchr("bump*", v[i]) != NULL : strchr("0123456789abcdef*", v[i]) != NULL;
    if (!ok || n > 7 * 1024)
        return bh_exc(e, "QubesPropertyValueError",
                      "Interface code list should be in the form chhhhhhchhhhhh...,where c is one of \"b\", "
                      "\"u\", \"m\", \"p\", \"*\" and h is a hexdigit or \"*\".");
    return 0;
}

/* Qubes' setter=qubes.property.forbidden: dom0's maxmem is the host's. */
static int chk_maxmem(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    if (q && q->klass == BH_ADMINVM)
        return bh_exc(e, "QubesPropertyValueError", "Invalid value '%s' of property 'maxmem' of dom0: property not settable", v);
    return 0;
}

static int chk_bootmode(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    (void)a;
    (void)q;
    /* Qubes offers the boot modes a template lists in its boot-mode.* features; the
     * ns engine has one: "default". */
    if (strcmp(v, "default") != 0)
        return bh_exc(e, "QubesPropertyValueError", "Invalid bootmode '%s'", v);
    return 0;
}

static int chk_template_for_dispvms(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    /* Refuse to unset while disposables are based on it (they would lose their root). */
    if (q && !strcmp(v, "False")) {
        for (size_t i = 0; i < a->nqubes; i++) {
            struct bh_qube *o = a->qubes[i];
            const char *t = bh_kv_get(&o->props, "template");
            if (o->klass == BH_DISPVM && t && !strcmp(t, q->name))
                return bh_exc(e, "QubesValueError", "Cannot unset template_for_dispvms: %s is based on it", o->name);
        }
    }
    return 0;
}

static int chk_provides_network(struct bh_app *a, struct bh_qube *q, const char *v, struct bh_exc *e)
{
    if (q && !strcmp(v, "False")) {
        /* Qubes whose netvm is left at its default use the global default_netvm. */
        const char *g = bh_kv_get(&a->globals, "default_netvm");
        if (g && !strcmp(g, q->name))
            return bh_exc(e, "QubesValueError", "Cannot unset provides_network: %s is the global default_netvm", q->name);
        for (size_t i = 0; i < a->nqubes; i++) {
            const char *n = bh_kv_get(&a->qubes[i]->props, "netvm");
            if (n && !strcmp(n, q->name))
                return bh_exc(e, "QubesValueError", "Cannot unset provides_network: %s uses it as netvm", a->qubes[i]->name);
        }
    }
    return 0;
}

/* ---- the tables (sorted by name: List and GetAll print in this order) ---- */

#define VMS BH_K_ALL_VMS
#define ALL BH_K_ALL
#define APP_DISP (BH_KMASK(BH_APPVM) | BH_KMASK(BH_DISPVM))
#define RO BH_PF_RO
#define NS (BH_PF_RO | BH_PF_NOSTORE)
#define NUL BH_PF_NULLABLE
#define HALT BH_PF_HALTED

static const struct bh_prop_def qube_props[] = {
    { "appvm_default_bootmode", BH_P_STR, BH_KMASK(BH_TEMPLATEVM), 0, d_default_str, chk_bootmode, 0, 0, "Default boot mode for app qubes based on this template" },
    { "audiovm", BH_P_VM, VMS, NUL, d_g_audiovm, NULL, 0, 0, "VM used for audio" },
    { "auto_cleanup", BH_P_BOOL, BH_KMASK(BH_DISPVM), NS, d_auto_cleanup, NULL, 0, 0, "automatically remove this qube upon shutdown" },
    { "autostart", BH_P_BOOL, VMS, 0, d_false, NULL, 0, 0, "Start the qube when bulkheadd starts" },
    { "backup_timestamp", BH_P_INT, VMS, 0, NULL, NULL, 0, LLONG_MAX, "Time of last backup of the qube, in seconds since unix epoch" },
    { "bootmode", BH_P_STR, VMS, 0, d_bootmode, chk_bootmode, 0, 0, "Active boot mode for this domain" },
    { "debug", BH_P_BOOL, VMS, 0, d_false, NULL, 0, 0, "Debug mode: keep logs and do not hide failures" },
    { "default_dispvm", BH_P_VM, ALL, NUL, d_default_dispvm, chk_dispvm_template, 0, 0, "Default disposable template for this qube's calls" },
    { "default_user", BH_P_STR, VMS, 0, d_default_user, chk_user, 0, 0, "Default user for qrexec commands" },
    { "devices_denied", BH_P_STR, ALL, 0, d_empty, chk_devices_denied, 0, 0, "List of device interface codes that are denied for this VM." },
    { "dispid", BH_P_INT, BH_KMASK(BH_DISPVM), NS, d_dispid, NULL, 0, 0, "Internal, persistent identifier of particular disposable." },
    { "dns", BH_P_STR, VMS, NS, d_dns, NULL, 0, 0, "DNS servers set up for this qube" },
    { "gateway", BH_P_STR, VMS, NS, d_gateway, NULL, 0, 0, "Gateway this qube offers to qubes behind it" },
    { "gateway6", BH_P_STR, VMS, NS, d_gateway6, NULL, 0, 0, "IPv6 gateway this qube offers to qubes behind it" },
    { "guivm", BH_P_VM, VMS, NUL, d_g_guivm, NULL, 0, 0, "VM that shows this qube's windows" },
    { "icon", BH_P_STR, ALL, NS, d_icon, NULL, 0, 0, "Icon name (class and label)" },
    { "include_in_backups", BH_P_BOOL, ALL, 0, d_include_in_backups, NULL, 0, 0, "Include in backups" },
    { "installed_by_rpm", BH_P_BOOL, VMS, 0, d_false, NULL, 0, 0, "If this domain's image was installed from a package tracked by the package manager" },
    { "ip", BH_P_STR, VMS, 0, d_ip, chk_ip, 0, 0, "IPv4 address of this qube" },
    { "ip6", BH_P_STR, VMS, 0, d_ip6, chk_ip6, 0, 0, "IPv6 address of this qube (with the ipv6 feature)" },
    { "is_preload", BH_P_BOOL, BH_KMASK(BH_DISPVM), NS, d_is_preload, NULL, 0, 0, "Whether this disposable is preloaded and not yet used" },
    { "kernel", BH_P_STR, VMS, 0, d_g_kernel, chk_kernel, 0, 0, "Kernel (vm engine)" },
    { "kernelopts", BH_P_STR, VMS, 0, d_empty, NULL, 0, 0, "Kernel command line (vm engine)" },
    { "keyboard_layout", BH_P_STR, ALL, 0, d_kbd, chk_kbd, 0, 0, "Keyboard layout, layout+variant+options" },
    { "klass", BH_P_STR, ALL, NS, d_klass, NULL, 0, 0, "Class of the qube" },
    { "label", BH_P_LABEL, ALL, 0, d_label, NULL, 0, 0, "Colourful label assigned to the qube" },
    { "mac", BH_P_STR, VMS, 0, d_mac, chk_mac, 0, 0, "MAC address of the qube's network interface" },
    { "management_dispvm", BH_P_VM, ALL, NUL, d_g_mgmt_dispvm, chk_dispvm_template, 0, 0, "Disposable template for management tasks" },
    { "maxmem", BH_P_INT, ALL, 0, d_maxmem, chk_maxmem, 0, 1 << 20, "Maximum memory in MiB (hard limit)" },
    { "memory", BH_P_INT, VMS, 0, d_400, NULL, 1, 1 << 20, "Initial memory in MiB" },
    { "name", BH_P_STR, ALL, RO, NULL, NULL, 0, 0, "User-assigned name of the qube" },
    { "netvm", BH_P_VM, VMS, NUL, d_netvm, chk_netvm, 0, 0, "Qube that provides network to this one (empty: no network)" },
    { "provides_network", BH_P_BOOL, VMS, 0, d_false, chk_provides_network, 0, 0, "This qube provides network to others" },
    { "qid", BH_P_INT, ALL, RO, NULL, NULL, 0, 0, "Internal, persistent identifier of the qube" },
    { "qrexec_timeout", BH_P_INT, VMS, 0, d_g_qrexec_timeout, NULL, 1, 3600, "Seconds to wait for the qrexec agent" },
    { "shutdown_timeout", BH_P_INT, VMS, 0, d_g_shutdown_timeout, NULL, 1, 3600, "Seconds to wait for a clean shutdown before killing" },
    { "start_time", BH_P_STR, VMS, NS, d_start_time, NULL, 0, 0, "When the qube was started (seconds since the epoch)" },
    { "stubdom_mem", BH_P_INT, VMS, 0, NULL, NULL, 1, 1 << 20, "Memory amount allocated for the stubdom (none: no stubdomain)" },
    { "stubdom_uuid", BH_P_STR, VMS, NS, d_empty, NULL, 0, 0, "UUID of the stubdomain (none)" },
    { "stubdom_xid", BH_P_INT, VMS, NS, d_stubdom_xid, NULL, 0, 0, "Xen ID of the stubdomain (-1: none)" },
    { "template", BH_P_VM, APP_DISP, HALT, NULL, chk_template, 0, 0, "Template this qube's root comes from" },
    { "template_for_dispvms", BH_P_BOOL, BH_KMASK(BH_APPVM) | BH_KMASK(BH_STANDALONEVM) | BH_KMASK(BH_TEMPLATEVM), 0, d_false, chk_template_for_dispvms, 0, 0, "Disposables may be based on this qube" },
    { "updateable", BH_P_BOOL, ALL, NS, d_updateable, NULL, 0, 0, "Changes to the root persist (template, standalone)" },
    { "uuid", BH_P_STR, ALL, RO, NULL, NULL, 0, 0, "UUID of the qube" },
    { "vcpus", BH_P_INT, VMS, 0, d_2, NULL, 1, 256, "Number of virtual CPUs" },
    { "virt_mode", BH_P_STR, VMS, HALT, d_virt_mode, chk_virt_mode, 0, 0, "Engine: ns (namespaces) or vm (QEMU)" },
    { "visible_gateway", BH_P_STR, VMS, NS, d_visible_gateway, NULL, 0, 0, "Default gateway as seen by the qube" },
    { "visible_gateway6", BH_P_STR, VMS, NS, d_visible_gateway6, NULL, 0, 0, "Default IPv6 gateway as seen by the qube" },
    { "visible_ip", BH_P_STR, VMS, NS, d_visible_ip, NULL, 0, 0, "IP address as seen by the qube" },
    { "visible_ip6", BH_P_STR, VMS, NS, d_visible_ip6, NULL, 0, 0, "IPv6 address as seen by the qube" },
    { "visible_netmask", BH_P_STR, VMS, NS, d_visible_netmask, NULL, 0, 0, "Netmask as seen by the qube" },
    { "xid", BH_P_INT, ALL, NS, d_xid, NULL, 0, 0, "Runtime domain id (-1 when halted)" },
};

static const struct bh_prop_def global_props[] = {
    { "check_updates_vm", BH_P_BOOL, 0, 0, d_true, NULL, 0, 0, "Check for updates inside qubes" },
    { "clockvm", BH_P_VM, 0, NUL, d_empty, NULL, 0, 0, "Qube that synchronises the clock" },
    { "default_audiovm", BH_P_VM, 0, NUL, d_dom0, NULL, 0, 0, "Default audio VM" },
    { "default_dispvm", BH_P_VM, 0, NUL, d_empty, chk_dispvm_template, 0, 0, "Default disposable template" },
    { "default_guivm", BH_P_VM, 0, NUL, d_dom0, NULL, 0, 0, "Default GUI VM" },
    { "default_kernel", BH_P_STR, 0, 0, d_installed_kernel, chk_default_kernel, 0, 0, "Default kernel (vm engine)" },
    { "default_netvm", BH_P_VM, 0, NUL, d_empty, chk_netvm, 0, 0, "Default netvm for new qubes" },
    { "default_pool", BH_P_STR, 0, 0, d_pool, chk_pool, 0, 0, "Default storage pool" },
    { "default_pool_kernel", BH_P_STR, 0, 0, d_g_pool, chk_pool, 0, 0, "Default pool for kernel volumes" },
    { "default_pool_private", BH_P_STR, 0, 0, d_g_pool, chk_pool, 0, 0, "Default pool for private volumes" },
    { "default_pool_root", BH_P_STR, 0, 0, d_g_pool, chk_pool, 0, 0, "Default pool for root volumes" },
    { "default_pool_volatile", BH_P_STR, 0, 0, d_g_pool, chk_pool, 0, 0, "Default pool for volatile volumes" },
    { "default_qrexec_timeout", BH_P_INT, 0, 0, d_60, NULL, 1, 3600, "Default qrexec_timeout" },
    { "default_shutdown_timeout", BH_P_INT, 0, 0, d_60, NULL, 1, 3600, "Default shutdown_timeout" },
    { "default_template", BH_P_VM, 0, NUL, d_empty, chk_default_template, 0, 0, "Default template for new app qubes" },
    { "default_virt_mode", BH_P_STR, 0, 0, d_virt_mode_global, chk_virt_mode, 0, 0, "Default engine for new qubes" },
    { "management_dispvm", BH_P_VM, 0, NUL, d_empty, chk_dispvm_template, 0, 0, "Default disposable template for management" },
    { "maxmem", BH_P_INT, 0, RO, d_host_maxmem, NULL, 0, 0, "Maximum system memory." },
    { "no_cpus", BH_P_INT, 0, RO, d_no_cpus, NULL, 0, 0, "Quantity of CPUs" },
    { "stats_interval", BH_P_INT, 0, 0, d_3, NULL, 1, 3600, "Interval between statistics events (seconds)" },
    { "updatevm", BH_P_VM, 0, NUL, d_empty, NULL, 0, 0, "Qube used to download updates for dom0" },
};

const struct bh_prop_def *bh_prop_nth(const struct bh_qube *q, size_t i)
{
    if (!q)
        return i < BH_ARRAY_SIZE(global_props) ? &global_props[i] : NULL;
    for (size_t j = 0; j < BH_ARRAY_SIZE(qube_props); j++) {
        if (!(qube_props[j].classes & BH_KMASK(q->klass)))
            continue;
        if (i-- == 0)
            return &qube_props[j];
    }
    return NULL;
}

/* One pass over the table: lookups happen many times per call (defaults inherit from
 * other properties), so going through bh_prop_nth would make each one quadratic. */
const struct bh_prop_def *bh_prop_find(const struct bh_qube *q, const char *name)
{
    const struct bh_prop_def *t = q ? qube_props : global_props;
    size_t n = q ? BH_ARRAY_SIZE(qube_props) : BH_ARRAY_SIZE(global_props);
    for (size_t i = 0; i < n; i++)
        if ((!q || (t[i].classes & BH_KMASK(q->klass))) && !strcmp(t[i].name, name))
            return &t[i];
    return NULL;
}

const char *bh_prop_name(const struct bh_prop_def *d) { return d->name; }
enum bh_ptype bh_prop_type(const struct bh_prop_def *d) { return d->type; }
const char *bh_prop_help(const struct bh_prop_def *d) { return d->help; }

static const char *explicit_value(struct bh_app *app, const struct bh_qube *q, const struct bh_prop_def *d)
{
    return q ? bh_kv_get(&q->props, d->name) : bh_kv_get(&app->globals, d->name);
}

char *bh_prop_default(struct bh_app *app, const struct bh_qube *q, const struct bh_prop_def *d)
{
    return d->deflt ? d->deflt(app, q) : NULL;
}

char *bh_prop_value(struct bh_app *app, const struct bh_qube *q, const struct bh_prop_def *d, bool *is_default, bool *has_value)
{
    *has_value = true;
    *is_default = false;
    if (q && !strcmp(d->name, "name"))
        return strdup(q->name);
    if (q && !strcmp(d->name, "qid"))
        return fmt_ll(q->qid);
    if (q && !strcmp(d->name, "uuid"))
        return strdup(q->uuid);
    const char *v = explicit_value(app, q, d);
    if (v)
        return strdup(v);
    *is_default = true;
    char *dv = bh_prop_default(app, q, d);
    if (!dv)
        *has_value = false;
    return dv;
}

/* ---- validation and setting ---- */

int bh_qubes_bool(const char *v, bool *out)
{
    static const char *const t[] = { "1", "yes", "true", "on" }, *const f[] = { "0", "no", "false", "off" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(t); i++) {
        if (!strcasecmp(v, t[i]))
            return *out = true, 0;
        if (!strcasecmp(v, f[i]))
            return *out = false, 0;
    }
    return -1;
}

static int parse_bool(const char *s, bool *out)
{
    static const char *const yes[] = { "True", "true", "1", "yes", "on", "Yes", "YES", "TRUE", "On", "ON" };
    static const char *const no[] = { "False", "false", "0", "no", "off", "No", "NO", "FALSE", "Off", "OFF", "" };
    for (size_t i = 0; i < BH_ARRAY_SIZE(yes); i++)
        if (!strcmp(s, yes[i])) {
            *out = true;
            return 0;
        }
    for (size_t i = 0; i < BH_ARRAY_SIZE(no); i++)
        if (!strcmp(s, no[i])) {
            *out = false;
            return 0;
        }
    return -1;
}

int bh_prop_validate(struct bh_app *app, struct bh_qube *q, const struct bh_prop_def *d, const char *raw, size_t rawlen,
                     char **out, struct bh_exc *e)
{
    *out = NULL;
    if (d->flags & BH_PF_RO)
        return bh_exc(e, "QubesValueError", "property '%s' is read-only", d->name);
    if (rawlen > 4096 || memchr(raw, '\0', rawlen))
        return bh_exc(e, "QubesValueError", "Invalid value for property '%s'", d->name);
    for (size_t i = 0; i < rawlen; i++)
        if ((unsigned char)raw[i] < 0x20 || (unsigned char)raw[i] > 0x7e)
            return bh_exc(e, "QubesValueError", "Invalid characters in value of property '%s'", d->name);
    _cleanup_free_ char *v = strndup(raw, rawlen);
    if (!v)
        return bh_exc(e, "QubesException", "out of memory");
    switch (d->type) {
    case BH_P_INT: {
        char *end;
        errno = 0;
        long long n = strtoll(v, &end, 10);
        if (!*v || *end || errno || (v[0] == '0' && v[1]) || !((v[0] >= '0' && v[0] <= '9') || v[0] == '-'))
            return bh_exc(e, "QubesValueError", "Failed to parse property value as int");
        /* Qubes' setters: _setter_positive_int, _setter_non_negative_int. */
        if (n < d->min && d->min == 1)
            return bh_exc(e, "QubesPropertyValueError", "%s must be positive", d->name);
        if (n < d->min && d->min == 0)
            return bh_exc(e, "QubesPropertyValueError", "%s must be positive or zero", d->name);
        if ((d->min || d->max) && (n < d->min || n > d->max))
            return bh_exc(e, "QubesValueError", "Value of property '%s' out of range (%lld..%lld)", d->name, d->min, d->max);
        free(v);
        v = fmt_ll(n);
        break;
    }
    case BH_P_BOOL: {
        bool b;
        if (parse_bool(v, &b) < 0)
            return bh_exc(e, "QubesValueError", "Invalid literal for boolean property: '%s'", v);
        free(v);
        v = strdup(b ? "True" : "False");
        break;
    }
    case BH_P_VM:
        if (!*v) {
            if (!(d->flags & BH_PF_NULLABLE))
                return bh_exc(e, "QubesValueError", "Property '%s' cannot be empty", d->name);
        } else if (!bh_app_find(app, v) || !strncmp(v, "uuid:", 5)) {
            return bh_exc(e, "QubesVMNotFoundError", "No such domain: '%s'", v);
        } else if (!strcmp(v, "dom0") && strcmp(d->name, "guivm") && strcmp(d->name, "audiovm") &&
                   strcmp(d->name, "default_guivm") && strcmp(d->name, "default_audiovm")) {
            return bh_exc(e, "QubesValueError", "dom0 cannot be used as %s", d->name);
        } else if (chk_not_self(q, v, e) < 0) {
            return -1;
        }
        break;
    case BH_P_LABEL:
        if (!bh_label_find(app, v))
            return bh_exc(e, "QubesLabelNotFoundError", "Label does not exist: %s", v);
        break;
    case BH_P_STR:
        if (strlen(v) > 1024)
            return bh_exc(e, "QubesValueError", "Value of property '%s' too long", d->name);
        break;
    }
    if (!v)
        return bh_exc(e, "QubesException", "out of memory");
    if (d->check && d->check(app, q, v, e) < 0)
        return -1;
    *out = steal_pointer(&v);
    return 0;
}

struct prop_txn {
    bool global;
    uint32_t qid;
    const char *key, *value;
};
static int prop_store(struct bh_store *s, void *ctx, bh_error *err)
{
    struct prop_txn *t = ctx;
    return bh_store_put_kv(s, t->global ? "globals" : "props", t->qid, t->key, t->value, err);
}

static void emit(const struct bh_qube *q, const char *prefix, const char *prop, const char *const *kv)
{
    char ev[96];
    snprintf(ev, sizeof ev, "%s%s", prefix, prop);
    bh_events_emit(q ? q->name : NULL, ev, kv);
}

/* As qubesd (qubes/__init__.py property.__delete__): a reset fires property-pre-reset
 * and property-pre-del before, property-reset and property-del after, with the old
 * value; it does so even when nothing was set. */
static void reset_events(const struct bh_qube *q, const char *prop, const char *old, bool after)
{
    const char *kv[] = { "name", prop, old ? "oldvalue" : NULL, old, NULL };
    emit(q, after ? "property-reset:" : "property-pre-reset:", prop, kv);
    emit(q, after ? "property-del:" : "property-pre-del:", prop, kv);
}

/* Tags that Qubes keeps in step with a property: guivm-NAME, audiovm-NAME (its gui and
 * audio extensions). Best effort: the property change itself is already done. */
static void sync_vm_tag(struct bh_app *app, struct bh_qube *q, const char *prop)
{
    char prefix[16];
    snprintf(prefix, sizeof prefix, "%s-", prop);
    _cleanup_free_ char *v = bh_qube_prop(app, q, prop);
    char want[96] = "";
    if (v && *v)
        snprintf(want, sizeof want, "%s%s", prefix, v);
    struct bh_exc e = { 0 };
    for (size_t i = 0; i < q->tags.n;) {
        const char *t = q->tags.v[i].key;
        if (!strncmp(t, prefix, strlen(prefix)) && strcmp(t, want) != 0) {
            _cleanup_free_ char *tc = strdup(t);
            if (tc && bh_qube_tag_set(app, q, tc, false, &e) == 0)
                continue;
        }
        i++;
    }
    if (*want)
        (void)bh_qube_tag_set(app, q, want, true, &e);
}

void bh_props_sync_tags(struct bh_app *app, struct bh_qube *q)
{
    if (q->klass == BH_ADMINVM)
        return;
    sync_vm_tag(app, q, "guivm");
    sync_vm_tag(app, q, "audiovm");
}

static void after_change(struct bh_app *app, struct bh_qube *q, const char *prop)
{
    if (!q) {
        /* As Qubes' gui/audio extensions: qubes that follow the global default change tags. */
        if (!strcmp(prop, "default_guivm") || !strcmp(prop, "default_audiovm"))
            for (size_t i = 0; i < app->nqubes; i++)
                if (app->qubes[i]->klass != BH_ADMINVM)
                    sync_vm_tag(app, app->qubes[i], prop + strlen("default_"));
        return;
    }
    /* As Qubes: the icon is computed from these, so its cached value is dropped. */
    if (!strcmp(prop, "label") || !strcmp(prop, "template_for_dispvms")) {
        const char *kv[] = { "name", "icon", NULL };
        bh_events_emit(q->name, "property-reset:icon", kv);
    }
    if (!strcmp(prop, "guivm") || !strcmp(prop, "audiovm"))
        sync_vm_tag(app, q, prop);
    if ((!strcmp(prop, "memory") || !strcmp(prop, "maxmem") || !strcmp(prop, "vcpus")) && bh_qube_is_running(q) &&
        bh_hooks.limits_changed)
        bh_hooks.limits_changed(app, q);
}

static int prop_write(struct bh_app *app, struct bh_qube *q, const struct bh_prop_def *d, const char *value, struct bh_exc *e)
{
    bool def, has;
    _cleanup_free_ char *old = bh_prop_value(app, q, d, &def, &has);
    if (!has)
        free(steal_pointer(&old));
    if (value) {
        const char *kv[] = { "name", d->name, "newvalue", value, old ? "oldvalue" : NULL, old, NULL };
        emit(q, "property-pre-set:", d->name, kv);
    } else
        reset_events(q, d->name, old, false);
    bh_error err = { 0 };
    struct prop_txn t = { q == NULL, q ? q->qid : 0, d->name, value };
    if (bh_store_txn(app->store, prop_store, &t, &err) < 0)
        return bh_exc(e, "QubesException", "%s", err.msg);
    struct bh_kvlist *l = q ? &q->props : &app->globals;
    if (value ? bh_kv_set(l, d->name, value) < 0 : (bh_kv_del(l, d->name), false))
        return bh_exc(e, "QubesException", "out of memory");
    if (value) {
        const char *kv[] = { "name", d->name, "newvalue", value, old ? "oldvalue" : NULL, old, NULL };
        emit(q, "property-set:", d->name, kv);
    } else
        reset_events(q, d->name, old, true);
    if (q && bh_hooks.property_changed)
        bh_hooks.property_changed(app, q, d->name);
    after_change(app, q, d->name);
    return 0;
}

int bh_prop_set(struct bh_app *app, struct bh_qube *q, const struct bh_prop_def *d, const char *raw, size_t rawlen, struct bh_exc *e)
{
    if (q && (d->flags & BH_PF_HALTED) && bh_qube_is_running(q))
        return bh_exc(e, "QubesVMNotHaltedError", "Cannot change %s while qube %s is running", d->name, q->name);
    _cleanup_free_ char *v = NULL;
    if (bh_prop_validate(app, q, d, raw, rawlen, &v, e) < 0)
        return -1;
    return prop_write(app, q, d, v, e);
}

int bh_prop_reset(struct bh_app *app, struct bh_qube *q, const struct bh_prop_def *d, struct bh_exc *e)
{
    if (d->flags & BH_PF_RO)
        return bh_exc(e, "QubesValueError", "property '%s' is read-only", d->name);
    if (!d->deflt)
        return bh_exc(e, "QubesValueError", "property '%s' has no default and cannot be reset", d->name);
    if (q && (d->flags & BH_PF_HALTED) && bh_qube_is_running(q))
        return bh_exc(e, "QubesVMNotHaltedError", "Cannot change %s while qube %s is running", d->name, q->name);
    if (!explicit_value(app, q, d)) {
        _cleanup_free_ char *cur = bh_prop_default(app, q, d);
        reset_events(q, d->name, cur, false);
        reset_events(q, d->name, cur, true);
        return 0;
    }
    /* The default must pass the same checks as a set value: resetting netvm must not
     * make a loop, and resetting provides_network or template_for_dispvms (both
     * default False) must not pull the ground from under the qubes that use them. */
    _cleanup_free_ char *dv = bh_prop_default(app, q, d);
    /* Some defaults exist only for some classes (a disposable's label is its
     * template's): without one, a reset would leave the qube with no value at all. */
    if (!dv)
        return bh_exc(e, "QubesValueError", "property '%s' of %s has no default and cannot be reset", d->name,
                      q ? q->name : "dom0");
    if (d->check && d->check(app, q, dv, e) < 0)
        return -1;
    return prop_write(app, q, d, NULL, e);
}
