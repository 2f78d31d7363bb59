/* The `ns` engine's internal interfaces. Each subsystem lives in its own small file:
 *
 *   idmap.c     the qube's user namespace (host UID range) and idmapped mounts
 *   loopdev.c   private.img -> loop device -> detached, idmapped ext4 mount
 *   rootfs.c    host-privileged stage: assembles the qube's tree in a private mount ns
 *   inside.c    in-namespace stage: proc/sys/devpts, /home, pivot_root
 *   confine.c   capability bounding set, no_new_privs, then landlock.c and seccomp.c
 *   cgroup.c    limits, freezer, stats (dispatch to cgroup_v1.c / cgroup_v2.c)
 *   pidfile.c   init.pid: record and verify the qube's init (adopt)
 *   spawn.c     the start sequence (fork, namespaces, handshake with init)
 *   exec.c      run a command inside a running qube (bulkhead-ns exec)
 *   driver_ns.c struct bh_driver glue
 *
 * Process shape of a start (all host PIDs):
 *   bulkheadd ──fork──> stage1 (host root, new mount ns: assembles the root)
 *                         │ setns(qube userns), unshare(mnt,pid,net,ipc,uts,cgroup,time)
 *                         └──clone(CLONE_PARENT)──> init (PID 1 in the qube; child of bulkheadd)
 * stage1 exits at once. Because the qube's mount ns is copied from stage1's (owned by
 * the host user ns) into one owned by the qube's user ns, the kernel locks every mount
 * in it: the qube cannot remount read-only binds writable nor unmount to reveal what
 * is underneath.
 */
#pragma once
#include "driver/driver.h"
#include "err.h"
#include "qrexec_ids.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#define BH_NS_DEFAULT_PIDS 2048
/* Per-qube kernel object limits (set in the qube's outer user namespace, see idmap.c;
 * environment variables of the same name as in idmap.c override them). */
#define BH_NS_MAX_USER_NS 64          /* nested user namespaces (browser sandboxes) */
#define BH_NS_MAX_NS 128              /* each other namespace type, beyond the qube's own */
#define BH_NS_MAX_INOTIFY_INSTANCES 512
#define BH_NS_MAX_INOTIFY_WATCHES 131072
#define BH_NS_MAX_FANOTIFY_GROUPS 16
#define BH_NS_START_TIMEOUT_MS 60000
#define BH_NS_INIT_PATH "/usr/lib/bulkhead/bulkhead-init"
#define BH_NS_LIBEXEC_IN_QUBE "/usr/lib/bulkhead"
#define BH_NS_VCHAN_IN_QUBE "/run/qubes/vchan"

/* ---- idmap.c ---- */
/* A new user namespace mapping 0..count-1 to host base..base+count-1 (UIDs and GIDs),
 * returned as an fd; the short-lived process that created it is gone on return. */
int bh_userns_create(uid_t base, uint32_t count, bh_error *err);
/* The same mapping in one user namespace owned by host root, not by base: for a helper
 * of a VM qube (virtiofsd) that must not be in the power of the qube's other host
 * processes (QEMU and the bridge run as host UID base: as owner of bh_userns_create's
 * outer namespace they would hold every capability in it). No limits are set in it. */
int bh_userns_create_rooted(uid_t base, uint32_t count, bh_error *err);
/* A detached copy of `path` (recursive if rec), idmapped through userns_fd (unless
 * userns_fd < 0) and with extra MOUNT_ATTR_* flags set. Returns the mount fd. */
int bh_idmapped_tree(const char *path, int userns_fd, uint64_t attr_set, bool rec, bh_error *err);
/* Applies the idmap and flags to an already detached mount fd. */
int bh_mount_setattr_fd(int mfd, int userns_fd, uint64_t attr_set, bh_error *err);
/* Attaches a detached mount fd at path. */
int bh_attach(int mfd, const char *path, bh_error *err);

/* ---- loopdev.c ---- */
/* Attaches img to a free loop device (autoclear) and returns a detached ext4 mount fd. */
int bh_ext4_image_mount(const char *img, bh_error *err);
/* The same, read-only all the way down (read-only backing fd and loop device, ro ext4):
 * for a base shared by several qubes, which none may write. */
int bh_ext4_image_mount_ro(const char *img, bh_error *err);

