/* bulkhead-fusermount: mounting inside an ns qube, with the familiar commands.
 *
 * A qube cannot call mount(2) (Landlock), so FUSE mounts go through the qube's broker
 * (src/driver/ns/fusebroker.c, protocol in src/lib/fusemount.h). One program, called by
 * the name it is linked as in the qube's /usr (the ns engine adds the links):
 *   fusermount [-o OPTS] [-u] [-q] [-z] [--] MOUNTPOINT
 *       what libfuse runs when its own mount(2) fails: mount and hand the /dev/fuse
 *       descriptor back over $_FUSE_COMMFD (libfuse's protocol), or -u: unmount.
 *   mount.ext4 / mount.ext3 / mount.ext2 SPEC DIR [-sfnv] [-o OPTS]
 *       what mount(8) runs for such a file system: fuse2fs SPEC DIR, readable by every
 *       user with the kernel checking file modes (allow_other, default_permissions),
 *       read-only when asked or when the device opens read-only only (a read-only
 *       attach), as mount(8) says for a write-protected device.
 *   umount.fuse DIR [-flnrv] [-t TYPE]
 *       what umount(8) runs for a FUSE mount: unmount through the broker. */
#include "fusemount.h"
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *prog = "fusermount";

/* One request to the broker; its answer (0 or an errno value). */
static int ask_broker(const struct bh_fusemount_req *r, const int *fds, int nfds)
{
    int s = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    struct sockaddr_un a = { .sun_family = AF_UNIX };
    memcpy(a.sun_path + 1, BH_FUSEMOUNT_SOCKET, strlen(BH_FUSEMOUNT_SOCKET));
    socklen_t al = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + strlen(BH_FUSEMOUNT_SOCKET));
    if (s < 0 || connect(s, (struct sockaddr *)&a, al) < 0) {
        int e = errno;
        if (s >= 0)
            close(s);
        fprintf(stderr, "%s: no mount broker in this qube (%s): it starts with the first qvm-block attach\n", prog,
                strerror(e));
        return -1;
    }
    union { struct cmsghdr h; char b[CMSG_SPACE(2 * sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    struct iovec iov = { (void *)r, sizeof *r };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                         .msg_controllen = CMSG_SPACE((size_t)nfds * sizeof(int)) };
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET, h->cmsg_type = SCM_RIGHTS, h->cmsg_len = CMSG_LEN((size_t)nfds * sizeof(int));
    memcpy(CMSG_DATA(h), fds, (size_t)nfds * sizeof(int));
    int32_t answer = EIO;
    if (sendmsg(s, &mh, MSG_NOSIGNAL) < 0 || recv(s, &answer, sizeof answer, 0) != (ssize_t)sizeof answer)
        answer = errno ? errno : EIO;
    close(s);
    return answer;
}

static int broker_umount(const char *dir, bool quiet)
{
    int t = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (t < 0) {
        if (!quiet)
            fprintf(stderr, "%s: %s: %s\n", prog, dir, strerror(errno));
        return 1;
    }
    struct bh_fusemount_req r = { .op = 'U' };
    int e = ask_broker(&r, &t, 1);
    close(t);
    if (e && !quiet && e > 0)
        fprintf(stderr, "%s: failed to unmount %s: %s\n", prog, dir, strerror(e));
    return e ? 1 : 0;
}

static void copy_field(char *dst, size_t n, const char *v)
{
    if (strlen(v) >= n)
        return;
    for (const char *p = v; *p; p++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+:@/-", *p))
            return; /* left empty: the broker shows no source rather than a strange one */
    strcpy(dst, v);
}

/* libfuse's fusermount: -o OPTS (comma separated; only what the broker knows is used). */
static int fusermount_main(int argc, char **argv)
{
    const char *opts = "", *mnt = NULL;
    bool unmount = false, quiet = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-o") && i + 1 < argc)
            opts = argv[++i];
        else if (!strcmp(argv[i], "-u"))
            unmount = true;
        else if (!strcmp(argv[i], "-q"))
            quiet = true;
        else if (!strcmp(argv[i], "-z"))
            ;
        else if (!strcmp(argv[i], "--") && i + 1 < argc)
            mnt = argv[++i];
        else if (argv[i][0] != '-')
            mnt = argv[i];
    }
    if (!mnt) {
        fprintf(stderr, "usage: %s [-o OPTS] [-u] [-q] [-z] [--] MOUNTPOINT\n", prog);
        return 1;
    }
    if (unmount)
        return broker_umount(mnt, quiet);
    struct bh_fusemount_req r = { .op = 'M' };
    char *list = strdup(opts);
    for (char *o = list ? strtok(list, ",") : NULL; o; o = strtok(NULL, ",")) {
        if (!strcmp(o, "ro"))
            r.flags |= BH_FUSEMOUNT_RDONLY;
        else if (!strcmp(o, "noexec"))
            r.flags |= BH_FUSEMOUNT_NOEXEC;
        else if (!strcmp(o, "allow_other"))
            r.flags |= BH_FUSEMOUNT_ALLOW_OTHER;
        else if (!strcmp(o, "default_permissions"))
            r.flags |= BH_FUSEMOUNT_DEFAULT_PERMISSIONS;
        else if (!strncmp(o, "fsname=", 7))
            copy_field(r.source, sizeof r.source, o + 7);
        else if (!strncmp(o, "subtype=", 8))
            copy_field(r.subtype, sizeof r.subtype, o + 8);
        else if (!strcmp(o, "blkdev")) {
            fprintf(stderr, "%s: fuseblk mounts are not available in a qube\n", prog);
            return 1;
        } /* rw, nosuid, nodev (always), and libfuse's own options: nothing to do */
    }
    free(list);
    /* fuse2fs keeps its own "ro" (it opens the disk read-only) and asks libfuse for a
     * read-write mount: our mount.ext4 says so here, and the mount is read-only too. */
    const char *extra = getenv("BULKHEAD_FUSE_MOUNT_RO");
    if (extra && !strcmp(extra, "1"))
        r.flags |= BH_FUSEMOUNT_RDONLY;
    if (!r.source[0])
        strcpy(r.source, "fuse");
    const char *commfd = getenv("_FUSE_COMMFD");
    int comm = commfd ? atoi(commfd) : -1;
    if (comm < 0) {
        fprintf(stderr, "%s: only libfuse runs this to mount ($_FUSE_COMMFD is not set)\n", prog);
        return 1;
    }
    int fds[2];
    fds[0] = open("/dev/fuse", O_RDWR | O_CLOEXEC);
    if (fds[0] < 0) {
        fprintf(stderr, "%s: failed to open /dev/fuse: %s\n", prog, strerror(errno));
        return 1;
    }
    fds[1] = open(mnt, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fds[1] < 0) {
        fprintf(stderr, "%s: bad mount point %s: %s\n", prog, mnt, strerror(errno));
        return 1;
    }
    int e = ask_broker(&r, fds, 2);
    if (e) {
        if (e > 0)
            fprintf(stderr, "%s: mount failed: %s\n", prog, strerror(e));
        return 1;
    }
    /* libfuse's protocol: one byte with the /dev/fuse descriptor */
    union { struct cmsghdr h; char b[CMSG_SPACE(sizeof(int))]; } ctl;
    memset(&ctl, 0, sizeof ctl);
    char byte = 0;
    struct iovec iov = { &byte, 1 };
    struct msghdr mh = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b, .msg_controllen = sizeof ctl.b };
    struct cmsghdr *h = CMSG_FIRSTHDR(&mh);
    h->cmsg_level = SOL_SOCKET, h->cmsg_type = SCM_RIGHTS, h->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(h), &fds[0], sizeof(int));
    if (sendmsg(comm, &mh, MSG_NOSIGNAL) < 0) {
        fprintf(stderr, "%s: passing the descriptor to libfuse: %s\n", prog, strerror(errno));
        (void)broker_umount(mnt, true);
        return 1;
    }
    return 0;
}

