/* The tools' view of the Admin API: calls through bh_admin_call (src/lib), the domain
 * list, properties with their types, labels. Replies are copied into the tools' arena. */
#pragma once
#include "util.h"
#include <stdbool.h>
#include <stddef.h>

struct reply {
    bool ok;
    char *body;          /* success body, NUL-terminated */
    size_t len;
    const char *exc_type;
    const char *exc_msg;
};

/* One Admin API call. A transport failure (no daemon, broken reply) is fatal: it is
 * reported in the tool's error style (cli_fail) and the tool exits 1. */
void api_call(struct reply *r, const char *dest, const char *method, const char *arg,
              const void *payload, size_t plen);
/* Like api_call, but a Qubes exception is fatal too (reported in the tool's style).
 * Returns the body. */
char *api_must(const char *dest, const char *method, const char *arg, const void *payload,
               size_t plen);
bool exc_is(const struct reply *r, const char *type);
/* Exceptions that Qubes' client maps to KeyError / AttributeError. */
bool exc_is_keyerror(const struct reply *r);
bool exc_is_attrerror(const struct reply *r);

struct vm {
    char *name;
    char *klass;
    char *state;   /* from admin.vm.List; NULL if the daemon did not say */
};

/* admin.vm.List (cached for the process; vm_list_refresh() forgets it). Sorted by name. */
size_t vm_list(const struct vm **out);
void vm_list_refresh(void);
const struct vm *vm_find(const char *name);
/* Power state as Qubes names it: Halted, Running, Paused, ... (CurrentState if needed). */
const char *vm_power_state(const struct vm *vm);
bool vm_is_running(const struct vm *vm);   /* not Halted and not NA */
bool vm_is_paused(const struct vm *vm);    /* Paused or Suspended */

struct vmsel {
    const struct vm **v;
    size_t n;
};
/* Qubes' VmNameAction: names (with shell wildcards) to domains; --all selects every
 * domain but the AdminVM, minus --exclude. An unknown name is a usage error
 * ("no such domain: 'x'") unless missing is given, where it is collected instead. */
void vm_select(const struct strv *names, bool all, const struct strv *exclude,
               struct vmsel *out, struct strv *missing);
void vmsel_add(struct vmsel *s, const struct vm *vm);

/* A property as the Admin API reports it: "default=True type=int 400". */
struct prop {
    char *name;
    bool is_default;
    char *type;        /* str, int, bool, vm, label */
    char *value;       /* raw value (bools normalised to True/False) */
};
struct props {
    struct prop *p;
    size_t n;
};
bool prop_parse(const char *name, const char *text, struct prop *out);
/* vm/label with an empty value: Python None. */
bool prop_is_none(const struct prop *p);
/* int/bool with an empty value: Qubes' client raises AttributeError for these. */
bool prop_is_unset(const struct prop *p);
/* Parses a GetAll body ("\\n" and "\\\\" escaped); false if malformed. */
bool props_parse_all(const char *body, struct props *out);
/* admin.vm.property.GetAll on a qube, or admin.property.GetAll when vm is NULL. Cached. */
const struct props *props_all(const char *vm);
/* Fetches the properties of the given qubes for props_all with several requests in
 * flight, so that a listing of N qubes waits about one round trip to bulkheadd instead
 * of N in a row; what props_all reports (and when it fails) is unchanged. */
void props_prefetch(const struct vm *const *v, size_t n);
const struct prop *props_find(const struct props *ps, const char *name);

/* admin.label.List, in the daemon's order. */
void labels_list(struct strv *out);
/* The state admin.vm.List reported (what qvm-ls shows), else vm_power_state(). */
const char *vm_state_listed(const struct vm *vm);

/* key=value lines (volume and pool info). */
struct kv {
    struct strv keys, vals;
};
void kv_parse(const char *text, struct kv *out);
const char *kv_get(const struct kv *kv, const char *key);   /* NULL if absent */
/* admin.vm.volume.List of a qube (names in the daemon's order). */
bool vm_volumes(const char *vm, struct strv *out, struct reply *err);
/* admin.vm.volume.Info; false (and *err filled) on a Qubes exception. */
bool volume_info(const char *vm, const char *volume, struct kv *out, struct reply *err);

/* The VMNAME argument of a one-qube tool (usage error if missing or unknown). */
const struct vm *vm_arg(const struct strv *pos);
/* VMNAME [VMNAME ...] | --all [--exclude X]: Qubes' VmNameGroup (required). */
void vm_args_multi(const struct strv *names, bool all, const struct strv *exclude,
                   struct vmsel *out);
