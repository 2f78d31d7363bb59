/* The `vm` engine's internal interfaces (docs/vm-engine.md).
 *
 *   assets.c     the guest kernel (from Debian's linux-image-cloud-amd64, fetched by
 *                scripts/vm-kernel.sh), the initramfs we build (bulkhead-vminit, our
 *                in-qube programs, the kernel modules), the template's erofs image
 *   qmp.c        a bounded QMP client (json-c) for QEMU's control socket
 *   launch.c     the QEMU command line and the processes of a running VM qube
 *   driver_vm.c  struct bh_driver glue
 *   mux.c, bridge.c, guest_init.c: the programs (see mux.h and guest_init.c)
 *
 * Runtime files of a VM qube (<runtime>/qubes/<name>/):
 *   vchan/        the host's side of the qube's vchan directory (same as `ns`)
 *   vm/           owned by the qube's host UID: qmp.sock, port.sock (QEMU makes them);
 *   vm-mem/       template `host`: the guest's RAM, shared with virtiofsd (a tmpfs
 *                 mounted by root on a root-owned dir, owned inside by the qube's UID)
 *   qemu.pid      "PID starttime" of QEMU; bridge.pid, virtiofsd.pid the same
 *   shutdown-requested  marker while a shutdown is pending
 */
#pragma once
#include "driver/driver.h"
#include "err.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define BH_VM_START_TIMEOUT_MS 120000 /* TCG boots take seconds; a loaded CI machine more */
#define BH_VM_QEMU "qemu-system-x86_64"
#define BH_VM_VIRTIOFSD "/usr/lib/qemu/virtiofsd" /* Debian's qemu-system-common */

/* ---- assets.c ---- */
struct bh_vm_assets {
    char kernel[4096];    /* vmlinuz */
    char initramfs[4096]; /* cpio, built and cached under <runtime>/vm-cache */
    char virtiofsd[4096]; /* QEMU's virtiofsd ("" if missing) */
    char bridge[4096];    /* host copy of bulkhead-vchan-bridge */
};
/* Finds the kernel (by name: spec->kernel) and the programs and (re)builds the initramfs when an input
 * changed. cache_dir is owned by the daemon (root, 0755). */
int bh_vm_assets(const char *cache_dir, const char *kernel, struct bh_vm_assets *a, bh_error *err);
/* bulkhead-vminit and bulkhead-vchan-bridge are found and static (they run in the
 * guest): false in a sanitizer build, whose VMs could not boot. */
bool bh_vm_guest_programs_ok(void);
/* A kernel module's length without its appended signature (len if it has none). */
size_t bh_vm_module_unsigned_len(const unsigned char *data, size_t len);
/* The kernel's directory ($BULKHEAD_VM_KERNEL_DIR, or vm-kernel next to our programs);
 * -1 if there is none (the engine is then unavailable). */
int bh_vm_kernel_dir(char *out, size_t n);
/* The template root dir as an erofs image in cache_dir, rebuilt only when a file of
 * the tree changed since the image was made. out: the image path. */
int bh_vm_root_image(const char *cache_dir, const char *root_dir, char *out, size_t n, bh_error *err);

/* ---- qmp.c ---- */
/* Runs one QMP command (JSON text of "execute") on the socket; *reply (malloc'd JSON
 * text of "return") may be NULL. Bounded: at most 64 KiB per line, timeout_ms total;
 * anything that is not QMP is an error. */
int bh_qmp_command(const char *sock, const char *cmd, char **reply, int timeout_ms, bh_error *err);
/* "running", "paused", ... from query-status; -1 on error. */
int bh_qmp_status(const char *sock, char *out, size_t n, bh_error *err);

/* ---- launch.c ---- */
struct bh_vm_paths {
    char rt[4096], vchan[4096], vmdir[4096], qmp[4096], port[4096];
    char qemu_pid[4096], bridge_pid[4096], vfs_pid[4096], vfs_sock[4096], shutdown_mark[4096];
    char root_pid[4096], root_sock[4096]; /* virtiofsd of a template's/standalone's own root */
    char mem[4096];   /* <rt>/vm-mem (root's <rt>, not QEMU's vm/): a tmpfs with huge pages for the guest's shared RAM */
    char cache[4096]; /* <runtime>/vm-cache */
    char images[4096]; /* <root>/vm-cache */
};
void bh_vm_paths_fill(const struct bh_qube_spec *spec, struct bh_vm_paths *p);
bool bh_vm_have_kvm(void);
/* Starts QEMU (and virtiofsd, and the host bridge) for the qube; returns once QEMU
 * runs. The agent is not ready yet (driver_vm.c watches for it). */
int bh_vm_launch(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, bh_error *err);
/* A recorded process, still the same one (start time) and owned by uid (if != -1).
 * Returns its PID or -1. */
pid_t bh_vm_pidfile_check(const char *path, uid_t uid);
int bh_vm_pidfile_write(const char *path, pid_t pid);
/* A recorded process (start time) that has ended and is our child: waited for until its
 * last thread has ended too (up to 2 s), then reaped, its wait status in *ws (may be
 * NULL). Returns its PID; 0 when it is ours but still ending after that (its record is
 * removed and its pidfd, SIGKILLed, goes to *ending for the caller to reap, or to
 * bh_late_reap when ending is NULL); -1 when there is none, it runs, or it is not ours. */
pid_t bh_vm_pidfile_reap(const char *path, int *ws, int *ending);
/* waitid(P_PIDFD, WNOHANG): 1 reaped (wait status in *ws, may be NULL), 0 not ended yet,
 * -1 not ours or an error. */
int bh_vm_reap_pidfd(int pidfd, int *ws);
/* Sends SIGKILL (if signal) to the recorded QEMU, live or ended and not yet reaped, and
 * returns a pidfd of it, for a caller that runs bh_vm_cleanup in a child: QEMU is the
 * caller's child, which only the caller can reap. -1 when no recorded QEMU is there.
 * Without signal, the child's cleanup ends it. */
int bh_vm_qemu_end(const struct bh_vm_paths *p, bool signal);
/* Kills QEMU, the bridge and virtiofsd; removes the qube's runtime files and cgroup.
 * Everything is tried; -1 (err) when the cgroup could not be removed (something of the
 * qube may still be in it). */
int bh_vm_cleanup(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, bh_error *err);

/* The guest's link as kernel parameters (" bh.ip=... bh.gw=..."; "" without a netvm). */
void bh_vm_net_params(const struct bh_qube_spec *spec, char *out, size_t n);
/* Tells a running guest its new link over qrexec, beside the caller (netupdate.c). */
int bh_vm_net_changed(const struct bh_qube_spec *spec, bh_error *err);

extern const struct bh_driver bh_driver_vm;
