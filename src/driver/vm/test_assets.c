/* Unit tests of the template root images (assets.c: bh_vm_root_image): one image per
 * template root, named by the root's path (not by its device, which changes with every
 * mount of a template's image), rebuilt in place when the tree changed, and the cache
 * pruned of images whose template is gone, of images of the old naming, and of
 * temporary files of builds that died. Needs mkfs.erofs (skipped without). */
#include "driver/vm/vm.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int fails;
#define CHECK(c) do { if (!(c)) { fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #c); fails++; } } while (0)

static void put(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

/* files in dir whose name ends with suffix */
static int count(const char *dir, const char *suffix)
{
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        n += l >= s && !strcmp(e->d_name + l - s, suffix);
    }
    if (d)
        closedir(d);
    return n;
}

static ino_t ino_of(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? st.st_ino : 0;
}

/* bh_vm_module_unsigned_len: the initramfs carries the guest's modules without their
 * appended signatures (the guest kernel does not require them, and checking one cost
 * each load under TCG); a file without one, or with a length that does not fit, is
 * left whole */
static void test_module_signature(void)
{
    static const char magic[] = "~Module signature appended~\n";
    unsigned char m[256] = { 0 };
    size_t body = 100, sig = 40, n = 0;
    memset(m, 0x7f, body);
    n = body + sig; /* signature bytes */
    unsigned char info[12] = { 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, (unsigned char)sig }; /* sig_len, big endian */
    memcpy(m + n, info, sizeof info);
    n += sizeof info;
    memcpy(m + n, magic, sizeof magic - 1);
    n += sizeof magic - 1;
    CHECK(bh_vm_module_unsigned_len(m, n) == body);
    CHECK(bh_vm_module_unsigned_len(m, body) == body);          /* no signature */
    CHECK(bh_vm_module_unsigned_len(m, n - 1) == n - 1);        /* not the magic at the end */
    m[body + sig + 10] = 0x10;                                  /* sig_len 4136: longer than the file */
    CHECK(bh_vm_module_unsigned_len(m, n) == n);
    CHECK(bh_vm_module_unsigned_len((const unsigned char *)magic, sizeof magic - 1) == sizeof magic - 1);
}

int main(void)
{
    test_module_signature();
    if (fails)
        return 1;
    if (system("command -v mkfs.erofs >/dev/null 2>&1") != 0) {
        fprintf(stderr, "SKIP: mkfs.erofs not installed (erofs-utils)\n");
        return 77;
    }
    char base[] = "/tmp/bh-test-assets-XXXXXX";
    if (!mkdtemp(base))
        return 1;
    char cache[256], ta[256], tb[256], f[320];
    snprintf(cache, sizeof cache, "%s/cache", base);
    snprintf(ta, sizeof ta, "%s/ta", base);
    snprintf(tb, sizeof tb, "%s/tb", base);
    mkdir(ta, 0755);
    mkdir(tb, 0755);
    snprintf(f, sizeof f, "%s/file", ta);
    put(f, "a\n");
    snprintf(f, sizeof f, "%s/file", tb);
    put(f, "b\n");
    bh_error err = { 0 };
    char ia[4096], ia2[4096], ib[4096];

    /* two templates, two images; the same call again builds nothing */
    CHECK(bh_vm_root_image(cache, ta, ia, sizeof ia, &err) == 0);
    CHECK(bh_vm_root_image(cache, tb, ib, sizeof ib, &err) == 0);
    CHECK(strcmp(ia, ib) != 0);
    CHECK(count(cache, ".erofs") == 2);
    ino_t first = ino_of(ia);
    CHECK(bh_vm_root_image(cache, ta, ia2, sizeof ia2, &err) == 0);
    CHECK(!strcmp(ia, ia2) && ino_of(ia2) == first);

    /* the template changed: rebuilt under the same name, the old image replaced */
    nanosleep(&(struct timespec){ 0, 20 * 1000 * 1000 }, NULL);
    snprintf(f, sizeof f, "%s/new", ta);
    put(f, "new\n");
    CHECK(bh_vm_root_image(cache, ta, ia2, sizeof ia2, &err) == 0);
    CHECK(!strcmp(ia, ia2) && ino_of(ia2) != first);
    CHECK(count(cache, ".erofs") == 2);

    /* leftovers: an image of the old naming (device-inode, stamp without a path), a
     * temporary file of a build that died (no such PID), one of a build still running
     * (our PID: kept) */
    snprintf(f, sizeof f, "%s/root-803-1f2e.erofs", cache);
    put(f, "old");
    snprintf(f, sizeof f, "%s/root-803-1f2e.erofs.stamp", cache);
    put(f, "1.0 3\n");
    snprintf(f, sizeof f, "%s/root-0123456789abcdef.erofs.999999999.tmp", cache);
    put(f, "dead");
    char live[320];
    snprintf(live, sizeof live, "%s/root-0123456789abcdef.erofs.%d.tmp", cache, (int)getpid());
    put(live, "live");
    /* an image of template a under another name (an earlier naming): not current */
    snprintf(f, sizeof f, "%s/root-00000000000000aa.erofs", cache);
    put(f, "other");
    char st[600];
    snprintf(st, sizeof st, "1.0 1\n%s\n", ta);
    snprintf(f, sizeof f, "%s/root-00000000000000aa.erofs.stamp", cache);
    put(f, st);
    /* template b is removed: its image goes at the next look at the cache */
    snprintf(f, sizeof f, "rm -rf '%s'", tb);
    CHECK(system(f) == 0);
    CHECK(bh_vm_root_image(cache, ta, ia2, sizeof ia2, &err) == 0);
    CHECK(count(cache, ".erofs") == 1 && access(ia, R_OK) == 0 && access(ib, F_OK) < 0);
    CHECK(count(cache, ".stamp") == 1);
    CHECK(count(cache, ".tmp") == 1 && access(live, F_OK) == 0);
    if (fails)
        fprintf(stderr, "%s: %s\n", base, err.msg);
    snprintf(f, sizeof f, "rm -rf '%s'", base);
    (void)!system(f);
    return fails ? 1 : 0;
}
