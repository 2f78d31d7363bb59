/* Telling a running VM qube's guest its new link (driver op net_changed).
 *
 * An `ns` qube's addresses and routes are set by the host in a namespace the host
 * owns; a VM's guest kernel sets its own. When the qube's netvm is set, changed or
 * removed while it runs, src/admin re-plugs its link at once (the guest's frames go
 * to the new netvm) and asks the engine to tell the guest, as a Qubes VM learns it
 * from its re-attached vif and qubesdb: we run, as root in the guest over qrexec,
 * `bulkhead-vminit --net bh.ip=... bh.gw=...` (guest_init.c: net_update), which
 * takes eth0 down and sets it up again from the new values (no values: it stays down).
 *
 * The call runs beside bulkheadd (a detached process): the host's event loop never
 * waits for a guest. The wanted state is written to <rt>/net.conf first; each call
 * process takes <rt>/net.lock and applies what net.conf says *then*, so after several
 * quick changes the guest ends with the last one whatever order the calls ran in.
 * A guest that does not answer is given up after a bounded time (alarm). */
#include "vm.h"
#include "cleanup.h"
#include "io.h"
#include "selfpath.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define CALL_TRIES 30        /* one a second: a qube still booting has no qrexec yet */
#define CALL_ALARM_S 120     /* the whole process, whatever the guest does */

static _Noreturn void call_loop(const char *name, const char *rt, const char *client)
{
    /* nothing of bulkheadd's (client connections, its sockets) stays open here */
    close_range(0, ~0u, 0);
    setsid();
    signal(SIGALRM, SIG_DFL);
    signal(SIGCHLD, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    alarm(CALL_ALARM_S);
    char path[PATH_MAX + 64], tmp[PATH_MAX], app_rt[PATH_MAX], log[PATH_MAX + 64];
    snprintf(path, sizeof path, "%.4000s/net.lock", rt);
    int lk = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lk < 0 || flock(lk, LOCK_EX) < 0)
        _exit(1);
    snprintf(tmp, sizeof tmp, "%s", rt); /* rt is <runtime>/qubes/NAME */
    snprintf(app_rt, sizeof app_rt, "%s", dirname(dirname(tmp)));
    snprintf(log, sizeof log, "%.4000s/net-update.log", rt);
    for (int i = 0; i < CALL_TRIES; i++) {
        snprintf(path, sizeof path, "%.4000s/net.conf", rt);
        _cleanup_free_ char *conf = bh_read_file(path, 1024, NULL);
        if (!conf)
            _exit(1); /* the qube stopped (cleanup removed it) */
        conf[strcspn(conf, "\n")] = '\0';
        char cmd[1200];
        snprintf(cmd, sizeof cmd, "root:exec /usr/lib/bulkhead/bulkhead-vminit --net%s", conf);
        pid_t pid = fork();
        if (pid == 0) {
            int nul = open("/dev/null", O_RDWR);
            int lfd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
            dup2(nul, 0);
            dup2(lfd >= 0 ? lfd : nul, 1);
            dup2(lfd >= 0 ? lfd : nul, 2);
            setenv("BULKHEAD_RUNTIME", app_rt, 1);
            execl(client, "qrexec-client", "-d", name, cmd, (char *)NULL);
            _exit(127);
        }
        int ws = 0;
        while (pid > 0 && waitpid(pid, &ws, 0) < 0 && errno == EINTR)
            ;
        if (pid > 0 && WIFEXITED(ws) && WEXITSTATUS(ws) == 0)
            _exit(0);
        nanosleep(&(struct timespec){ 1, 0 }, NULL);
    }
    _exit(1);
}

int bh_vm_net_changed(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) < 0)
        return 0; /* not running: the next start reads the new link anyway */
    char client[PATH_MAX];
    static const char *const rels[] = { ".", "../qrexec", "../lib/bulkhead", NULL };
    if (bh_find_near_self(rels, "qrexec-client", X_OK, client, sizeof client) < 0)
        return bh_fail(err, ENOENT, "qrexec-client not found next to bulkheadd");
    char conf[512], path[PATH_MAX + 64];
    bh_vm_net_params(spec, conf, sizeof conf - 1);
    strcat(conf, "\n");
    snprintf(path, sizeof path, "%.4000s/net.conf", p.rt);
    if (bh_write_runtime_file(path, conf, strlen(conf), 0600) < 0)
        return bh_fail_errno(err, "writing %s", path);
    pid_t mid = fork();
    if (mid < 0)
        return bh_fail_errno(err, "fork");
    if (mid == 0) {
        if (fork() == 0)
            call_loop(spec->name, p.rt, client);
        _exit(0);
    }
    while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
        ;
    return 0;
}
