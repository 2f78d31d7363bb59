/* The driver interface: one interface, two engines (`ns` namespaces, `vm` QEMU).
 *
 * bulkheadd describes a qube with a bh_qube_spec (filled from the model and the storage
 * pool) and asks its engine to start, stop, pause or inspect it. Nothing above this
 * header knows which engine runs a qube; engines know nothing of the Admin API or the
 * store. Calls are made from bulkheadd's single event loop, so they must not block for
 * long: start returns once the qube's init is running and its qrexec agent socket is
 * ready (or fails); shutdown only *requests* a clean stop — completion is seen through
 * the pidfd from watch_fd() or a later state() call.
 *
 * Runtime layout (engine-owned, under spec->runtime_dir = <runtime>/qubes/<name>/):
 *   init.pid      host PID of the qube's PID 1, written atomically after start
 *   vchan/        the qube's libvchan-socket directory (docs/qrexec.md), bind-mounted
 *                 into the qube at /run/qubes/vchan; the agent listens on
 *                 vchan.<qid>.0.512.sock there (server = qube, client = dom0 (0))
 * Persistent layout (storage-owned, see storage/storage.h).
 */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum bh_power_state {
    BH_STATE_HALTED,
    BH_STATE_TRANSIENT, /* starting */
    BH_STATE_RUNNING,
    BH_STATE_PAUSED,
    BH_STATE_HALTING,
    BH_STATE_DYING,
    BH_STATE_CRASHED,
    BH_STATE_NA,
};
/* Qubes' spelling on the wire: "Halted", "Running", ... */
const char *bh_power_state_name(enum bh_power_state s);

/* How a qube's root and volumes are put together; filled by storage for the engine. */
struct bh_volume_layout {
    const char *root_lower;  /* read-only lower root dir (template's root) or NULL */
    const char *root_rw;     /* persistent root dir of a template/standalone, or NULL;
                              * with root_lower == NULL this is the writable root */
    bool root_throwaway;     /* app qube/disposable: root changes are discarded */
    const char *private_img; /* ext4 image holding /rw (and /home), or NULL */
    const char *private_dir; /* mount point on the host for private_img (engine mounts) */
    bool private_throwaway;  /* private_img is a read-only base shared with other qubes
                              * (a disposable template's): the engine must never write
                              * it, and puts a throwaway layer of the qube's own on top */
    uint64_t volatile_bytes; /* size of the throwaway scratch (tmpfs), 0 = default */
    const char *host_usr;    /* for the `host` template: host dir bound read-only at /usr */
};

struct bh_net_config {
    bool enabled;            /* false: no link (netvm empty): an ns qube has loopback
                              * only; a vm qube's card has no address and no link */
    const char *ip, *gateway, *netmask, *dns1, *dns2;
    const char *mac;         /* the qube's `mac` (an engine with its own network card uses it) */
    const char *ip6, *gateway6; /* routed IPv6 on the link (Qubes' `ipv6` feature), or NULL;
                              * like ip/gateway, for an engine whose guest sets its own card */
    const char *netns_path;  /* netns to join, prepared by src/net; NULL = fresh empty netns.
                              * Its `eth0` is the qube's end of the link to its netvm. An
                              * engine that does not join it (vm) puts a network card there
                              * instead: bh_net_guest_nic_open (src/net/net.h) */
};

