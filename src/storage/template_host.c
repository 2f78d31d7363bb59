/* The `host` template's root tree: merged-usr symlinks, an empty usr/ (the engine binds
 * the host's /usr there read-only) and a fresh minimal /etc. Nothing of the host's /etc
 * comes along except the harmless files listed in host_etc_copy[]: no accounts, no
 * secrets, no host names or addresses, no home. */
#include "internal.h"
#include "cleanup.h"
#include "io.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

struct tree_dir {
    const char *path;
    mode_t mode;
};
static const struct tree_dir host_dirs[] = {
    { "usr", 0755 }, { "etc", 0755 }, { "home", 0755 }, { "root", 0700 }, { "tmp", 01777 },
    { "var", 0755 }, { "var/tmp", 01777 }, { "var/lib", 0755 }, { "var/log", 0755 }, { "var/cache", 0755 },
    { "var/spool", 0755 }, { "var/mail", 02775 }, { "run", 0755 }, { "proc", 0555 }, { "sys", 0555 },
    { "dev", 0755 }, { "rw", 0755 }, { "mnt", 0755 }, { "opt", 0755 }, { "srv", 0755 }, { "media", 0755 },
    { "etc/skel", 0755 }, { "etc/pam.d", 0755 },
};

struct tree_link {
    const char *path, *target;
};
static const struct tree_link host_links[] = {
    { "bin", "usr/bin" }, { "sbin", "usr/sbin" }, { "lib", "usr/lib" }, { "lib64", "usr/lib64" },
    { "var/run", "../run" }, { "var/lock", "../run/lock" }, { "etc/mtab", "../proc/self/mounts" },
};

