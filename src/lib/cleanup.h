/* Scope-bound ownership, bubblewrap style: every fd and allocation has one owner,
 * released when the owning variable leaves scope. Hand ownership on with steal_*. */
#pragma once
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <errno.h>
#include <dirent.h>

static inline void bh_freep(void *p) { free(*(void **)p); }
static inline void bh_closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
static inline void bh_fclosep(FILE **f) { if (*f) fclose(*f); }
static inline void bh_closedirp(DIR **d) { if (*d) closedir(*d); }
static inline void bh_strvfreep(char ***v)
{
    if (*v) {
        for (char **p = *v; *p; p++) free(*p);
        free(*v);
    }
}

#define _cleanup_free_ __attribute__((cleanup(bh_freep)))
#define _cleanup_close_ __attribute__((cleanup(bh_closep)))
#define _cleanup_fclose_ __attribute__((cleanup(bh_fclosep)))
#define _cleanup_closedir_ __attribute__((cleanup(bh_closedirp)))
#define _cleanup_strv_ __attribute__((cleanup(bh_strvfreep)))

static inline void *bh_steal_ptr(void *pp)
{
    void **p = pp;
    void *v = *p;
    *p = NULL;
    return v;
}
static inline int bh_steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}
#define steal_pointer(pp) bh_steal_ptr(pp)
#define steal_fd(p) bh_steal_fd(p)

#define BH_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