/* ---- rootfs.c (runs in stage1: host root, private mount ns) ---- */
struct bh_ns_paths {
    char staging[4096];  /* <runtime_dir>/mnt: the tmpfs that holds the tree */
    char root[4096];     /* <staging>/root: the qube's future "/" */
    char vchan[4096];    /* <runtime_dir>/vchan */
    char libexec[4096];  /* host dir with bulkhead-init & co., bound at /usr/lib/bulkhead (spawn only) */
    char pidfile[4096];  /* <runtime_dir>/init.pid */
    char shutdown_mark[4096]; /* <runtime_dir>/shutdown-requested */
    bool procfs;         /* stage 1 mounted the computed /proc files (procfs.c) */
};
int bh_ns_paths_fill(const struct bh_qube_spec *spec, struct bh_ns_paths *p, bh_error *err);
int bh_rootfs_assemble(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int userns_fd, bh_error *err);
/* private_fd: the detached, idmapped mount of private_img, made by the daemon (the loop
 * device must be opened outside the qube's devices cgroup) while stage 1 assembles. */
int bh_rootfs_attach_private(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, int private_fd,
                             bh_error *err);

/* ---- inside.c (runs as the qube's root inside its namespaces, before init) ---- */
int bh_inside_setup(const struct bh_qube_spec *spec, const struct bh_ns_paths *p, bh_error *err);

/* ---- confine.c, landlock.c, seccomp.c ---- */
/* Drops the bounding set entries a qube never needs, sets no_new_privs, applies
 * Landlock (if the kernel has it) and the seccomp filter. Last step before exec. */
struct bh_confine_opts {
    bool raw_net; /* AF_PACKET and raw IP sockets (netvms: provides_network) */
};
int bh_confine(const struct bh_confine_opts *o, bh_error *err);
int bh_landlock_apply(bh_error *err); /* 0 applied, 1 not supported, -1 error */
int bh_seccomp_apply(const struct bh_confine_opts *o, bh_error *err);
/* Compiles the filter of o's profile once per process (kept for every later apply,
 * in this process and the children it forks after): call before forking qubes. */
int bh_seccomp_prepare(const struct bh_confine_opts *o, bh_error *err);
/* What spawn recorded for `bulkhead-ns exec` (<runtime_dir>/raw-net, host-only): an
 * exec'd process must be confined exactly like the rest of the qube. */
void bh_confine_opts_of(const struct bh_qube_spec *spec, struct bh_confine_opts *o);
int bh_confine_opts_record(const struct bh_qube_spec *spec, bh_error *err);

/* ---- cgroup.c ---- */
struct bh_cgroup_ops {
    int (*create)(const char *tag, const struct bh_qube_spec *spec, bh_error *err);
    /* Moves the calling (single-threaded) process into the qube's cgroups. On v1 this
     * writes "0" to `tasks`: moving only oneself skips the kernel's global threadgroup
     * lock, whose RCU grace period would otherwise cost ~10-20 ms per start. */
    int (*attach_self)(const char *tag, const char *name, bh_error *err);
    int (*freeze)(const char *tag, const char *name, bool frozen, bh_error *err);
    int (*frozen)(const char *tag, const char *name); /* 1, 0, -1 */
    int (*kill_all)(const char *tag, const char *name);
    int (*destroy)(const char *tag, const char *name, bh_error *err);
    int (*stats)(const char *tag, const char *name, struct bh_qube_stats *st);
    /* Does /proc/<pid>/cgroup put pid in this qube's cgroup? */
    bool (*contains)(const char *tag, const char *name, pid_t pid);
    /* Puts a host process into the qube's CPU accounting only (not memory, pids or
     * freezer: pausing or killing the qube must not touch it). */
    int (*charge_cpu)(const char *tag, const char *name, pid_t pid, bh_error *err);
    /* create() for a running qube: its limits again, its device list untouched. */
    int (*update_limits)(const char *tag, const struct bh_qube_spec *spec, bh_error *err);
    /* Lets the qube open block device major:minor with access "r" or "rw" (NULL:
     * no longer at all). */
    int (*device_access)(const char *tag, const char *name, unsigned major, unsigned minor, const char *access,
                         bh_error *err);
    /* Takes back every block device the qube's cgroup allows (adoption: a restarted
     * bulkheadd knows of no attachment, so none may stay usable). Returns how many. */
    int (*revoke_blocks)(const char *tag, const char *name);
    /* The file with the qube's CPU use per CPU (v1 cpuacct.usage_all) or in total (v2
     * cpu.stat), for bulkhead-procfs; "" where there is none. */
    void (*cpu_usage_file)(const char *tag, const char *name, char *out, size_t n);
    /* Charges a host helper's memory to the qube (bulkhead-procfs: its buffers are the
     * qube's reads) without putting it under the qube's freezer: v1 joins the qube's
     * memory cgroup only; v2 (one cgroup for every controller) moves it into the qube
     * cgroup's "@procfs" leaf, charged with the qube (memory, pids, CPU), while the
     * qube's processes are in "@qube", which alone is frozen and killed. */
    int (*charge_memory)(const char *tag, const char *name, pid_t pid, bh_error *err);
};
extern const struct bh_cgroup_ops bh_cgroup_v1, bh_cgroup_v2;
/* A device rule as cgroup v1's devices.allow takes it: type 'c' or 'b', major and minor
 * (-1: any), access "r", "rw", "rwm"... */
