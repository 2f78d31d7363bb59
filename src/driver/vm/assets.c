/* What a VM qube boots: the guest kernel (Debian's cloud kernel, unpacked by
 * scripts/vm-kernel.sh into a vm-kernel directory: vmlinuz, modules/NAME.ko, modules/order),
 * the initramfs we write ourselves (newc cpio: bulkhead-vminit as /init, the modules,
 * our in-qube programs under /bhusr/lib/bulkhead), and the template root as an erofs
 * image (mkfs.erofs), rebuilt only when the tree changed. */
#include "vm.h"
#include "cleanup.h"
#include "io.h"
#include "selfpath.h"
#include <dirent.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

int bh_vm_kernel_dir(char *out, size_t n)
{
    const char *e = getenv("BULKHEAD_VM_KERNEL_DIR");
    if (e && *e) {
        snprintf(out, n, "%s", e);
    } else {
        static const char *const rels[] = { "../../vm-kernel", "../vm-kernel", "../lib/bulkhead/vm-kernel", NULL };
        if (bh_find_near_self(rels, "vmlinuz", R_OK, out, n) < 0)
            return -1;
        char *s = strrchr(out, '/');
        *s = '\0';
    }
    char k[PATH_MAX + 16];
    snprintf(k, sizeof k, "%s/vmlinuz", out);
    return access(k, R_OK);
}

int bh_kernel_default(char *out, size_t n)
{
    char dir[PATH_MAX], v[PATH_MAX + 16];
    if (bh_vm_kernel_dir(dir, sizeof dir) < 0)
        return -1;
    snprintf(v, sizeof v, "%s/version", dir);
    _cleanup_free_ char *t = bh_read_file(v, 256, NULL);
    if (!t)
        return -1;
    t[strcspn(t, "\n")] = '\0';
    const char *name = strncmp(t, "linux-image-", 12) ? t : t + 12; /* the package's name */
    if (!*name || strchr(name, '/') || strlen(name) >= n)
        return -1;
    snprintf(out, n, "%s", name);
    return 0;
}

int bh_kernel_find(const char *name, char *dir, size_t n)
{
    char def[256];
    if (!name || !*name || bh_kernel_default(def, sizeof def) < 0 || strcmp(def, name))
        return -1;
    char d[PATH_MAX];
    if (bh_vm_kernel_dir(d, sizeof d) < 0)
        return -1;
    if (dir)
        snprintf(dir, n, "%s", d);
    return 0;
}

static uint64_t tree_bytes;
static int add_size(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path, (void)ftw;
    if (flag == FTW_F)
        tree_bytes += (uint64_t)st->st_size;
    return 0;
}

uint64_t bh_kernel_size(const char *name)
{
    char d[PATH_MAX];
    if (bh_kernel_find(name, d, sizeof d) < 0)
        return 0;
    tree_bytes = 0;
    nftw(d, add_size, 16, FTW_PHYS);
    return tree_bytes;
}

static int find_prog(const char *name, char *out, size_t n)
{
    static const char *const rels[] = { ".", "../driver", "../../driver", "../lib/bulkhead", "../libexec/bulkhead", NULL };
    return bh_find_near_self(rels, name, X_OK, out, n);
}

/* A 64-bit ELF executable without a program interpreter (PT_INTERP): it runs in the
 * guest, where no dynamic loader or library of the host's is. A sanitizer build links
 * every program dynamically (its runtime is a shared library). */
static bool elf_static(const char *path)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    Elf64_Ehdr eh;
    if (fd < 0 || pread(fd, &eh, sizeof eh, 0) != (ssize_t)sizeof eh || memcmp(eh.e_ident, ELFMAG, SELFMAG) ||
        eh.e_ident[EI_CLASS] != ELFCLASS64 || eh.e_phentsize != sizeof(Elf64_Phdr) || eh.e_phnum > 256)
        return false;
    for (unsigned i = 0; i < eh.e_phnum; i++) {
        Elf64_Phdr ph;
        if (pread(fd, &ph, sizeof ph, (off_t)(eh.e_phoff + (uint64_t)i * sizeof ph)) != (ssize_t)sizeof ph ||
            ph.p_type == PT_INTERP)
            return false;
    }
    return true;
}