/* mount(8)'s helper interface: mount.TYPE SPEC DIR [-sfnv] [-N NS] [-o OPTS] [-t TYPE]. */
static int mount_helper_main(int argc, char **argv)
{
    const char *spec = NULL, *dir = NULL, *opts = "";
    for (int i = 1; i < argc; i++) {
        if ((!strcmp(argv[i], "-o") || !strcmp(argv[i], "-t") || !strcmp(argv[i], "-N")) && i + 1 < argc) {
            if (argv[i][1] == 'o')
                opts = argv[i + 1];
            i++;
        } else if (argv[i][0] == '-')
            ; /* -s -f -n -v: sloppy, fake, no mtab, verbose */
        else if (!spec)
            spec = argv[i];
        else if (!dir)
            dir = argv[i];
    }
    if (!spec || !dir) {
        fprintf(stderr, "usage: %s SPEC DIR [-o OPTIONS]\n", prog);
        return 1;
    }
    bool ro = false, noexec = false;
    char *list = strdup(opts);
    for (char *o = list ? strtok(list, ",") : NULL; o; o = strtok(NULL, ","))
        ro |= !strcmp(o, "ro"), noexec |= !strcmp(o, "noexec");
    free(list);
    if (!ro) {
        int fd = open(spec, O_RDWR | O_CLOEXEC);
        if (fd < 0 && (errno == EPERM || errno == EACCES || errno == EROFS)) {
            fprintf(stderr, "mount: %s: WARNING: source write-protected, mounted read-only.\n", dir);
            ro = true;
        }
        if (fd >= 0)
            close(fd);
    }
    char o[128];
    snprintf(o, sizeof o, "allow_other,default_permissions%s%s", ro ? ",ro" : "", noexec ? ",noexec" : "");
    struct stat st;
    if (stat(spec, &st) < 0 || !(S_ISBLK(st.st_mode) || S_ISREG(st.st_mode))) {
        fprintf(stderr, "mount: %s: special device %s does not exist.\n", dir, spec);
        return 32;
    }
    char *const av[] = { "fuse2fs", (char *)spec, (char *)dir, "-o", o, NULL };
    if (ro && setenv("BULKHEAD_FUSE_MOUNT_RO", "1", 1) < 0)
        return 32;
    /* fuse2fs goes to the background once the mount is made; its first process's
     * status says whether it was. mount(8) expects 32 for a failed mount. */
    pid_t pid = fork();
    if (pid < 0)
        return 32;
    if (pid == 0) {
        execvp("fuse2fs", av);
        fprintf(stderr, "mount: %s: fuse2fs is not installed in this qube's template (%s)\n", dir, strerror(errno));
        _exit(127);
    }
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 32;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 32;
}

int main(int argc, char **argv)
{
    const char *base = strrchr(argv[0], '/');
    prog = base ? base + 1 : argv[0];
    if (!strncmp(prog, "mount.ext", 9))
        return mount_helper_main(argc, argv);
    if (!strncmp(prog, "umount.fuse", 11)) {
        for (int i = 1; i < argc; i++)
            if (argv[i][0] != '-')
                return broker_umount(argv[i], false);
            else if (!strcmp(argv[i], "-t"))
                i++;
        fprintf(stderr, "usage: %s DIR\n", prog);
        return 1;
    }
    return fusermount_main(argc, argv);
}