struct bh_dev_rule {
    char type;
    int32_t major, minor;
    const char *access;
};
/* The devices of a qube's fixed /dev (null, zero, full, random, urandom, tty, ptmx, its
 * ptys): all any qube may open; a node planted by any other means opens nothing. */
extern const struct bh_dev_rule bh_cg_base_devices[];
extern const size_t bh_cg_base_devices_n;
const struct bh_cgroup_ops *bh_cgroup_ops(void);
/* Per-daemon cgroup parent name "bulkhead-<hash of runtime root>". */
void bh_cgroup_tag(const struct bh_qube_spec *spec, char *out, size_t n);
/* The cgroup dir holds cgroups not made by us (our v2 leaves start with '@'): its
 * rmdir's EBUSY then lasts. */
bool bh_cg_has_children(const char *dir);
/* Moves every process of cgroup dir `from` into cgroup dir `to` (best effort). */
void bh_cg_move_procs(const char *from, const char *to);
/* Writes a small string to dir/file. */
int bh_cg_write(const char *dir, const char *file, const char *val, bh_error *err);

/* ---- devbpf.c (cgroup v2's device filter) ---- */
#define BH_DEVBPF_MAX_INSNS 4096
struct bpf_insn;
/* The program allowing exactly what one of the rules allows, into out (cap entries;
 * out NULL: only counted): returns its length, 0 if it does not fit. */
size_t bh_devbpf_build(const struct bh_dev_rule *rules, size_t n, struct bpf_insn *out, size_t cap);
/* Loads that program and makes it the only device program attached to cgroup dir
 * cgdir (attached first, the previous ones detached after: never more allowed than
 * both lists allow). */
int bh_devbpf_install(const char *cgdir, const struct bh_dev_rule *rules, size_t n, bh_error *err);
/* Length in instructions of the longest device program attached to cgdir (0 none, -1
 * error): how a restarted daemon sees that its predecessor had allowed more. */
int bh_devbpf_attached_len(const char *cgdir);

/* ---- pidfile.c ---- */
struct bh_init_id {
    pid_t pid;
    uint64_t starttime;   /* field 22 of /proc/<pid>/stat */
    uint64_t userns_ino;  /* inode of /proc/<pid>/ns/user */
};
int bh_init_id_read_proc(pid_t pid, struct bh_init_id *id);
int bh_pidfile_write(const char *path, const struct bh_init_id *id, bh_error *err);
int bh_pidfile_read(const char *path, struct bh_init_id *id);
int bh_pidfile_parse(const char *text, struct bh_init_id *id);
/* Start time (and state letter) from the text of /proc/<pid>/stat. */
int bh_proc_stat_parse(const char *text, uint64_t *starttime, char *state);
/* Opens a pidfd to the recorded init after checking that PID is still that process
 * (start time, user ns) and is in the qube's cgroup; -1 if not. */
int bh_init_open_verified(const struct bh_qube_spec *spec, struct bh_init_id *id);
/* The recorded init for waiting on only, also while it dies (signalled by the engine's
 * kill_now: its namespaces and cgroup go before it ends, so bh_init_open_verified no
 * longer accepts it): the same PID and start time suffice to know it is that process.
 * A pidfd, or -1 when it is gone. Never signal through it. */
int bh_init_open_dying(const struct bh_qube_spec *spec, struct bh_init_id *id);

/* ---- spawn.c ---- */
/* The directory of our in-qube programs on the host (where bulkhead-init is). */
int bh_ns_libexec_dir(char *out, size_t n);
int bh_ns_spawn(const struct bh_qube_spec *spec, bh_error *err);
/* The same in two halves for an event loop (driver.h start_begin/start_finish): begin
 * returns an fd (the engine's) readable whenever finish should be called; finish returns
 * 1 not yet, 0 ready, -1 failed (cleaned up). */
int bh_ns_spawn_begin(const struct bh_qube_spec *spec, bh_error *err);
int bh_ns_spawn_finish(const struct bh_qube_spec *spec, bh_error *err);
/* Cancels a pending start (kill, kill_now): it is forgotten, stage 1 ended, its init
 * SIGKILLed, also one that stage 1 had made but not yet reported, and its pidfd returned
 * (init is the daemon's child: the caller reaps it once it has ended); -1 without one. */