bool bh_vm_guest_programs_ok(void)
{
    char vminit[PATH_MAX], bridge[PATH_MAX];
    return find_prog("bulkhead-vminit", vminit, sizeof vminit) == 0 &&
           find_prog("bulkhead-vchan-bridge", bridge, sizeof bridge) == 0 && elf_static(vminit) && elf_static(bridge);
}

static int find_libexec(char *out, size_t n)
{
    const char *e = getenv("BULKHEAD_LIBEXEC");
    if (e && *e) {
        snprintf(out, n, "%s", e);
        return 0;
    }
    static const char *const rels[] = { ".", "../agent", "../../agent", "../lib/bulkhead", "../libexec/bulkhead", NULL };
    if (bh_find_near_self(rels, "bulkhead-init", X_OK, out, n) < 0)
        return -1;
    *strrchr(out, '/') = '\0';
    return 0;
}

/* ---- newc cpio writer ---- */

struct cpio {
    FILE *f;
    unsigned ino;
    unsigned long long stamp; /* sum of the inputs' mtimes and sizes: rebuild key */
};

static void cpio_pad(struct cpio *c)
{
    while (ftell(c->f) % 4)
        fputc(0, c->f);
}

static void cpio_entry(struct cpio *c, const char *name, unsigned mode, const void *data, size_t len)
{
    fprintf(c->f, "070701%08X%08X%08X%08X%08X%08X%08zX%08X%08X%08X%08X%08zX%08X", ++c->ino, mode, 0, 0,
            S_ISDIR(mode) ? 2 : 1, 0, len, 0, 0, 0, 0, strlen(name) + 1, 0);
    fwrite(name, 1, strlen(name) + 1, c->f);
    cpio_pad(c);
    if (len)
        fwrite(data, 1, len, c->f);
    cpio_pad(c);
}

static int cpio_file(struct cpio *c, const char *name, const char *src, unsigned mode, bh_error *err)
{
    struct stat st;
    if (lstat(src, &st) < 0)
        return bh_fail_errno(err, "%s", src);
    if (S_ISLNK(st.st_mode)) {
        char t[PATH_MAX];
        ssize_t n = readlink(src, t, sizeof t);
        if (n < 0)
            return bh_fail_errno(err, "readlink %s", src);
        cpio_entry(c, name, S_IFLNK | 0777, t, (size_t)n);
        return 0;
    }
    size_t len;
    _cleanup_free_ char *data = bh_read_file(src, 256u << 20, &len);
    if (!data)
        return bh_fail_errno(err, "reading %s", src);
    c->stamp += (unsigned long long)st.st_mtime * 31 + (unsigned long long)st.st_size;
    cpio_entry(c, name, S_IFREG | (mode ? mode : (st.st_mode & 0777)), data, len);
    return 0;
}

/* every regular file and symlink of dir (one level) into the archive under prefix */
static int cpio_dir(struct cpio *c, const char *dir, const char *prefix, bh_error *err)
{
    _cleanup_closedir_ DIR *d = opendir(dir);
    if (!d)
        return bh_fail_errno(err, "opendir %s", dir);
    cpio_entry(c, prefix, S_IFDIR | 0755, NULL, 0);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.' || strstr(e->d_name, ".p") == e->d_name + strlen(e->d_name) - 2)
            continue;
        char src[PATH_MAX], name[PATH_MAX];
        snprintf(src, sizeof src, "%s/%s", dir, e->d_name);
        snprintf(name, sizeof name, "%s/%s", prefix, e->d_name);
        struct stat st;
        if (lstat(src, &st) < 0)
            continue;
        if (S_ISDIR(st.st_mode)) {
            if (!strcmp(e->d_name, "qubes-rpc") && cpio_dir(c, src, name, err) < 0)
                return -1;
            continue;
        }
        if (S_ISLNK(st.st_mode) || (S_ISREG(st.st_mode) && (st.st_mode & 0111 || strstr(prefix, "qubes-rpc"))))
            if (cpio_file(c, name, src, 0, err) < 0)
                return -1;
    }
    return 0;
}