struct tree_file {
    const char *path;
    mode_t mode;
    gid_t gid;
    const char *text;
};
static const struct tree_file host_files[] = {
    { "etc/passwd", 0644, 0,
      "root:x:0:0:root:/root:/bin/bash\n"
      "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n"
      "user:x:1000:1000:user:/home/user:/bin/bash\n"
      "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" },
    { "etc/group", 0644, 0,
      "root:x:0:\ndaemon:x:1:\nadm:x:4:\ntty:x:5:\ndisk:x:6:\naudio:x:29:user\nshadow:x:42:\nutmp:x:43:\n"
      "video:x:44:user\nqubes:x:98:user\nusers:x:100:user\nuser:x:1000:\nnogroup:x:65534:\n" },
    /* Locked passwords: a qube's root gets there through qrexec, never a password. */
    { "etc/shadow", 0640, 42,
      "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\nuser:!:19000:0:99999:7:::\n"
      "nobody:*:19000:0:99999:7:::\n" },
    { "etc/gshadow", 0640, 42, "root:*::\nshadow:*::\nuser:!::\n" },
    { "etc/hostname", 0644, 0, "localhost\n" },
    { "etc/hosts", 0644, 0, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n" },
    { "etc/resolv.conf", 0644, 0, "nameserver 10.139.1.1\nnameserver 10.139.1.2\n" },
    { "etc/nsswitch.conf", 0644, 0,
      "passwd: files\ngroup: files\nshadow: files\ngshadow: files\nhosts: files dns\nnetworks: files\n"
      "protocols: files\nservices: files\nethers: files\nrpc: files\nnetgroup: files\n" },
    { "etc/shells", 0644, 0, "/bin/sh\n/usr/bin/sh\n/bin/bash\n/usr/bin/bash\n/bin/dash\n/usr/bin/dash\n" },
    { "etc/profile", 0644, 0,
      "# Written by Bulkhead for the host template.\n"
      "if [ \"$(id -u)\" -eq 0 ]; then\n"
      "  PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/usr/lib/bulkhead\n"
      "else\n"
      "  PATH=/usr/local/bin:/usr/bin:/bin:/usr/games:/usr/lib/bulkhead\n"
      "fi\n"
      "export PATH\n"
      "if [ \"${PS1-}\" ] && [ \"${BASH-}\" ] && [ \"$BASH\" != /bin/sh ] && [ -f /etc/bash.bashrc ]; then\n"
      "  . /etc/bash.bashrc\n"
      "fi\n"
      "umask 022\n" },
    /* PAM, our own: root may become anyone (su/runuser to `user`); nobody becomes root
     * by PAM (no passwords, no sudoers: a qube's root is reached through qrexec). */
    { "etc/pam.d/other", 0644, 0,
      "auth required pam_deny.so\naccount required pam_deny.so\npassword required pam_deny.so\n"
      "session required pam_deny.so\n" },
    { "etc/pam.d/su", 0644, 0,
      "auth sufficient pam_rootok.so\nauth required pam_deny.so\naccount required pam_permit.so\n"
      "password required pam_deny.so\nsession required pam_permit.so\n" },
    { "etc/pam.d/su-l", 0644, 0, "@include su\n" },
    { "etc/pam.d/runuser", 0644, 0,
      "auth sufficient pam_rootok.so\nauth required pam_deny.so\naccount required pam_permit.so\n"
      "session required pam_permit.so\n" },
    { "etc/pam.d/runuser-l", 0644, 0, "@include runuser\n" },
    { "etc/fstab", 0644, 0, "# Mounts are made by bulkhead-init.\n" },
    { "etc/bulkhead-template", 0644, 0, "host\n" },
};

/* Host files that carry no secret and that programs from the host's /usr expect:
 * ld.so.cache/conf (libraries outside the linker's default dirs), alternatives (Debian's
 * /usr/bin/awk, editor... are symlinks through /etc/alternatives), timezone, services and
 * protocols tables, shell start files, public CA certificates, fontconfig's config, skel. */
static const char *const host_etc_copy[] = {
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "localtime", "timezone", "protocols",
    "services", "rpc", "ethers", "bash.bashrc", "inputrc", "ssl/certs", "os-release", "debian_version",
    "mime.types", "login.defs", "skel/.bashrc", "skel/.profile", "skel/.bash_logout", "fonts", "ca-certificates.conf",
    NULL,
};

#define COPY_FILE_MAX (32u << 20)
#define COPY_DEPTH_MAX 6

static int write_text(int rootfd, const struct tree_file *f, bh_error *err)
{
    _cleanup_close_ int fd = openat(rootfd, f->path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, f->mode);
    if (fd < 0)
        return bh_fail_errno(err, "create %s", f->path);
    if (bh_write_all(fd, f->text, strlen(f->text)) < 0 || fchown(fd, 0, f->gid) < 0 || fchmod(fd, f->mode) < 0)
        return bh_fail_errno(err, "write %s", f->path);
    return 0;
}

/* Copies host entry sdir/name to ddir/name: regular files (size-limited), symlinks as
 * symlinks, directories recursively; anything else is skipped. Owned by root. */
static int copy_host_entry(int sdir, int ddir, const char *name, int depth, bh_error *err)
{
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : bh_fail_errno(err, "stat /etc/%s", name);
    if (S_ISLNK(st.st_mode)) {
        char target[4096];
        ssize_t n = readlinkat(sdir, name, target, sizeof target - 1);
        if (n < 0)
            return bh_fail_errno(err, "readlink %s", name);
        target[n] = '\0';
        if (symlinkat(target, ddir, name) < 0 && errno != EEXIST)
            return bh_fail_errno(err, "symlink %s", name);
        return 0;
    }
    if (S_ISREG(st.st_mode)) {
        if ((uint64_t)st.st_size > COPY_FILE_MAX || !(st.st_mode & S_IROTH))
            return 0; /* not world-readable on the host: not ours to copy */
        if (bh_fs_copy_file_at(sdir, name, ddir, name, st.st_mode & 0755, err) < 0)
            return -1;
        return fchownat(ddir, name, 0, 0, AT_SYMLINK_NOFOLLOW) < 0 ? bh_fail_errno(err, "chown %s", name) : 0;
    }
    if (!S_ISDIR(st.st_mode) || depth >= COPY_DEPTH_MAX || !(st.st_mode & S_IROTH))
        return 0;
    _cleanup_close_ int sfd = bh_fs_open_dir(sdir, name, err);
    if (sfd < 0)
        return -1;
    _cleanup_close_ int dfd = bh_fs_mkdir_open(ddir, name, st.st_mode & 0755, err);
    if (dfd < 0)
        return -1;
    int dup = openat(sfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_closedir_ DIR *d = dup >= 0 ? fdopendir(dup) : NULL;
    if (!d) {
        if (dup >= 0)
            close(dup);
        return bh_fail_errno(err, "read /etc/%s", name);
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        if (copy_host_entry(sfd, dfd, e->d_name, depth + 1, err) < 0)
            return -1;
    }
    return 0;
}

/* "ssl/certs": open the parents on both sides, then copy the last component. */
static int copy_host_etc(int hostetc, int etcfd, const char *rel, bh_error *err)
{
    char buf[256];
    snprintf(buf, sizeof buf, "%s", rel);
    char *slash = strrchr(buf, '/');
    if (!slash)
        return copy_host_entry(hostetc, etcfd, buf, 0, err);
    *slash = '\0';
    _cleanup_close_ int s = openat(hostetc, buf, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0)
        return 0;
    _cleanup_close_ int d = bh_fs_mkdir_open(etcfd, buf, 0755, err);
    if (d < 0)
        return -1;
    return copy_host_entry(s, d, slash + 1, 0, err);
}

int st_build_host_tree(int rootfd, bh_error *err)
{
    for (size_t i = 0; i < BH_ARRAY_SIZE(host_dirs); i++) {
        if (mkdirat(rootfd, host_dirs[i].path, host_dirs[i].mode) < 0 && errno != EEXIST)
            return bh_fail_errno(err, "mkdir %s", host_dirs[i].path);
        /* mkdir's mode is cut by the umask; the sticky bits and 1777 must be exact. */
        if (fchmodat(rootfd, host_dirs[i].path, host_dirs[i].mode, 0) < 0)
            return bh_fail_errno(err, "chmod %s", host_dirs[i].path);
    }
    for (size_t i = 0; i < BH_ARRAY_SIZE(host_links); i++)
        if (symlinkat(host_links[i].target, rootfd, host_links[i].path) < 0)
            return bh_fail_errno(err, "symlink %s", host_links[i].path);
    for (size_t i = 0; i < BH_ARRAY_SIZE(host_files); i++)
        if (write_text(rootfd, &host_files[i], err) < 0)
            return -1;
    _cleanup_close_ int hostetc = open("/etc", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    _cleanup_close_ int etcfd = bh_fs_open_dir(rootfd, "etc", err);
    if (etcfd < 0)
        return -1;
    if (hostetc >= 0) {
        for (size_t i = 0; host_etc_copy[i]; i++)
            if (copy_host_etc(hostetc, etcfd, host_etc_copy[i], err) < 0)
                return bh_prefix(err, "copy /etc/%s", host_etc_copy[i]);
    }
    if (fchmod(rootfd, 0755) < 0)
        return bh_fail_errno(err, "chmod root");
    return syncfs(rootfd) < 0 ? bh_fail_errno(err, "sync") : 0;
}
