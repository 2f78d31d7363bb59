/* The user a qrexec service runs as, resolved once and kept while /etc/passwd and
 * /etc/group stay the same files with the same contents (checked by stat on every
 * lookup: a user added, removed or given new groups is seen by the next call).
 * The agent resolves in its main process before forking a call's handler, so that
 * every call after the first skips the NSS lookups (getpwnam, initgroups). */
#pragma once
#include <sys/types.h>

struct bh_qx_user {
    char *key;     /* the name asked for (getpwnam may match an alias) */
    char *name;    /* passwd's name: USER, LOGNAME, the group lookup */
    uid_t uid;
    gid_t gid;
    int ngroups;
    gid_t *groups; /* supplementary groups, the primary one included (as initgroups) */
    char *home;
    char *shell;   /* never empty: /bin/sh when passwd has none */
};

/* Returns the user (valid until the next lookup), or NULL with errno (ENOENT: no such
 * user). */
const struct bh_qx_user *bh_qx_user_lookup(const char *name);