int bh_ns_spawn_cancel(const struct bh_qube_spec *spec);
/* After the qube's cleanup: the init a cancel returned (-1: none) reaped once it has
 * ended, else held for the daemon's tick to reap (late_reap.h). */
void bh_ns_reap_cancelled(int fd);

/* ---- procfs.c (the qube's computed /proc/uptime, stat, softirqs, interrupts) ---- */
/* The host UID/GID of a qube's bulkhead-procfs: BH_PROCFS_ID_BASE + qid (qrexec_ids.h). */
uid_t bh_procfs_id(uint32_t qid);
extern const char *const bh_procfs_files[]; /* NULL-terminated names under /proc */
struct bh_procfs {
    int fuse;              /* /dev/fuse, for stage 1's mount; -1: no computed files */
    int go;                /* write end of the server's go pipe */
    uid_t id;
    long long boot_offset; /* the qube's boot clock minus the host's, seconds */
};
/* Daemon side, before stage 1 forks: starts the server (see procfs.c). On a host
 * without /dev/fuse, 0 with pf->fuse = -1 (and a warning). */
int bh_procfs_start(const struct bh_qube_spec *spec, const char *libexec, long long boot_offset,
                    struct bh_procfs *pf, bh_error *err);
void bh_procfs_close(struct bh_procfs *pf);
/* Stage 1, cwd = staging: mounts it on ./procfs and wakes the server; closes pf's fds. */
int bh_procfs_mount(struct bh_procfs *pf, bh_error *err);
/* PID 1, cwd = staging: binds ./procfs/<file> over /proc/<file> under rootfd. */
int bh_procfs_bind(int rootfd, bh_error *err);

/* ---- exec.c ---- */
/* Runs argv as the qube's root inside the running qube; returns its exit status as a
 * shell would (128+sig for a signal), or -1 with err. */
int bh_ns_exec(const struct bh_qube_spec *spec, char *const argv[], const char *user, bh_error *err);

/* ---- blockdev.c ---- */
/* Gives the running qube block device major:minor as /dev/<node> (owned by the qube's
 * root), openable read-only unless rw; detach takes both away again. */
void bh_ns_block_forget_nodes(const struct bh_qube_spec *spec);
int bh_ns_block_attach(const struct bh_qube_spec *spec, unsigned major, unsigned minor, const char *node, bool rw,
                       bh_error *err);
int bh_ns_block_detach(const struct bh_qube_spec *spec, unsigned major, unsigned minor, const char *node,
                       bh_error *err);

/* ---- driver_ns.c ---- */
extern const struct bh_driver bh_driver_ns;
/* Kills whatever is left of a qube and removes its cgroups, pidfile and staging. */
int bh_ns_cleanup(const struct bh_qube_spec *spec, bh_error *err);
/* Aborts every FUSE connection mounted in init_pid's mount namespace (fuse_abort.c): a
 * qube's own stuck FUSE server must not keep its processes from dying. */
void bh_ns_abort_fuse(pid_t init_pid);
/* In a forked child of the daemon (a qube's stage 1): closes the daemon's fusectl mount
 * that bh_ns_abort_fuse keeps, which the child has no use for. */
void bh_ns_fusectl_forget_inherited(void);

/* ---- util.c ---- */
/* out = a "/" b; on overflow out becomes "" (every later use then fails visibly). */
void bh_path_join(char *out, size_t n, const char *a, const char *b);
/* Paths inside a qube's tree are resolved by us as host root (stage 1) or as the
 * qube's root before pivot_root, where an absolute or ".." symlink planted by a qube
 * would lead into the host's tree. Every such path is opened with openat2
 * (RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS) from an fd of the tree, and mounts target the
 * resulting fd through /proc/self/fd/N. A qube root with a symlink where a mount point
 * belongs does not start. */
int bh_open_beneath(int dirfd, const char *rel, bool dir); /* O_PATH fd or -1 */
void bh_fd_path(int fd, char *out, size_t n);
/* mkdirat of rel's last component in its (safely resolved) parent; EEXIST is success. */
int bh_mkdir_beneath(int dirfd, const char *rel, unsigned mode, uid_t owner, bool set_owner, bool *created);
/* Finds user in passwd(5) text (qube-controlled: strict, bounded). 0 found, -1 not
 * found or malformed entry. */
int bh_passwd_find(const char *text, size_t len, const char *user, uid_t *uid, gid_t *gid, char *home, size_t homelen);
