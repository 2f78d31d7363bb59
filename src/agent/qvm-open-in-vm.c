/* qvm-open-in-vm QUBE FILE   /  qvm-open-in-dvm FILE  (target @dispvm)
 * Sends FILE to be opened in another qube (qubes.OpenInVM); when it comes back changed,
 * it replaces FILE (atomically, in FILE's directory). Also the local program role
 * ("qvm-open-in-vm --local FILE", run by qrexec-client-vm): 256-byte zero-padded name,
 * the bytes, EOF; then whatever comes back is the new contents. */
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *helper(const char *name, const char *fallback)
{
    static char buf[PATH_MAX];
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        snprintf(buf, sizeof buf, "%s/%s", dirname(self), name);
        if (access(buf, X_OK) == 0)
            return buf;
    }
    return fallback;
}

static int local_side(const char *file)
{
    char copy[PATH_MAX], dcopy[PATH_MAX];
    snprintf(copy, sizeof copy, "%s", file);
    snprintf(dcopy, sizeof dcopy, "%s", file);
    const char *base = basename(copy), *dir = dirname(dcopy);
    char name[256];
    if (strlen(base) >= sizeof name) {
        fprintf(stderr, "qvm-open-in-vm: file name too long\n");
        return 1;
    }
    memset(name, 0, sizeof name);
    memcpy(name, base, strlen(base));
    _cleanup_close_ int in = open(file, O_RDONLY | O_CLOEXEC);
    if (in < 0) {
        fprintf(stderr, "qvm-open-in-vm: %s: %s\n", file, strerror(errno));
        return 1;
    }
    if (bh_write_all(1, name, sizeof name) < 0)
        return 1;
    char buf[1 << 16];
    ssize_t n;
    while ((n = read(in, buf, sizeof buf)) > 0)
        if (bh_write_all(1, buf, (size_t)n) < 0)
            return 1;
    int dn = open("/dev/null", O_WRONLY | O_CLOEXEC);
    dup2(dn, 1); /* EOF: the file is complete */
    close(dn);
    char tmp[PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s/.%s.qopen-XXXXXX", dir, base);
    _cleanup_close_ int out = mkostemp(tmp, O_CLOEXEC);
    if (out < 0)
        return 1;
    size_t got = 0;
    while ((n = read(0, buf, sizeof buf)) > 0) {
        if (bh_write_all(out, buf, (size_t)n) < 0) {
            unlink(tmp);
            return 1;
        }
        got += (size_t)n;
    }
    struct stat st;
    if (got == 0 || fstat(in, &st) < 0) {
        unlink(tmp);
        return 0; /* not changed */
    }
    fchmod(out, st.st_mode & 0777);
    if (fsync(out) < 0 || rename(tmp, file) < 0) {
        unlink(tmp);
        fprintf(stderr, "qvm-open-in-vm: saving the changes: %s\n", strerror(errno));
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    const char *prog = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
    if (argc == 3 && !strcmp(argv[1], "--local"))
        return local_side(argv[2]);
    int dvm = strstr(prog, "dvm") != NULL;
    if (argc != (dvm ? 2 : 3)) {
        fprintf(stderr, dvm ? "usage: %s FILE\n" : "usage: %s QUBE FILE\n", prog);
        return 2;
    }
    const char *target = dvm ? "@dispvm" : argv[1];
    const char *file = argv[argc - 1];
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0)
        return 125;
    self[n] = '\0';
    execlp(helper("qrexec-client-vm", "qrexec-client-vm"), "qrexec-client-vm", target, "qubes.OpenInVM", self,
           "--local", file, (char *)NULL);
    perror("qrexec-client-vm");
    return 125;
}
