/* qfile-opener: the qubes.OpenInVM service (Qubes' vm-file-editor). Reads a 256-byte
 * zero-padded file name and the file's bytes, saves them in a private temporary dir,
 * opens the file ($BULKHEAD_OPEN_COMMAND, else xdg-open/mimeopen/$EDITOR if set), waits, and
 * if the file was changed, sends the new contents back on stdout. The name comes from
 * the caller: it must be a plain file name (no '/', not "." or "..", no control bytes). */
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define NAME_SIZE 256

static int name_ok(const char *n)
{
    if (!*n || !strcmp(n, ".") || !strcmp(n, ".."))
        return 0;
    for (const unsigned char *p = (const unsigned char *)n; *p; p++)
        if (*p == '/' || *p < 0x20 || *p == 0x7f)
            return 0;
    return 1;
}

static int copy_fd(int in, int out)
{
    char buf[1 << 16];
    for (;;) {
        ssize_t n = read(in, buf, sizeof buf);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (bh_write_all(out, buf, (size_t)n) < 0)
            return -1;
    }
}

int main(void)
{
    char name[NAME_SIZE];
    if (bh_read_all(0, name, NAME_SIZE) != NAME_SIZE || !memchr(name, 0, NAME_SIZE) || !name_ok(name)) {
        fprintf(stderr, "qfile-opener: invalid file name\n");
        return 1;
    }
    const char *tmp = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/qopen-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir)) {
        perror("qfile-opener: mkdtemp");
        return 1;
    }
    char path[4096 + NAME_SIZE + 2];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int rc = 1;
    {
        _cleanup_close_ int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd < 0 || copy_fd(0, fd) < 0) {
            perror("qfile-opener: saving the file");
            goto out;
        }
    }
    struct stat before, after;
    stat(path, &before);
    pid_t pid = fork();
    if (pid == 0) {
        int dn = open("/dev/null", O_RDWR);
        dup2(dn, 0);
        dup2(dn, 1); /* the opener's output must not go into the answer */
        const char *cmd = getenv("BULKHEAD_OPEN_COMMAND");
        if (cmd && *cmd) {
            execl("/bin/sh", "sh", "-c", cmd, "sh", path, (char *)NULL);
        } else {
            execlp("xdg-open", "xdg-open", path, (char *)NULL);
            execlp("mimeopen", "mimeopen", "-n", path, (char *)NULL);
            /* Only an editor the qube's owner chose: a service has no terminal (stdin is
             * /dev/null), so a default vi would wait forever and keep the (disposable)
             * qube and the caller hanging. */
            const char *ed = getenv("EDITOR");
            if (ed && *ed)
                execlp(ed, ed, path, (char *)NULL);
        }
        _exit(127);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) != pid) {
        perror("qfile-opener: opener");
        goto out;
    }
    if (WIFEXITED(st) && WEXITSTATUS(st) == 127) {
        fprintf(stderr, "qfile-opener: no program to open %s (xdg-open, mimeopen, $EDITOR or "
                        "$BULKHEAD_OPEN_COMMAND)\n", name);
        goto out;
    }
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        /* The caller's qvm-open-in-(d)vm reports it (our exit code is the call's). */
        fprintf(stderr, "qfile-opener: opening %s failed\n", name);
        goto out;
    }
    if (lstat(path, &after) == 0 && S_ISREG(after.st_mode) &&
        (after.st_mtim.tv_sec != before.st_mtim.tv_sec || after.st_mtim.tv_nsec != before.st_mtim.tv_nsec ||
         after.st_size != before.st_size)) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
        if (fd < 0 || copy_fd(fd, 1) < 0) {
            perror("qfile-opener: sending the file back");
            goto out;
        }
    }
    rc = 0;
out:
    unlink(path);
    rmdir(dir);
    return rc;
}
