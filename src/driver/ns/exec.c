/* Runs a command inside a running qube (what `bulkhead-ns exec` does until qrexec
 * exists): joins the qube's cgroup and namespaces, then takes on exactly the qube's
 * own confinement before exec. The joining process stays undumpable until exec, and
 * its memory belongs to the host's user namespace until then, so the qube's root
 * cannot ptrace or read it while it still holds host resources. */
#include "ns.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Looks up a user in the qube's /etc/passwd. This runs after confinement, as the
 * qube's root: the file is the qube's, so it is parsed with the qube's privileges. */
static int lookup_user(const char *user, uid_t *uid, gid_t *gid, char *home, size_t homelen)
{
    if (!strcmp(user, "root")) {
        *uid = 0, *gid = 0;
        snprintf(home, homelen, "/root");
        return 0;
    }
    /* The qube's file: refuse a FIFO or device that would block or never end. */
    _cleanup_close_ int fd = open("/etc/passwd", O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > (1 << 20))
        return -1;
    _cleanup_free_ char *text = malloc((size_t)st.st_size + 1);
    ssize_t len = text ? bh_read_all(fd, text, (size_t)st.st_size) : -1;
    if (len < 0)
        return -1;
    return bh_passwd_find(text, (size_t)len, user, uid, gid, home, homelen);
}

static __attribute__((noreturn)) void exec_child(const struct bh_qube_spec *spec, int pidfd,
                                                 char *const argv[], const char *user)
{
    bh_error e = { 0 };
    char tag[64];
    bh_cgroup_tag(spec, tag, sizeof tag);
    prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    struct bh_confine_opts co; /* read on the host's side, before setns */
    bh_confine_opts_of(spec, &co);
    if (bh_cgroup_ops()->attach_self(tag, spec->name, &e) < 0)
        goto fail;
    int flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS |
                CLONE_NEWCGROUP | CLONE_NEWTIME;
    if (setns(pidfd, flags) < 0) {
        bh_fail_errno(&e, "setns into %s", spec->name);
        goto fail;
    }
    close(pidfd);
    if (setresgid(0, 0, 0) < 0 || setgroups(0, NULL) < 0 || setresuid(0, 0, 0) < 0) {
        bh_fail_errno(&e, "becoming the qube's root");
        goto fail;
    }
    if (chdir("/") < 0) {
        bh_fail_errno(&e, "chdir /");
        goto fail;
    }
    pid_t pid = fork(); /* enter the PID namespace */
    if (pid < 0) {
        bh_fail_errno(&e, "fork");
        goto fail;
    }
    if (pid == 0) {
        uid_t uid = 0;
        gid_t gid = 0;
        char home[512];
        /* A new session: the caller's controlling terminal (through /dev/tty) is not
         * the qube's to open. */
        (void)setsid();
        if (bh_confine(&co, &e) < 0)
            goto fail;
        if (lookup_user(user ? user : "root", &uid, &gid, home, sizeof home) < 0) {
            bh_fail(&e, ENOENT, "no user %s in the qube", user);
            goto fail;
        }
        if (uid != 0 && (setgroups(1, &gid) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)) {
            bh_fail_errno(&e, "switching to %s", user);
            goto fail;
        }
        if (chdir(home) < 0)
            (void)chdir("/");
        const char *term = getenv("TERM");
        char henv[600], tenv[128], uenv[128];
        snprintf(henv, sizeof henv, "HOME=%s", home);
        snprintf(tenv, sizeof tenv, "TERM=%s", term ? term : "dumb");
        snprintf(uenv, sizeof uenv, "USER=%s", user ? user : "root");
        char *envp[] = { "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", henv, tenv, uenv, NULL };
        execvpe(argv[0], argv, envp);
        fprintf(stderr, "bulkhead-ns exec: %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            _exit(125);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
fail:
    fprintf(stderr, "bulkhead-ns exec: %s\n", e.msg);
    _exit(125);
}

int bh_ns_exec(const struct bh_qube_spec *spec, char *const argv[], const char *user, bh_error *err)
{
    struct bh_init_id id;
    _cleanup_close_ int pidfd = bh_init_open_verified(spec, &id);
    if (pidfd < 0)
        return bh_fail(err, ESRCH, "qube %s is not running", spec->name);
    pid_t pid = fork();
    if (pid < 0)
        return bh_fail_errno(err, "fork");
    if (pid == 0)
        exec_child(spec, pidfd, argv, user);
    int st;
    while (waitpid(pid, &st, 0) < 0)
        if (errno != EINTR)
            return bh_fail_errno(err, "waitpid");
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}
