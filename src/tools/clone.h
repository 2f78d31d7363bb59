/* Qubes' clone_vm(): create a qube like another one (properties that are not default,
 * tags, features, firewall) and copy its persistent volumes' data. Used by qvm-clone
 * and by qvm-create --standalone --template. On failure the half-made clone is
 * removed and false is returned with the reason in *why. */
#pragma once
#include "util.h"
#include <stdbool.h>

struct clone_opts {
    const char *new_class;          /* NULL: the source's class */
    const char *pool;               /* -P POOL */
    struct strv pools;              /* VOLUME=POOL, sorted */
    struct strv ignore_volumes;     /* volumes not to copy (e.g. private) */
};

bool clone_vm(const char *src, const char *new_name, const struct clone_opts *o,
              const char **why);
/* "name=N label=L [pool=P | pool:VOL=P...]" and the method for admin.vm.Create*. */
char *create_payload(const char *name, const char *label, const char *pool,
                     const struct strv *pools, const char **method_prefix);
