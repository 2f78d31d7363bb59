/* Property definitions (Qubes' qubes.property): per-qube and global (admin.property.*),
 * each with its wire type, the classes that have it, its default and its validation. */
#pragma once
#include "model.h"

enum bh_ptype { BH_P_STR, BH_P_INT, BH_P_BOOL, BH_P_VM, BH_P_LABEL };
const char *bh_ptype_name(enum bh_ptype t);

enum {
    BH_PF_RO = 1,          /* cannot be set over the API */
    BH_PF_HALTED = 2,      /* can be changed only while the qube is halted */
    BH_PF_NULLABLE = 4,    /* vm property that may be None (empty) */
    BH_PF_NOSTORE = 8,     /* computed from the qube's state, never stored */
};

struct bh_prop_def;
/* A subject is either a qube (q != NULL) or the global holder (q == NULL). */
const struct bh_prop_def *bh_prop_find(const struct bh_qube *q, const char *name);
/* For List/GetAll: the i-th property the subject has (NULL past the end), sorted. */
const struct bh_prop_def *bh_prop_nth(const struct bh_qube *q, size_t i);
const char *bh_prop_name(const struct bh_prop_def *d);
enum bh_ptype bh_prop_type(const struct bh_prop_def *d);
const char *bh_prop_help(const struct bh_prop_def *d);

/* Value as on the wire (malloc'd; "" for None). *is_default tells whether it is the
 * default. Returns NULL with *has_value=false when there is neither a value nor a
 * default (Qubes answers "default=True type=T "). */
char *bh_prop_value(struct bh_app *app, const struct bh_qube *q, const struct bh_prop_def *d, bool *is_default, bool *has_value);
/* Default only (NULL when none). */
char *bh_prop_default(struct bh_app *app, const struct bh_qube *q, const struct bh_prop_def *d);
/* Validates raw (from the payload) and stores it; emits property-set. */
int bh_prop_set(struct bh_app *app, struct bh_qube *q, const struct bh_prop_def *d, const char *raw, size_t rawlen, struct bh_exc *e);
/* Drops the explicit value; emits property-reset (and the older property-del). */
int bh_prop_reset(struct bh_app *app, struct bh_qube *q, const struct bh_prop_def *d, struct bh_exc *e);
/* Validation only: normalises raw into *out (malloc'd). Used by create with --prop. */
int bh_prop_validate(struct bh_app *app, struct bh_qube *q, const struct bh_prop_def *d, const char *raw, size_t rawlen, char **out, struct bh_exc *e);

/* Convenience getters used across the daemon (default applied). */
char *bh_qube_prop(struct bh_app *app, const struct bh_qube *q, const char *name);
bool bh_qube_prop_bool(struct bh_app *app, const struct bh_qube *q, const char *name);
/* Qubes' qubes.property.bool on a string: 0/1, no/yes, false/true, off/on in any case;
 * 0 and *out, or -1. */
int bh_qubes_bool(const char *v, bool *out);
long long bh_qube_prop_int(struct bh_app *app, const struct bh_qube *q, const char *name);
/* Adds/removes the tags Qubes keeps in step with guivm and audiovm (guivm-NAME,
 * audiovm-NAME) after a qube is created or loaded. */
void bh_props_sync_tags(struct bh_app *app, struct bh_qube *q);
char *bh_global_prop(struct bh_app *app, const char *name);