struct bh_qube_spec {
    const char *name;
    uint32_t qid;
    const char *klass;        /* AppVM, TemplateVM, StandaloneVM, DispVM */
    const char *runtime_dir;  /* <runtime>/qubes/<name> */
    const char *state_dir;    /* <root>/qubes/<name> */
    uint64_t memory_mib;      /* initial memory; cgroup soft target */
    uint64_t maxmem_mib;      /* hard memory limit (0 = memory_mib) */
    uint32_t vcpus;           /* CPU quota in whole CPUs */
    uint32_t max_pids;        /* PIDs limit; 0 = engine default */
    uid_t uid_base;           /* first host UID of the qube's disjoint range */
    uint32_t uid_count;       /* size of the range (65536) */
    const char *default_user; /* "user" */
    struct bh_volume_layout vol;
    struct bh_net_config net;
    bool provides_network;    /* a netvm: may open AF_PACKET and raw IP sockets */
    uint64_t all_qubes_mib;   /* hard memory limit of all qubes of this daemon together, 0 = none */
    bool debug;
    const char *kernel;      /* vm: name of the guest kernel (the `kernel` property) */
    const char *kernelopts;  /* vm: appended to the guest kernel's command line, or NULL */
    uint32_t boot_timeout_s; /* vm: how long a boot may take until the agent answers
                              * (qrexec_timeout); 0 = engine default */
    /* A start only (NULL: nothing to wait for): the engine calls it once, after its
     * own preparation and before the first process of the qube runs (ns: before stage
     * 1 makes init; vm: before QEMU is launched), and fails the start if it fails.
     * bulkheadd uses it for what it set up beside the engine's preparation and that
     * must be in force before the qube runs: the qube's nftables rules. */
    int (*before_run)(void *ctx, bh_error *err);
    void *before_run_ctx;
};

struct bh_qube_stats {
    uint64_t mem_bytes;      /* current memory use */
    uint64_t cputime_ns;
};

/* start_finish's answer for a start that failed with the qube's processes still there
 * (see start_begin below). */
#define BH_START_FAILED_KILL (-2)

