/* struct bh_driver for the `vm` engine: a QEMU microvm per qube (launch.c), controlled
 * over QMP (qmp.c), watched through a pidfd on QEMU. */
#include "vm.h"
#include "cleanup.h"
#include "io.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

static void warn_tcg_once(void)
{
    static bool said;
    if (!said && !bh_vm_have_kvm())
        fprintf(stderr, "bulkhead: no usable /dev/kvm: VM qubes run under TCG software emulation "
                        "(the isolation holds; the speed does not)\n");
    said = true;
}

static int vm_start(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    warn_tcg_once();
    bh_vm_cleanup(spec, &p); /* leftovers of an earlier life */
    int r = bh_vm_launch(spec, &p, err);
    if (r == 0)
        r = bh_vm_wait_ready(spec, &p, BH_VM_START_TIMEOUT_MS, err);
    if (r < 0) {
        bh_vm_cleanup(spec, &p); /* a failed start leaves nothing behind */
        return -1;
    }
    return 0;
}

static int vm_shutdown(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (bh_write_runtime_file(p.shutdown_mark, "1\n", 2, 0644) < 0)
        return bh_fail_errno(err, "writing %s", p.shutdown_mark);
    /* the guest's init gets SIGTERM through the bridge (mux SHUTDOWN) */
    pid_t b = bh_vm_pidfile_check(p.bridge_pid, spec->uid_base);
    if (b > 0 && kill(b, SIGUSR1) == 0)
        return 0;
    /* no bridge: ACPI power button (a guest without a handler ignores it; the
     * shutdown_timeout then kills) */
    return bh_qmp_command(p.qmp, "{\"execute\":\"system_powerdown\"}\n", NULL, 2000, err);
}

static int vm_kill(const struct bh_qube_spec *spec, bh_error *err)
{
    (void)err;
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    bh_vm_cleanup(spec, &p);
    return 0;
}

static int qmp_simple(const struct bh_qube_spec *spec, const char *cmd, bh_error *err)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) < 0)
        return bh_fail(err, ESRCH, "%s is not running", spec->name);
    return bh_qmp_command(p.qmp, cmd, NULL, 5000, err);
}

static int vm_pause(const struct bh_qube_spec *spec, bh_error *err)
{
    return qmp_simple(spec, "{\"execute\":\"stop\"}\n", err);
}

static int vm_unpause(const struct bh_qube_spec *spec, bh_error *err)
{
    return qmp_simple(spec, "{\"execute\":\"cont\"}\n", err);
}

static void stats(pid_t pid, struct bh_qube_stats *st)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    _cleanup_free_ char *s = bh_read_file(path, 16384, NULL);
    const char *m = s ? strstr(s, "\nVmRSS:") : NULL;
    if (m)
        st->mem_bytes = strtoull(m + 7, NULL, 10) * 1024;
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    _cleanup_free_ char *t = bh_read_file(path, 4096, NULL);
    const char *rp = t ? strrchr(t, ')') : NULL;
    unsigned long long ut = 0, stt = 0;
    if (rp && sscanf(rp + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &stt) == 2)
        st->cputime_ns = (ut + stt) * (1000000000ull / (unsigned long long)sysconf(_SC_CLK_TCK));
}

static enum bh_power_state vm_state(const struct bh_qube_spec *spec, struct bh_qube_stats *st)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (st)
        memset(st, 0, sizeof *st);
    pid_t pid = bh_vm_pidfile_check(p.qemu_pid, spec->uid_base);
    bool marked = access(p.shutdown_mark, F_OK) == 0;
    if (pid < 0)
        return access(p.qemu_pid, F_OK) == 0 && !marked ? BH_STATE_CRASHED : BH_STATE_HALTED;
    if (st)
        stats(pid, st);
    if (marked)
        return BH_STATE_HALTING;
    char status[64];
    if (bh_qmp_status(p.qmp, status, sizeof status, NULL) == 0 && !strcmp(status, "paused"))
        return BH_STATE_PAUSED;
    return BH_STATE_RUNNING;
}

static int vm_adopt(const struct bh_qube_spec *spec, bh_error *err)
{
    (void)err;
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    if (bh_vm_pidfile_check(p.qemu_pid, spec->uid_base) < 0) {
        bh_vm_cleanup(spec, &p);
        return 0;
    }
    /* QEMU runs; a bridge that died meanwhile is started again by nobody yet: the
     * qube is adopted, and qrexec works again once a bridge reconnects */
    return 1;
}

static int vm_watch_fd(const struct bh_qube_spec *spec)
{
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    pid_t pid = bh_vm_pidfile_check(p.qemu_pid, spec->uid_base);
    return pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
}

static int vm_reap(const struct bh_qube_spec *spec, bool *crashed, bh_error *err)
{
    (void)err;
    struct bh_vm_paths p;
    bh_vm_paths_fill(spec, &p);
    *crashed = false;
    _cleanup_free_ char *t = bh_read_file(p.qemu_pid, 64, NULL);
    if (!t)
        return 0; /* killed and cleaned already */
    bool asked = access(p.shutdown_mark, F_OK) == 0;
    int pid = atoi(t), ws = 0;
    pid_t r = pid > 1 ? waitpid(pid, &ws, WNOHANG) : -1;
    if (r == pid)
        *crashed = !asked && !(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    else
        *crashed = !asked; /* adopted: not our child, its status is not ours to read */
    bh_vm_cleanup(spec, &p);
    return 0;
}

const struct bh_driver bh_driver_vm = {
    .name = "vm",
    .start = vm_start,
    .shutdown = vm_shutdown,
    .kill = vm_kill,
    .pause = vm_pause,
    .unpause = vm_unpause,
    .state = vm_state,
    .adopt = vm_adopt,
    .watch_fd = vm_watch_fd,
    .reap = vm_reap,
};