/* The size of a module without its appended signature ("~Module signature appended~\n"
 * after a struct module_signature whose last field is the signature's length, big
 * endian), or len if it has none. The guest kernel checks a signature on every load,
 * under TCG ~10-40 ms of a boot per module, 15 modules, and does not require one
 * (Debian's kernel is not built with MODULE_SIG_FORCE, and the guest boots without
 * lockdown): the modules come from the kernel package on the host, which checked it.
 * Unsigned, the guest kernel says once that it is tainted. */
size_t bh_vm_module_unsigned_len(const unsigned char *data, size_t len)
{
    static const char magic[] = "~Module signature appended~\n";
    const size_t ml = sizeof magic - 1, info = 12; /* struct module_signature */
    if (len < ml + info || memcmp(data + len - ml, magic, ml))
        return len;
    const unsigned char *sl = data + len - ml - 4;
    size_t sig = (size_t)sl[0] << 24 | (size_t)sl[1] << 16 | (size_t)sl[2] << 8 | sl[3];
    if (sig > len - ml - info)
        return len; /* not a signature we understand: leave the file as it is */
    return len - ml - info - sig;
}

/* The names (as the kernel writes them: '-' is '_') of the modules this one needs:
 * its .modinfo `depends=` string, comma-separated, into out. Trusted input (the
 * kernel package's modules), still bounded by the buffer sizes. */
static void module_depends(const char *data, size_t len, char *out, size_t n)
{
    static const char key[] = "depends=";
    out[0] = '\0';
    for (const char *p = data; (p = memmem(p, len - (size_t)(p - data), key, sizeof key - 1)); p++) {
        if (p > data && p[-1] != '\0')
            continue; /* not the start of a .modinfo string */
        const char *v = p + sizeof key - 1;
        size_t l = strnlen(v, len - (size_t)(v - data));
        snprintf(out, n, "%.*s", (int)l, v);
        for (char *c = out; *c; c++)
            if (*c == '-')
                *c = '_';
        return;
    }
}

/* The guest's modules, in the order of vm-kernel/modules/order (dependencies first),
 * without their signatures, and /modules/load: one line per module, "FILE DEPS"
 * (DEPS: the names of the modules it needs, comma-separated, or "-"), read by
 * bulkhead-vminit's loader threads. Found here once per initramfs, not by the guest
 * at every boot (reading 1.6 MB of modules for their .modinfo took it ~0.1 s). */
