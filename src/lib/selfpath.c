#include "selfpath.h"
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int bh_find_near_self(const char *const *rels, const char *name, int amode, char *out, size_t n)
{
    char exe[PATH_MAX];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len <= 0)
        return -1;
    exe[len] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return -1;
    *slash = '\0';
    for (size_t i = 0; rels[i]; i++) {
        char probe[PATH_MAX * 2], real[PATH_MAX];
        snprintf(probe, sizeof probe, "%s/%s/%s", exe, rels[i], name);
        if (access(probe, amode) == 0 && realpath(probe, real) && strlen(real) < n) {
            strcpy(out, real);
            return 0;
        }
    }
    return -1;
}

bool bh_find_in_path(const char *name, char *out, size_t size)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = "/usr/local/bin:/usr/bin:/bin";
    while (*path) {
        size_t len = strcspn(path, ":");
        if (len > 0 && (size_t)snprintf(out, size, "%.*s/%s", (int)len, path, name) < size &&
            access(out, X_OK) == 0)
            return true;
        path += len;
        if (*path == ':')
            path++;
    }
    return false;
}
