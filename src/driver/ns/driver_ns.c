/* struct bh_driver for the `ns` engine: thin glue over the subsystems. */
#include "ns.h"
#include "cleanup.h"
#include "log.h"
#include "io.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/pidfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void tag_of(const struct bh_qube_spec *spec, char *tag, size_t n) { bh_cgroup_tag(spec, tag, n); }

static void clean_vchan(const char *dir)
{
    _cleanup_closedir_ DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d)))
        if (de->d_name[0] != '.')
            (void)unlinkat(dirfd(d), de->d_name, 0);
}

/* SIGKILL to the qube's init (verified by PID and start time), which takes every process
 * of its PID namespace with it; returns init's pidfd, or -1 when there is no init. */
static int signal_init(const struct bh_qube_spec *spec, const char *tag, struct bh_init_id *id)
{
    int pidfd = bh_init_open_verified(spec, id);
    if (pidfd >= 0) {
        (void)bh_cgroup_ops()->freeze(tag, spec->name, false, NULL); /* a frozen task cannot die */
        bh_ns_abort_fuse(id->pid); /* nor can one waiting on the qube's own FUSE server */
        pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
    }
    return pidfd;
}

static int ns_kill_now(const struct bh_qube_spec *spec)
{
    /* A start in progress is cancelled here, where its state is: its init, our child,
     * was watched by no watch_fd() yet, so its pidfd goes to the caller to reap. */
    int starting = bh_ns_spawn_cancel(spec);
    char tag[64];
    tag_of(spec, tag, sizeof tag);
    struct bh_init_id id;
    int pidfd = signal_init(spec, tag, &id); /* signalled; the pidfd is not kept */
    if (pidfd >= 0)
        close(pidfd);
    return starting; /* else init, our child, is what watch_fd() watched: the caller reaps it by that */
}