static int cpio_modules(struct cpio *c, const char *kdir, bh_error *err)
{
    char path[PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/modules/order", kdir);
    _cleanup_free_ char *order = bh_read_file(path, 64 << 10, NULL);
    if (!order)
        return bh_fail_errno(err, "reading %s", path);
    struct stat st;
    if (stat(path, &st) == 0)
        c->stamp += (unsigned long long)st.st_mtime;
    cpio_entry(c, "modules", S_IFDIR | 0755, NULL, 0);
    size_t cap = 4096, used = 0;
    _cleanup_free_ char *load = malloc(cap);
    if (!load)
        return bh_fail(err, ENOMEM, "out of memory");
    load[0] = '\0';
    for (char *save = NULL, *line = strtok_r(order, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        size_t l = strlen(line);
        if (l < 4 || l > 60 || strcmp(line + l - 3, ".ko") || strchr(line, '/') || strchr(line, ' '))
            continue;
        snprintf(path, sizeof path, "%s/modules/%s", kdir, line);
        size_t len;
        _cleanup_free_ char *data = bh_read_file(path, 64u << 20, &len);
        if (!data || stat(path, &st) < 0)
            return bh_fail_errno(err, "reading %s", path);
        char name[128], deps[512];
        module_depends(data, len, deps, sizeof deps);
        snprintf(name, sizeof name, "modules/%s", line);
        cpio_entry(c, name, S_IFREG | 0644, data, bh_vm_module_unsigned_len((const unsigned char *)data, len));
        char row[700];
        int rl = snprintf(row, sizeof row, "%s %s\n", line, deps[0] ? deps : "-");
        if (rl < 0 || (size_t)rl >= sizeof row)
            return bh_fail(err, E2BIG, "module %s: dependency list too long", line);
        if (used + (size_t)rl + 1 > cap) {
            char *bigger = realloc(load, cap * 2);
            if (!bigger)
                return bh_fail(err, ENOMEM, "out of memory");
            load = bigger;
            cap *= 2;
        }
        memcpy(load + used, row, (size_t)rl + 1);
        used += (size_t)rl;
    }
    cpio_entry(c, "modules/load", S_IFREG | 0644, load, used);
    return 0;
}

static int build_initramfs(const char *out, const char *kdir, const char *vminit, const char *bridge,
                           const char *libexec, bh_error *err)
{
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", out);
    struct cpio c = { .f = fopen(tmp, "we") };
    if (!c.f)
        return bh_fail_errno(err, "creating %s", tmp);
    static const char *const dirs[] = { "dev", "proc", "sys", "lower", "newroot", "vol", "hostusr", "bhusr", "bhusr/lib", NULL };
    for (int i = 0; dirs[i]; i++)
        cpio_entry(&c, dirs[i], S_IFDIR | 0755, NULL, 0);
    int r = cpio_file(&c, "init", vminit, 0755, err);
    if (r == 0)
        r = cpio_modules(&c, kdir, err);
    if (r == 0)
        r = cpio_dir(&c, libexec, "bhusr/lib/bulkhead", err);
    if (r == 0)
        r = cpio_file(&c, "bhusr/lib/bulkhead/bulkhead-vchan-bridge", bridge, 0755, err);
    if (r == 0) /* also reachable after switch_root: `bulkhead-vminit --net` (link changes) */
        r = cpio_file(&c, "bhusr/lib/bulkhead/bulkhead-vminit", vminit, 0755, err);
    cpio_entry(&c, "TRAILER!!!", 0, NULL, 0);
    if (fclose(c.f) != 0 && r == 0)
        r = bh_fail_errno(err, "writing %s", tmp);
    if (r == 0 && rename(tmp, out) < 0)
        r = bh_fail_errno(err, "rename %s", out);
    if (r < 0)
        unlink(tmp);
    return r;
}

/* A cheap key of every input: mtimes and sizes of the programs, modules and kernel. */
static unsigned long long inputs_key(const char *kdir, const char *vminit, const char *bridge, const char *libexec)
{
    unsigned long long k = 0;
    const char *paths[] = { kdir, vminit, bridge, libexec, NULL };
    for (int i = 0; paths[i]; i++) {
        struct stat st;
        if (stat(paths[i], &st) == 0)
            k = k * 1000003u + (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec + (unsigned long long)st.st_size;
    }
    _cleanup_closedir_ DIR *d = opendir(libexec);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
            k = k * 1000003u + (unsigned long long)st.st_mtim.tv_sec * 1000000000ull + (unsigned long long)st.st_mtim.tv_nsec;
    }
    return k;
}

int bh_vm_assets(const char *cache_dir, const char *kernel, struct bh_vm_assets *a, bh_error *err)
{
    char kdir[PATH_MAX], vminit[PATH_MAX], libexec[PATH_MAX];
    if (find_prog("bulkhead-vminit", vminit, sizeof vminit) < 0 ||
        find_prog("bulkhead-vchan-bridge", a->bridge, sizeof a->bridge) < 0)
        return bh_fail(err, ENOENT, "bulkhead-vminit or bulkhead-vchan-bridge not found next to bulkheadd");
    if (!elf_static(vminit) || !elf_static(a->bridge))
        return bh_fail(err, ENOEXEC, "%s and %s must be static executables (they run in the guest, which has "
                                     "no dynamic loader of ours); this build linked them dynamically (a sanitizer "
                                     "build?): the vm engine needs a build without sanitizers",
                       vminit, a->bridge);
    if (bh_vm_kernel_dir(kdir, sizeof kdir) < 0)
        return bh_fail(err, ENOENT, "no guest kernel: run scripts/vm-kernel.sh (or set BULKHEAD_VM_KERNEL_DIR)");
    /* as Qubes: an empty `kernel` boots the qube's own kernel from its root, which
     * the vm engine does not do; any other name must be an installed kernel */
    if (!kernel || !*kernel)
        return bh_fail(err, ENOTSUP, "the qube's `kernel` is empty (its own kernel): the vm engine boots an "
                                     "installed kernel, set `kernel` (qvm-prefs QUBE kernel --default)");
    if (bh_kernel_find(kernel, kdir, sizeof kdir) < 0)
        return bh_fail(err, ENOENT, "Kernel '%s' not installed", kernel);
    if (find_libexec(libexec, sizeof libexec) < 0)
        return bh_fail(err, ENOENT, "our in-qube programs (bulkhead-init) not found");
    if (strlen(kdir) > sizeof a->kernel - 16)
        return bh_fail(err, ENAMETOOLONG, "kernel dir path too long");
    snprintf(a->kernel, sizeof a->kernel, "%.4000s/vmlinuz", kdir);
    snprintf(a->virtiofsd, sizeof a->virtiofsd, "%s", BH_VM_VIRTIOFSD);
    if (access(a->virtiofsd, X_OK) < 0)
        a->virtiofsd[0] = '\0';
    if (bh_mkdir_p(cache_dir, 0755) < 0)
        return bh_fail_errno(err, "mkdir %s", cache_dir);
    unsigned long long key = inputs_key(kdir, vminit, a->bridge, libexec);
    snprintf(a->initramfs, sizeof a->initramfs, "%s/initramfs-%llx.cpio", cache_dir, key);
    if (access(a->initramfs, R_OK) == 0)
        return 0;
    return build_initramfs(a->initramfs, kdir, vminit, a->bridge, libexec, err);
}

/* ---- the template root as erofs ---- */

static struct timespec newest;
static unsigned long long nfiles;
static int newer(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)path, (void)flag, (void)ftw;
    const struct timespec *ts[] = { &st->st_mtim, &st->st_ctim };
    for (int i = 0; i < 2; i++)
        if (ts[i]->tv_sec > newest.tv_sec || (ts[i]->tv_sec == newest.tv_sec && ts[i]->tv_nsec > newest.tv_nsec))
            newest = *ts[i];
    nfiles++;
    return 0;
}

/* FNV-1a of the template root's path: the image's name. Not the root's device and
 * inode: a template's root is a mount of its image, whose loop device (and so st_dev)
 * changes with every mount, and each new name left the last image behind. */
static unsigned long long path_key(const char *path)
{
    unsigned long long h = 1469598103934665603ull;
    for (const unsigned char *c = (const unsigned char *)path; *c; c++)
        h = (h ^ *c) * 1099511628211ull;
    return h;
}

/* One current image per template root: removes images whose template root is gone
 * (the stamp's second line names it) or is this one's under another name, images of
 * the old naming (no path in the stamp,
 * or no stamp), and temporary files of builds that died. A running VM keeps the image
 * it opened (QEMU holds its fd). */
static void prune_images(const char *cache_dir, const char *keep, const char *keep_src)
{
    _cleanup_closedir_ DIR *d = opendir(cache_dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *n = e->d_name;
        size_t l = strlen(n);
        if (strncmp(n, "root-", 5))
            continue;
        char path[PATH_MAX];
        if (snprintf(path, sizeof path, "%s/%s", cache_dir, n) >= (int)sizeof path || !strcmp(path, keep))
            continue;
        const char *tmp = strstr(n, ".erofs.");
        if (tmp && l > 4 && !strcmp(n + l - 4, ".tmp")) {
            char proc[64];
            snprintf(proc, sizeof proc, "/proc/%d", atoi(tmp + 7));
            if (access(proc, F_OK) < 0)
                unlinkat(dirfd(d), n, 0);
            continue;
        }
        if (l < 6 || strcmp(n + l - 6, ".erofs"))
            continue;
        char stamp_path[PATH_MAX + 8];
        snprintf(stamp_path, sizeof stamp_path, "%s.stamp", path);
        _cleanup_free_ char *st = bh_read_file(stamp_path, 8192, NULL);
        char *src = st ? strchr(st, '\n') : NULL;
        if (src && src[1]) {
            src++;
            src[strcspn(src, "\n")] = '\0';
            struct stat sb;
            if (strcmp(src, keep_src) && stat(src, &sb) == 0 && S_ISDIR(sb.st_mode))
                continue; /* another template's current image */
        }
        unlink(path);
        unlink(stamp_path);
    }
}

int bh_vm_root_image(const char *cache_dir, const char *root_dir, char *out, size_t n, bh_error *err)
{
    if (bh_mkdir_p(cache_dir, 0700) < 0)
        return bh_fail_errno(err, "mkdir %s", cache_dir);
    /* name: the template root's path; content key: newest change anywhere in it, and
     * the number of files */
    struct stat st;
    if (stat(root_dir, &st) < 0)
        return bh_fail_errno(err, "template root %s", root_dir);
    if (strchr(root_dir, '\n'))
        return bh_fail(err, EINVAL, "template root path with a newline");
    newest = (struct timespec){ 0 };
    nfiles = 0;
    if (nftw(root_dir, newer, 64, FTW_PHYS | FTW_MOUNT) < 0)
        return bh_fail_errno(err, "scanning %s", root_dir);
    char stamp[PATH_MAX + 128], stamp_path[PATH_MAX];
    int sl = snprintf(stamp, sizeof stamp, "%lld.%09ld %llu\n%s\n", (long long)newest.tv_sec, newest.tv_nsec, nfiles,
                      root_dir);
    if (sl < 0 || sl >= (int)sizeof stamp)
        return bh_fail(err, ENAMETOOLONG, "template root path too long");
    snprintf(out, n, "%s/root-%016llx.erofs", cache_dir, path_key(root_dir));
    snprintf(stamp_path, sizeof stamp_path, "%s.stamp", out);
    _cleanup_free_ char *old = bh_read_file(stamp_path, sizeof stamp, NULL);
    if (old && !strcmp(old, stamp) && access(out, R_OK) == 0) {
        prune_images(cache_dir, out, root_dir);
        return 0;
    }
    char tmp[PATH_MAX + 16];
    snprintf(tmp, sizeof tmp, "%s.%d.tmp", out, (int)getpid());
    pid_t pid = fork();
    if (pid < 0)
        return bh_fail_errno(err, "fork");
    if (pid == 0) {
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 1);
        dup2(nul, 2);
        execlp("mkfs.erofs", "mkfs.erofs", "--quiet", tmp, root_dir, (char *)NULL);
        _exit(127);
    }
    int ws;
    while (waitpid(pid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0) {
        unlink(tmp);
        return bh_fail(err, EIO, "mkfs.erofs %s failed (status %d; is erofs-utils installed?)", root_dir, ws);
    }
    chmod(tmp, 0600);
    if (rename(tmp, out) < 0)
        return bh_fail_errno(err, "rename %s", out);
    if (bh_write_runtime_file(stamp_path, stamp, (size_t)sl, 0600) < 0)
        return bh_fail_errno(err, "writing %s", stamp_path);
    prune_images(cache_dir, out, root_dir);
    return 0;
}