struct bh_driver {
    const char *name; /* "ns" or "vm" */
    /* Sets up and starts the qube; returns when the agent is ready (or fails and leaves
     * nothing behind). */
    int (*start)(const struct bh_qube_spec *spec, bh_error *err);
    /* Asks init to stop cleanly; returns at once. */
    int (*shutdown)(const struct bh_qube_spec *spec, bh_error *err);
    /* Stops the qube at once and cleans up everything it had (mounts, cgroups, netns);
     * on a halted qube, what its last run left (the lifecycle calls it then too). */
    int (*kill)(const struct bh_qube_spec *spec, bh_error *err);
    /* Optional (may be NULL): kill()'s first, quick part, for a caller that runs kill()
     * in a child of its own: the signal that ends the qube (sent first, the qube dies
     * while the child is being made), and the engine forgets in the caller's process
     * what it kept there for the qube (fds of a watch: the child's copy cannot). kill()
     * must still be called (it repeats this harmlessly, then waits and cleans up).
     * Returns a pidfd of the process it signalled when that is the caller's own child
     * and not the one watch_fd() watched (vm: QEMU), for the caller to reap (waitid
     * P_PIDFD) once it has ended: the child that runs kill() cannot; else -1. */
    int (*kill_now)(const struct bh_qube_spec *spec);
    int (*pause)(const struct bh_qube_spec *spec, bh_error *err);
    int (*unpause)(const struct bh_qube_spec *spec, bh_error *err);
    /* Current state from the system itself (not from a cache); stats may be NULL. */
    enum bh_power_state (*state)(const struct bh_qube_spec *spec, struct bh_qube_stats *stats);
    /* After a bulkheadd restart: re-attach to a qube left running. Returns 1 if it was
     * running and is adopted, 0 if it is not running (leftovers cleaned), -1 on error. */
    int (*adopt)(const struct bh_qube_spec *spec, bh_error *err);
    /* A pidfd (or -1) that becomes readable when the qube's init exits; the caller owns it
     * and must then call reap() to clean up and learn whether it crashed (or clean up
     * as a Kill does: ended() below). */
    int (*watch_fd)(const struct bh_qube_spec *spec);
    int (*reap)(const struct bh_qube_spec *spec, bool *crashed, bh_error *err);
    /* Optional: watch_fd() said the qube ended, and its cleanup is about to run as a
     * Kill's (kill_now(), then kill() in a child of the caller's): the engine notes here,
     * in the caller's process and before anything is ended, why the qube ended when its
     * exit status cannot tell (vm: a helper of QEMU's that ended while QEMU ran, which
     * kill_now then leaves for kill() to give its grace, beside the caller). Returns whether
     * a stop was asked (shutdown(), perhaps by a bulkheadd before a restart), which the
     * cleanup forgets. */
    bool (*ended)(const struct bh_qube_spec *spec);
    /* Optional, for engines whose start takes seconds (vm under TCG): start_begin sets
     * up and launches the qube and returns at once with an fd (owned by the engine)
     * that becomes readable whenever start_finish should be called; -1 on error, with
     * nothing left behind. start_finish returns 1 "not yet" (keep watching the fd), 0
     * "started: the agent is ready", -1 "failed, everything cleaned up", or
     * BH_START_FAILED_KILL "failed (err says why), what the start made is still there":
     * the caller ends it as a kill() during the start (an engine with kill_now only;
     * its cleanup may take long enough to run beside the caller's loop). After any but
     * 1 the fd is gone. kill() during a pending start cancels it. bulkheadd's event
     * loop watches the fd, so other calls are answered while a qube boots. */
    int (*start_begin)(const struct bh_qube_spec *spec, bh_error *err);
    int (*start_finish)(const struct bh_qube_spec *spec, bh_error *err);
    /* Optional (may be NULL): charges a host process that serves only this qube (its
     * qrexec-daemon, whose call processes inherit it) to the qube's CPU share, so that
     * host work a qube causes counts against that qube. Called by the process itself. */
    int (*charge_host_helper)(const struct bh_qube_spec *spec, pid_t pid, bh_error *err);
    /* Optional: applies spec's memory, maxmem and vcpus to the running qube (Qubes
     * changes these on a running qube; an engine that cannot leaves them for the next
     * start). */
    int (*set_limits)(const struct bh_qube_spec *spec, bh_error *err);
    /* Optional: the running qube's link changed (its netvm was set, changed or
     * removed; spec->net is the new one, `enabled` false for none). An engine whose
     * guest sets up its own network card tells the guest; returns at once. */
    int (*net_changed)(const struct bh_qube_spec *spec, bh_error *err);
    /* Optional: hands the running qube the host's block device major:minor as a device
     * node named `node` (Qubes' frontend-dev, e.g. xvdi), writable only if rw;
     * block_detach takes it away again. */
    int (*block_attach)(const struct bh_qube_spec *spec, unsigned major, unsigned minor, const char *node, bool rw,
                        bh_error *err);
    int (*block_detach)(const struct bh_qube_spec *spec, unsigned major, unsigned minor, const char *node,
                        bh_error *err);
};

/* Engine lookup by virt_mode ("ns", "vm"); NULL if unknown or not built. */
const struct bh_driver *bh_driver_get(const char *virt_mode);

/* The engine new qubes get when nothing else says (default_virt_mode): "pvh" where a VM
 * is both safe and fast, i.e. /dev/kvm opens, QEMU, virtiofsd and mkfs.erofs are
 * installed and so is a guest kernel; "ns" elsewhere (under TCG a VM isolates as well
 * but boots in seconds). $BULKHEAD_DEFAULT_VIRT_MODE (ns, pvh, hvm or vm) decides
 * instead. Probed once per process. */
const char *bh_driver_default_virt_mode(void);

/* Guest kernels for engines that boot one (vm), as Qubes' linux-kernel pool: a kernel
 * is named by its version ("6.1.0-57-cloud-amd64"). The installed one is the vm-kernel
 * directory (scripts/vm-kernel.sh; $BULKHEAD_VM_KERNEL_DIR). */
/* The installed kernel's name into out; -1 if there is none. */
int bh_kernel_default(char *out, size_t n);
/* Is name an installed kernel? Its directory into dir (may be NULL). 0 or -1. */
int bh_kernel_find(const char *name, char *dir, size_t n);
/* Bytes of the kernel's files (vmlinuz and modules): the kernel volume's size. */
uint64_t bh_kernel_size(const char *name);