int bh_ns_cleanup(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_ns_paths p;
    char tag[64];
    if (bh_ns_paths_fill(spec, &p, err) < 0)
        return -1;
    tag_of(spec, tag, sizeof tag);
    const struct bh_cgroup_ops *cg = bh_cgroup_ops();
    struct bh_init_id id;
    _cleanup_close_ int pidfd = signal_init(spec, tag, &id);
    if (pidfd < 0)
        pidfd = bh_init_open_dying(spec, &id); /* signalled already (kill_now): wait all the same */
    if (pidfd >= 0) {
        (void)bh_pidfd_wait(pidfd, 10000);
        (void)waitpid(id.pid, NULL, WNOHANG); /* ours if we started it */
    }
    /* Anything left in the cgroup (a start cut short, a lost init) goes too. */
    cg->kill_all(tag, spec->name);
    int ret = cg->destroy(tag, spec->name, err);
    (void)unlink(p.pidfile);
    (void)unlink(p.shutdown_mark);
    (void)rmdir(p.staging);
    clean_vchan(p.vchan);
    /* the vchan tmpfs (stacked mounts too, from an interrupted earlier start) */
    while (umount2(p.vchan, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
        ;
    (void)rmdir(p.vchan);
    char mark[4200];
    bh_path_join(mark, sizeof mark, spec->runtime_dir, "raw-net");
    (void)unlink(mark);
    /* bulkhead-procfs ends by itself with the qube's mount (procfs.c) */
    bh_path_join(mark, sizeof mark, spec->runtime_dir, "procfs.pid");
    (void)unlink(mark);
    (void)rmdir(spec->runtime_dir); /* empty unless qrexec-daemon still has its files */
    return ret;
}

/* Leftovers of an earlier life are cleaned up first; 0 = go on. */
static int before_start(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_init_id id;
    int fd = bh_init_open_verified(spec, &id);
    if (fd >= 0) {
        close(fd);
        return bh_fail(err, EEXIST, "qube %s is already running", spec->name);
    }
    /* Leftovers of an earlier life (every start makes the vchan dir first). */
    struct bh_ns_paths p;
    if (bh_ns_paths_fill(spec, &p, err) < 0)
        return -1;
    char tag[64];
    tag_of(spec, tag, sizeof tag);
    if (access(p.vchan, F_OK) == 0 || access(p.pidfile, F_OK) == 0 || access(p.staging, F_OK) == 0 ||
        bh_cgroup_ops()->frozen(tag, spec->name) >= 0 /* its cgroup exists */) {
        bh_error ignored;
        (void)bh_ns_cleanup(spec, &ignored);
    }
    return 0;
}

static int ns_start(const struct bh_qube_spec *spec, bh_error *err)
{
    return before_start(spec, err) < 0 ? -1 : bh_ns_spawn(spec, err);
}

static int ns_start_begin(const struct bh_qube_spec *spec, bh_error *err)
{
    return before_start(spec, err) < 0 ? -1 : bh_ns_spawn_begin(spec, err);
}

static int ns_start_finish(const struct bh_qube_spec *spec, bh_error *err)
{
    return bh_ns_spawn_finish(spec, err);
}

static int ns_shutdown(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_ns_paths p;
    struct bh_init_id id;
    char tag[64];
    _cleanup_close_ int pidfd = bh_init_open_verified(spec, &id);
    if (pidfd < 0 || bh_ns_paths_fill(spec, &p, err) < 0)
        return bh_fail(err, ESRCH, "qube %s is not running", spec->name);
    tag_of(spec, tag, sizeof tag);
    (void)bh_write_runtime_file(p.shutdown_mark, "1\n", 2, 0600);
    (void)bh_cgroup_ops()->freeze(tag, spec->name, false, NULL);
    if (pidfd_send_signal(pidfd, SIGTERM, NULL, 0) < 0)
        return bh_fail_errno(err, "signalling init of %s", spec->name);
    return 0;
}

static int ns_kill(const struct bh_qube_spec *spec, bh_error *err)
{
    /* A start in progress is cancelled (only where its state is: in the daemon, when the
     * kill runs in line); its init, our child that nothing watched, is reaped once the
     * cleanup has ended it, or by the daemon's tick. */
    int starting = bh_ns_spawn_cancel(spec);
    int r = bh_ns_cleanup(spec, err);
    bh_ns_reap_cancelled(starting);
    return r;
}

static int set_frozen(const struct bh_qube_spec *spec, bool frozen, bh_error *err)
{
    struct bh_init_id id;
    char tag[64];
    _cleanup_close_ int pidfd = bh_init_open_verified(spec, &id);
    if (pidfd < 0)
        return bh_fail(err, ESRCH, "qube %s is not running", spec->name);
    tag_of(spec, tag, sizeof tag);
    return bh_cgroup_ops()->freeze(tag, spec->name, frozen, err);
}

static int ns_pause(const struct bh_qube_spec *spec, bh_error *err) { return set_frozen(spec, true, err); }
static int ns_unpause(const struct bh_qube_spec *spec, bh_error *err) { return set_frozen(spec, false, err); }

static enum bh_power_state ns_state(const struct bh_qube_spec *spec, struct bh_qube_stats *stats)
{
    struct bh_ns_paths p;
    struct bh_init_id id;
    char tag[64];
    if (stats)
        memset(stats, 0, sizeof *stats);
    if (bh_ns_paths_fill(spec, &p, NULL) < 0)
        return BH_STATE_NA;
    tag_of(spec, tag, sizeof tag);
    _cleanup_close_ int pidfd = bh_init_open_verified(spec, &id);
    bool asked = access(p.shutdown_mark, F_OK) == 0;
    if (pidfd < 0) {
        /* No live init. A record left behind means it ended without reap(). */
        if (access(p.pidfile, F_OK) != 0)
            return BH_STATE_HALTED;
        return asked ? BH_STATE_HALTED : BH_STATE_CRASHED;
    }
    if (stats)
        (void)bh_cgroup_ops()->stats(tag, spec->name, stats);
    if (bh_cgroup_ops()->frozen(tag, spec->name) == 1)
        return BH_STATE_PAUSED;
    return asked ? BH_STATE_HALTING : BH_STATE_RUNNING;
}

static int ns_adopt(const struct bh_qube_spec *spec, bh_error *err)
{
    struct bh_init_id id;
    int fd = bh_init_open_verified(spec, &id);
    if (fd >= 0) {
        close(fd);
        /* Block attachments live in the daemon that made them: the new one knows none
         * and would offer the device to another qube, so the qube loses them here. */
        char tag[64];
        tag_of(spec, tag, sizeof tag);
        int n = bh_cgroup_ops()->revoke_blocks(tag, spec->name);
        if (n > 0) {
            bh_ns_block_forget_nodes(spec);
            bh_warn("%s: %d block device(s) attached before the restart taken back", spec->name, n);
        }
        return 1;
    }
    return bh_ns_cleanup(spec, err) < 0 ? -1 : 0;
}

static int ns_watch_fd(const struct bh_qube_spec *spec)
{
    struct bh_init_id id;
    return bh_init_open_verified(spec, &id);
}

/* Its cleanup runs as a Kill's, which removes the shutdown mark: whether a stop was
 * asked is read first (init's exit status tells the rest). */
static bool ns_ended(const struct bh_qube_spec *spec)
{
    struct bh_ns_paths p;
    bh_error err = { 0 };
    return bh_ns_paths_fill(spec, &p, &err) == 0 && access(p.shutdown_mark, F_OK) == 0;
}

static int ns_reap(const struct bh_qube_spec *spec, bool *crashed, bh_error *err)
{
    struct bh_ns_paths p;
    struct bh_init_id id;
    if (crashed)
        *crashed = false;
    if (bh_ns_paths_fill(spec, &p, err) < 0)
        return -1;
    if (bh_pidfile_read(p.pidfile, &id) < 0)
        return 0; /* already cleaned up (kill) */
    int fd = bh_init_open_verified(spec, &id);
    if (fd >= 0) {
        close(fd);
        return bh_fail(err, EBUSY, "qube %s is still running", spec->name);
    }
    bool asked = access(p.shutdown_mark, F_OK) == 0;
    siginfo_t si;
    memset(&si, 0, sizeof si);
    /* Our child: its exit status says how it ended. Adopted: only whether we asked. */
    if (waitid(P_PID, (id_t)id.pid, &si, WEXITED | WNOHANG) == 0 && si.si_pid == id.pid) {
        bool clean = si.si_code == CLD_EXITED && si.si_status == 0;
        if (crashed)
            *crashed = !clean && !asked;
    } else if (crashed) {
        *crashed = !asked;
    }
    return bh_ns_cleanup(spec, err);
}

static int ns_charge_host_helper(const struct bh_qube_spec *spec, pid_t pid, bh_error *err)
{
    char tag[64];
    tag_of(spec, tag, sizeof tag);
    return bh_cgroup_ops()->charge_cpu(tag, spec->name, pid, err);
}

/* The cgroup's limits are what create() writes; creating an existing cgroup again only
 * rewrites them (the kernel refuses a memory limit below what the qube uses: EBUSY). */
static int ns_set_limits(const struct bh_qube_spec *spec, bh_error *err)
{
    char tag[64];
    tag_of(spec, tag, sizeof tag);
    if (bh_cgroup_ops()->frozen(tag, spec->name) < 0)
        return bh_fail(err, ESRCH, "qube %s is not running", spec->name);
    return bh_cgroup_ops()->update_limits(tag, spec, err);
}

const struct bh_driver bh_driver_ns = {
    .set_limits = ns_set_limits,
    .block_attach = bh_ns_block_attach,
    .block_detach = bh_ns_block_detach,
    .name = "ns",
    .start = ns_start,
    .start_begin = ns_start_begin,
    .start_finish = ns_start_finish,
    .shutdown = ns_shutdown,
    .kill = ns_kill,
    .kill_now = ns_kill_now,
    .pause = ns_pause,
    .unpause = ns_unpause,
    .state = ns_state,
    .adopt = ns_adopt,
    .watch_fd = ns_watch_fd,
    .reap = ns_reap,
    .ended = ns_ended,
    .charge_host_helper = ns_charge_host_helper,
};
