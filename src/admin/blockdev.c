/* dom0's exportable block devices, from sysfs. */
#include "blockdev.h"
#include "cleanup.h"
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool read_line(const char *path, char *out, size_t n)
{
    _cleanup_fclose_ FILE *f = fopen(path, "re");
    if (!f || !fgets(out, (int)n, f))
        return false;
    out[strcspn(out, "\n")] = '\0';
    return true;
}

static bool loop_name(const char *s)
{
    if (strncmp(s, "loop", 4) || !s[4] || strlen(s) > 12)
        return false;
    for (const char *p = s + 4; *p; p++)
        if (*p < '0' || *p > '9')
            return false;
    return true;
}

/* Is major:minor a mounted filesystem's source in our mount namespace? */
static bool mounted(unsigned major, unsigned minor)
{
    _cleanup_fclose_ FILE *f = fopen("/proc/self/mountinfo", "re");
    char line[4096], want[32];
    snprintf(want, sizeof want, "%u:%u", major, minor);
    while (f && fgets(line, sizeof line, f)) {
        unsigned id, parent;
        char mm[32];
        if (sscanf(line, "%u %u %31s", &id, &parent, mm) == 3 && !strcmp(mm, want))
            return true;
    }
    return false;
}

static bool has_holders(const char *port)
{
    char p[128];
    snprintf(p, sizeof p, "/sys/block/%s/holders", port);
    _cleanup_closedir_ DIR *d = opendir(p);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            return true;
    return false;
}

/* Qubes' sanitising of a device description: other characters become '_', then the
 * model part (up to the first space) with '_' shown as space is the serial. */
static void serial_of(const char *backing, char *out, size_t n)
{
    char desc[256];
    size_t i = 0;
    for (; backing[i] && i + 1 < sizeof desc; i++) {
        char c = backing[i];
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                  strchr("()+,-.:=_/ ", c);
        desc[i] = ok ? c : '_';
    }
    desc[i] = '\0';
    desc[strcspn(desc, " ")] = '\0';
    for (char *p = desc; *p; p++)
        if (*p == '_')
            *p = ' ';
    const char *s = desc;
    while (*s == ' ')
        s++;
    snprintf(out, n, "%s", s);
    for (size_t k = strlen(out); k && out[k - 1] == ' '; k--)
        out[k - 1] = '\0';
    if (!out[0])
        snprintf(out, n, "unknown");
}

static int probe(const char *port, struct bh_blockdev *d)
{
    char p[160], v[4096];
    if (!loop_name(port))
        return -1;
    memset(d, 0, sizeof *d);
    snprintf(p, sizeof p, "/sys/block/%s/loop/backing_file", port);
    if (!read_line(p, v, sizeof v) || !v[0])
        return -1;
    serial_of(v, d->serial, sizeof d->serial);
    snprintf(p, sizeof p, "/sys/block/%s/loop/autoclear", port);
    char ac[8];
    if (read_line(p, ac, sizeof ac) && ac[0] == '1')
        return -1;
    snprintf(p, sizeof p, "/sys/block/%s/dev", port);
    if (!read_line(p, v, sizeof v) || sscanf(v, "%u:%u", &d->major, &d->minor) != 2)
        return -1;
    if (mounted(d->major, d->minor) || has_holders(port))
        return -1;
    snprintf(p, sizeof p, "/sys/block/%s/ro", port);
    d->ro = read_line(p, v, sizeof v) && v[0] == '1';
    snprintf(p, sizeof p, "/sys/block/%s/size", port);
    if (read_line(p, v, sizeof v))
        d->size = strtoull(v, NULL, 10) * 512;
    snprintf(d->port, sizeof d->port, "%s", port);
    /* No parent: "" + ":" + the number the port name ends with. */
    snprintf(d->device_id, sizeof d->device_id, ":%s", port + 4);
    return 0;
}

int bh_blockdev_get(const char *port, struct bh_blockdev *out)
{
    return probe(port, out);
}

static int by_port(const void *a, const void *b)
{
    return strcmp(((const struct bh_blockdev *)a)->port, ((const struct bh_blockdev *)b)->port);
}

int bh_blockdev_list(struct bh_blockdev **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    _cleanup_closedir_ DIR *d = opendir("/sys/block");
    if (!d)
        return 0;
    size_t cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        struct bh_blockdev b;
        if (probe(e->d_name, &b) < 0)
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            struct bh_blockdev *nv = realloc(*out, cap * sizeof **out);
            if (!nv) {
                free(*out);
                *out = NULL;
                *n = 0;
                return -1;
            }
            *out = nv;
        }
        (*out)[(*n)++] = b;
    }
    if (*n)
        qsort(*out, *n, sizeof **out, by_port);
    return 0;
}
