/* What the policy engine needs to know about the qubes: a plain snapshot, filled by
 * whoever has the facts (the qrexec daemon from the Admin API, tests directly or from a
 * file), then only read by evaluation. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stddef.h>

enum bh_klass {
    BH_KLASS_ADMINVM = 0,
    BH_KLASS_APPVM,
    BH_KLASS_TEMPLATEVM,
    BH_KLASS_DISPVM,
    BH_KLASS_STANDALONEVM,
};

#define BH_SYSINFO_MAX_QUBES 4096
#define BH_SYSINFO_MAX_TAGS 256 /* per qube */

struct bh_qube_info {
    char *name;
    char *uuid;             /* lowercase 8-4-4-4-12, or NULL */
    enum bh_klass klass;
    char **tags;            /* NULL-terminated, never NULL after bh_sysinfo_add */
    size_t n_tags;
    char *default_dispvm;   /* NULL = none */
    char *template;         /* DispVM: its disposable template; AppVM: its template */
    bool template_for_dispvms;
    bool running;           /* power state Running/Transient/Paused/Suspended */
};

struct bh_sysinfo {
    struct bh_qube_info *qubes;
    size_t n, cap;
};

void bh_sysinfo_init(struct bh_sysinfo *si);
void bh_sysinfo_free(struct bh_sysinfo *si);
#define _cleanup_sysinfo_ __attribute__((cleanup(bh_sysinfo_free)))

/* Adds a qube (strings copied; uuid/default_dispvm/template may be NULL) and returns
 * it so that tags can be added; NULL with *err set on a bad name or a duplicate. */
struct bh_qube_info *bh_sysinfo_add(struct bh_sysinfo *si, const char *name, enum bh_klass k,
                                    const char *uuid, bh_error *err);
int bh_qube_set_str(char **field, const char *value, bh_error *err);
int bh_qube_add_tag(struct bh_qube_info *q, const char *tag, bh_error *err);
bool bh_qube_has_tag(const struct bh_qube_info *q, const char *tag);

/* Look-ups; NULL when absent. */
const struct bh_qube_info *bh_sysinfo_find(const struct bh_sysinfo *si, const char *name);
const struct bh_qube_info *bh_sysinfo_find_uuid(const struct bh_sysinfo *si, const char *uuid);
const struct bh_qube_info *bh_sysinfo_adminvm(const struct bh_sysinfo *si);

/* "AppVM" -> BH_KLASS_APPVM; -1 for an unknown class. */
int bh_policy_klass_parse(const char *s);
const char *bh_policy_klass_name(enum bh_klass k);
/* Qubes' power states that can serve a call without a start. */
bool bh_power_state_running(const char *state);
bool bh_uuid_valid(const char *s);

/* Reads the test format (docs/policy.md): one qube a line,
 *   NAME CLASS [uuid=U] [state=S] [tags=a,b] [default_dispvm=N] [template=N]
 *        [template_for_dispvms=yes|no]
 * '#' comments; a dom0 (AdminVM) is added if the file has none. */
int bh_sysinfo_load_file(struct bh_sysinfo *si, const char *path, bh_error *err);
int bh_sysinfo_parse(struct bh_sysinfo *si, const char *text, bh_error *err);
/* Fills from bulkheadd (admin.vm.List, admin.vm.property.Get, admin.vm.tag.List over
 * bh_admin_call; socket from $BULKHEAD_SOCKET). */
int bh_sysinfo_from_admin(struct bh_sysinfo *si, bh_error *err);
