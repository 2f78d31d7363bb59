/* The processes of a running VM qube, all outliving bulkheadd (as `ns` qubes do):
 *
 *   qemu-system-x86_64  as the qube's host UID (uid_base), -sandbox on, in the qube's
 *                       cgroup, in an empty network namespace of its own; its images
 *                       come in as fds (-add-fd), so it needs no access to the pool,
 *                       and so does its network card (a tap in the qube's namespace,
 *                       made and wired by src/net: bh_net_guest_nic_open); sockets in
 *                       <rt>/vm (owned by uid_base)
 *   bulkhead-vchan-bridge  as uid_base, no_new_privs: the host side of qrexec's dir
 *   virtiofsd           for the `host` template: the host's /usr, read-only; for a
 *                       template or standalone: its own root tree, writable. Each as
 *                       the qube's root in the qube's user namespace (host UID
 *                       uid_base) on an idmapped view of the directory, in its own
 *                       namespace sandbox, in the qube's cgroup; exits when QEMU goes
 *                       away
 *
 * The kernel command line carries what bulkhead-vminit needs (guest_init.c). */
#include "vm.h"
#include "cleanup.h"
#include "driver/ns/ns.h"
#include "io.h"
#include "late_reap.h"
#include "log.h"
#include "qrexec_ids.h"
#include "net/net.h"
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <sched.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

void bh_vm_paths_fill(const struct bh_qube_spec *spec, struct bh_vm_paths *p)
{
    memset(p, 0, sizeof *p);
    snprintf(p->rt, sizeof p->rt, "%s", spec->runtime_dir);
    bh_path_join(p->vchan, sizeof p->vchan, p->rt, "vchan");
    bh_path_join(p->vmdir, sizeof p->vmdir, p->rt, "vm");
    bh_path_join(p->qmp, sizeof p->qmp, p->vmdir, "qmp.sock");
    bh_path_join(p->port, sizeof p->port, p->vmdir, "port.sock");
    bh_path_join(p->vfs_sock, sizeof p->vfs_sock, p->vmdir, "virtiofs.sock");
    bh_path_join(p->mem, sizeof p->mem, p->rt, "vm-mem");
    bh_path_join(p->qemu_pid, sizeof p->qemu_pid, p->rt, "qemu.pid");
    bh_path_join(p->bridge_pid, sizeof p->bridge_pid, p->rt, "bridge.pid");
    bh_path_join(p->vfs_pid, sizeof p->vfs_pid, p->rt, "virtiofsd.pid");
    bh_path_join(p->root_sock, sizeof p->root_sock, p->vmdir, "virtiofs-root.sock");
    bh_path_join(p->root_pid, sizeof p->root_pid, p->rt, "virtiofsd-root.pid");
    bh_path_join(p->shutdown_mark, sizeof p->shutdown_mark, p->rt, "shutdown-requested");
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", spec->runtime_dir);
    bh_path_join(p->cache, sizeof p->cache, dirname(dirname(buf)), "vm-cache");
    snprintf(buf, sizeof buf, "%s", spec->state_dir ? spec->state_dir : spec->runtime_dir);
    bh_path_join(p->images, sizeof p->images, dirname(dirname(buf)), "vm-cache");
}

bool bh_vm_have_kvm(void)
{
    if (getenv("BULKHEAD_VM_NO_KVM"))
        return false;
    int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    close(fd);
    return true;
}

/* ---- pid files: "PID STARTTIME" ---- */

int bh_vm_pidfile_write(const char *path, pid_t pid)
{
    struct bh_init_id id = { 0 };
    if (bh_init_id_read_proc(pid, &id) < 0)
        return -1;
    char t[64];
    int n = snprintf(t, sizeof t, "%d %llu\n", (int)pid, (unsigned long long)id.starttime);
    return bh_write_runtime_file(path, t, (size_t)n, 0644);
}

/* The process a pidfile records (its PID and start time), if that process is still the
 * one recorded, live or not yet reaped; its state letter in *state. Else -1. */
static pid_t recorded_pid(const char *path, char *state)
{
    _cleanup_free_ char *t = bh_read_file(path, 64, NULL);
    int pid;
    unsigned long long start;
    if (!t || sscanf(t, "%d %llu", &pid, &start) != 2 || pid <= 1)
        return -1;
    struct bh_init_id id = { 0 };
    if (bh_init_id_read_proc(pid, &id) < 0 || id.starttime != start)
        return -1;
    char sp[64];
    snprintf(sp, sizeof sp, "/proc/%d/stat", pid);
    _cleanup_free_ char *st = bh_read_file(sp, 4096, NULL);
    uint64_t s2;
    if (!st || bh_proc_stat_parse(st, &s2, state) < 0)
        return -1;
    return pid;
}

pid_t bh_vm_pidfile_check(const char *path, uid_t uid)
{
    char state = 0;
    pid_t pid = recorded_pid(path, &state);
    if (pid < 0 || state == 'Z' || state == 'X')
        return -1;
    if (uid != (uid_t)-1) {
        char sp[64];
        struct stat ps;
        snprintf(sp, sizeof sp, "/proc/%d", pid);
        if (stat(sp, &ps) < 0 || ps.st_uid != uid)
            return -1;
    }
    return pid;
}

/* ---- helpers ---- */

static int drop_to(uid_t uid)
{
    if (setgroups(0, NULL) < 0 || setresgid(uid, uid, uid) < 0 || setresuid(uid, uid, uid) < 0)
        return -1;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

static void child_stdio(const char *log)
{
    int nul = open("/dev/null", O_RDWR | O_CLOEXEC);
    int lfd = log ? open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600) : -1;
    dup2(nul, 0);
    dup2(lfd >= 0 ? lfd : nul, 1);
    dup2(lfd >= 0 ? lfd : nul, 2);
}

/* In a child before exec: src[i] (or nothing, if -1) becomes fd first + i, inherited.
 * Through copies above every target first, so that no source is overwritten before
 * it is placed (dup2 of an fd onto itself would also keep its close-on-exec). */
static int place_fds(const int *src, int n, int first)
{
    int tmp[8];
    for (int i = 0; i < n && i < 8; i++)
        if ((tmp[i] = src[i] >= 0 ? fcntl(src[i], F_DUPFD_CLOEXEC, first + n) : -1) < 0 && src[i] >= 0)
            return -1;
    for (int i = 0; i < n && i < 8; i++)
        if (tmp[i] >= 0 && dup2(tmp[i], first + i) < 0)
            return -1;
    return 0;
}

static unsigned long tsc_khz(void)
{
    /* TCG's TSC runs at the host's rate; without a PIT (microvm) the guest cannot
     * calibrate it and hangs, so the rate is given (tsc_early_khz). */
    _cleanup_free_ char *ci = bh_read_file("/proc/cpuinfo", 1 << 20, NULL);
    const char *m = ci ? strstr(ci, "cpu MHz") : NULL;
    double mhz = 0;
    if (m && (m = strchr(m, ':')))
        mhz = atof(m + 1);
    return mhz > 100 ? (unsigned long)(mhz * 1000) : 2000000;
}

/* fork() whose child is not ours: the helper processes (bridge, virtiofsd) outlive
 * bulkheadd like the qube, and their exit must not leave zombies in the daemon. In the
 * grandchild returns 0 after recording its own pid in pidfile; in the caller, the
 * grandchild's pid (from that file), or -1. */
static pid_t fork_detached(const char *pidfile)
{
    unlink(pidfile);
    pid_t mid = fork();
    if (mid < 0)
        return -1;
    if (mid == 0) {
        pid_t pid = fork();
        if (pid != 0)
            _exit(pid < 0);
        setsid();
        if (bh_vm_pidfile_write(pidfile, getpid()) < 0)
            _exit(126);
        return 0;
    }
    int ws;
    while (waitpid(mid, &ws, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != 0)
        return -1;
    for (int i = 0; i < 500; i++) { /* the grandchild writes the file first thing */
        pid_t pid = bh_vm_pidfile_check(pidfile, (uid_t)-1);
        if (pid > 0)
            return pid;
        usleep(2000);
    }
    return -1;
}

/* ---- virtiofsd: a host directory shared with the guest ---- */

/* One share: the host's /usr (template `host`, read-only, tag "usr") or a template's or
 * standalone's own root tree (writable, tag "root"). */
#define VFSD_NOFILE (1 << 20) /* virtiofsd's own default is 1000000 */

struct vfs_share {
    const char *dir, *at, *sock, *pidfile, *log; /* at: where virtiofsd sees dir */
    bool writable;
};

/* virtiofsd runs as the qube's root in the qube's own user namespace (host UID
 * uid_base, no capability on the host), on an idmapped clone of the directory in a
 * mount namespace of its own: the tree's IDs 0..65535 are the namespace's, so the
 * guest's root owns its template's files and nothing else, exactly as an `ns`
 * template's root does, and a virtiofsd taken over by a hostile guest (it parses the
 * guest's FUSE requests) is no more than that qube's root on the host. */
static pid_t start_virtiofsd(const struct bh_qube_spec *spec, const struct vfs_share *sh, const char *prog,
                             int userns_fd, bh_error *err)
{
    /* Its listening socket is made here and handed over (--fd): QEMU can connect the
     * moment it starts (the connection waits in the backlog until virtiofsd accepts),
     * so nobody waits for virtiofsd to come up (20-30 ms polled before each QEMU);
     * if virtiofsd dies instead, the socket closes with it and QEMU fails to start.
     * Owned by uid_base (QEMU connects as it; only uid_base reaches <rt>/vm). */
    unlink(sh->sock);
    _cleanup_close_ int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa = { .sun_family = AF_UNIX };
    if (strlen(sh->sock) >= sizeof sa.sun_path)
        return bh_fail(err, ENAMETOOLONG, "%s: path too long", sh->sock);
    memcpy(sa.sun_path, sh->sock, strlen(sh->sock) + 1);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(lfd, 4) < 0 ||
        fchownat(AT_FDCWD, sh->sock, spec->uid_base, spec->uid_base, AT_SYMLINK_NOFOLLOW) < 0 ||
        fchmodat(AT_FDCWD, sh->sock, 0600, 0) < 0)
        return bh_fail_errno(err, "virtiofsd's socket %s", sh->sock);
    char tag[128];
    bh_cgroup_tag(spec, tag, sizeof tag);
    pid_t pid = fork_detached(sh->pidfile);
    if (pid < 0)
        return bh_fail_errno(err, "starting virtiofsd");
    if (pid == 0) {
        child_stdio(sh->log);
        bh_error e = { 0 };
        uint64_t attr = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | (sh->writable ? 0 : MOUNT_ATTR_RDONLY);
        /* in the qube's cgroup (its memory, and a Kill ends it with the rest); the
         * idmapped view over the directory's own path, in a mount namespace of its own */
        if (bh_cgroup_ops()->attach_self(tag, spec->name, NULL) < 0 || unshare(CLONE_NEWNS) < 0 ||
            mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
            _exit(126);
        /* a root tree without what is mounted below it (only its own file system is
         * shared writable); the host's /usr with its submounts, as the ns engine */
        int mfd = bh_idmapped_tree(sh->dir, userns_fd, attr, !sh->writable, &e);
        if (mfd < 0 || bh_attach(mfd, sh->at, &e) < 0) {
            fprintf(stderr, "bulkheadd: virtiofsd's view of %s: %s\n", sh->dir, e.msg);
            _exit(126);
        }
        close(mfd);
        int src_fd[] = { lfd };
        if (place_fds(src_fd, 1, 3) < 0)
            _exit(126);
        /* virtiofsd holds an O_PATH fd for every inode the guest has looked up and not
         * forgotten (a dpkg run in a template: tens of thousands); set while we are
         * still host root, since the namespace's root cannot raise the hard limit. Its
         * fds' memory is charged to the qube's cgroup. */
        struct rlimit nofile = { VFSD_NOFILE, VFSD_NOFILE };
        _cleanup_free_ char *nr_open = bh_read_file("/proc/sys/fs/nr_open", 32, NULL);
        if (nr_open && strtoul(nr_open, NULL, 10) > 0 && strtoul(nr_open, NULL, 10) < VFSD_NOFILE)
            nofile.rlim_cur = nofile.rlim_max = strtoul(nr_open, NULL, 10);
        if (setrlimit(RLIMIT_NOFILE, &nofile) < 0 && getrlimit(RLIMIT_NOFILE, &nofile) == 0) {
            /* without CAP_SYS_RESOURCE (a host that withholds it from bulkheadd): as
             * far as the hard limit we have */
            nofile.rlim_cur = nofile.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &nofile);
        }
        /* the qube's root in the qube's namespace: all of virtiofsd's own steps
         * (its sandbox's namespaces, pivot_root, dropping capabilities) work there */
        if (setns(userns_fd, CLONE_NEWUSER) < 0 || setgroups(0, NULL) < 0 || setresgid(0, 0, 0) < 0 ||
            setresuid(0, 0, 0) < 0) {
            fprintf(stderr, "bulkheadd: virtiofsd into the qube's user namespace: %s\n", strerror(errno));
            _exit(126);
        }
        char src[4200];
        snprintf(src, sizeof src, "source=%s", sh->at);
        if (sh->writable)
            /* cache=auto: the guest asks again after a second; xattr: file
             * capabilities that packages set (setcap) are kept */
            execl(prog, "virtiofsd", "--fd=3", "-o", src, "-o", "cache=auto", "-o", "xattr", "-o", "no_posix_lock",
                  "-o", "no_flock", "--rlimit-nofile=0", (char *)NULL);
        /* cache=always: the guest keeps what it looked up and read for as long as it
         * runs. With cache=auto it asked virtiofsd again after a second for every path
         * component of every exec (/lib, /lib/x86_64-linux-gnu, libc.so.6, ...), each
         * a round trip to virtiofsd: a qvm-run into a warm TCG guest took 0.5 s, 0.37 s
         * of QEMU's CPU; with cache=always 0.15 s, 0.13 s. The share is read-only and
         * the host changes /usr by replacing files (dpkg renames): a running VM keeps
         * seeing the /usr it started with, as a Qubes app qube sees its template's */
        execl(prog, "virtiofsd", "--fd=3", "-o", src, "-o", "cache=always", "-o", "no_posix_lock", "-o", "no_flock",
              "--rlimit-nofile=0", (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* ---- QEMU ---- */

#define ARGV_MAX 96
struct argv {
    char *v[ARGV_MAX];
    int n;
    char store[16384];
    size_t used;
};
__attribute__((format(printf, 2, 3))) static void arg(struct argv *a, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *dst = a->store + a->used;
    int len = vsnprintf(dst, sizeof a->store - a->used, fmt, ap);
    va_end(ap);
    if (len < 0 || a->used + (size_t)len + 1 > sizeof a->store || a->n + 1 >= ARGV_MAX)
        abort(); /* fixed set of arguments: only a bug gets here */
    a->used += (size_t)len + 1;
    a->v[a->n++] = dst;
    a->v[a->n] = NULL;
}

/* Does the qube get a network card? Whenever it has a namespace of the host's (every
 * qube but dom0), with or without a netvm: a microvm has no hot-plug, so a card is
 * there from the start. Without a netvm its tap has no link (the wire drops every
 * frame) and the guest leaves it down, without address; a netvm set while it runs
 * plugs the link and tells the guest (bh_vm_net_changed). */
static bool has_nic(const struct bh_qube_spec *spec)
{
    return spec->net.netns_path && spec->net.mac;
}

/* The guest's link as kernel parameters: " bh.ip=... bh.gw=... bh.mask=... bh.dns=...
 * [bh.ip6=... bh.gw6=...]", or "" without a netvm. */
void bh_vm_net_params(const struct bh_qube_spec *spec, char *out, size_t n)
{
    const struct bh_net_config *c = &spec->net;
    out[0] = '\0';
    if (!c->enabled || !c->ip || !c->gateway)
        return;
    bool v6 = c->ip6 && c->gateway6;
    snprintf(out, n, " bh.ip=%s bh.gw=%s bh.mask=%s bh.dns=%s,%s%s%s%s%s", c->ip, c->gateway,
             c->netmask ? c->netmask : "255.255.255.255", c->dns1 ? c->dns1 : "", c->dns2 ? c->dns2 : "",
             v6 ? " bh.ip6=" : "", v6 ? c->ip6 : "", v6 ? " bh.gw6=" : "", v6 ? c->gateway6 : "");
}

static void qemu_argv(struct argv *a, const struct bh_qube_spec *spec, const struct bh_vm_paths *p,
                      const struct bh_vm_assets *as, bool kvm, bool vfs, bool own_root)
{
    bool nic = has_nic(spec);
    bool shared_mem = vfs || own_root;
    uint64_t mem = spec->memory_mib ? spec->memory_mib : 400;
    arg(a, "%s", BH_VM_QEMU);
    arg(a, "-name");
    arg(a, "%s", spec->name);
    arg(a, "-M");
    arg(a, "microvm,x-option-roms=off,pit=off,pic=off,rtc=on,isa-serial=%s%s", spec->debug ? "on" : "off",
        shared_mem ? ",memory-backend=mem" : "");
    arg(a, "-accel");
    arg(a, "%s", kvm ? "kvm" : "tcg,tb-size=64");
    arg(a, "-cpu");
    arg(a, "%s", kvm ? "host" : "max");
    arg(a, "-m");
    arg(a, "%lluM", (unsigned long long)mem);
    arg(a, "-smp");
    arg(a, "%u", spec->vcpus ? spec->vcpus : 1);
    arg(a, "-global"); /* modern virtio-mmio: vhost-user (virtiofsd) refuses legacy devices */
    arg(a, "virtio-mmio.force-legacy=false");
    arg(a, "-nodefaults");
    arg(a, "-no-user-config");
    arg(a, "-display");
    arg(a, "none");
    arg(a, "-no-reboot");
    arg(a, "-sandbox");
    arg(a, "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny");
    arg(a, "-device");
    arg(a, "pvpanic");
    arg(a, "-action");
    arg(a, "panic=exit-failure");
    arg(a, "-kernel");
    arg(a, "%s", as->kernel);
    arg(a, "-initrd");
    arg(a, "%s", as->initramfs);
    /* TCG: the TSC's rate (tsc_khz), and that it is reliable: TCG gives every vCPU the
     * one host-derived counter, so the TSCs are in sync and run at a constant rate.
     * Without tsc=reliable a guest of 2+ vCPUs found them "unsynchronized" and fell
     * back to a jiffies clock, which ran slow (uptime 3.7 s after 5.5 s) and made its
     * kernel reach /init 0.5-0.9 s later */
    char tsc[64] = "";
    if (!kvm)
        snprintf(tsc, sizeof tsc, " tsc_early_khz=%lu tsc=reliable", tsc_khz());
    uint64_t vol = spec->vol.volatile_bytes ? spec->vol.volatile_bytes >> 20 : 1024;
    /* the guest's eth0, as Qubes' vif script and qubes-network set it up (guest_init.c) */
    char netp[400];
    bh_vm_net_params(spec, netp, sizeof netp);
    arg(a, "-append");
    arg(a, "console=ttyS0 %s panic=-1 reboot=t%s bh.name=%s bh.qid=%u bh.user=%s bh.vol=%llu bh.usr=%s%s%s%s%s%s%s",
        spec->debug ? "loglevel=4" : "quiet", tsc, spec->name, spec->qid,
        spec->default_user ? spec->default_user : "user", (unsigned long long)vol, vfs ? "virtiofs" : "root",
        own_root ? " bh.root=virtiofs" : "",
        spec->vol.private_img ? " bh.priv=bhprivate" : "", spec->debug ? " bh.debug=1" : "", netp,
        spec->kernelopts ? " " : "", spec->kernelopts ? spec->kernelopts : "");
    arg(a, "-qmp");
    arg(a, "unix:%s,server=on,wait=off", p->qmp);
    arg(a, "-chardev");
    arg(a, "socket,id=vchan,path=%s,server=on,wait=off", p->port);
    arg(a, "-device");
    arg(a, "virtio-serial-device,max_ports=2");
    arg(a, "-device");
    arg(a, "virtserialport,chardev=vchan,name=bulkhead.vchan");
    if (!own_root) { /* the template's erofs image: fd 3 (launch) */
        arg(a, "-add-fd");
        arg(a, "fd=3,set=1");
        arg(a, "-drive");
        arg(a, "file=/dev/fdset/1,if=none,id=root,format=raw,readonly=on");
        arg(a, "-device");
        arg(a, "virtio-blk-device,drive=root,serial=bhroot");
    }
    if (spec->vol.private_img) {
        arg(a, "-add-fd");
        arg(a, "fd=4,set=2");
        arg(a, "-add-fd"); /* QEMU opens read-only first to probe: the set needs both modes */
        arg(a, "fd=5,set=2");
        arg(a, "-drive");
        arg(a, "file=/dev/fdset/2,if=none,id=private,format=raw");
        arg(a, "-device");
        arg(a, "virtio-blk-device,drive=private,serial=bhprivate");
    }
    if (shared_mem) {
        arg(a, "-object");
        /* shared with virtiofsd (vhost-user), so not QEMU's anonymous memory: a file on
         * a tmpfs of huge pages (make_mem_dir), aligned so that the guest's RAM is
         * mapped in 2 MiB pages as anonymous RAM is (madvise). A memfd is shmem without
         * huge pages (shmem_enabled is `never` on most hosts): the guest's first touch
         * of its RAM then took 30000 more page faults, ~0.6 s of CPU per TCG boot */
        arg(a, "memory-backend-file,id=mem,size=%lluM,share=on,align=2M,mem-path=%s", (unsigned long long)mem,
            p->mem);
    }
    if (own_root) {
        arg(a, "-chardev");
        arg(a, "socket,id=vfsroot,path=%s", p->root_sock);
        arg(a, "-device");
        arg(a, "vhost-user-fs-device,chardev=vfsroot,tag=root");
    }
    if (vfs) {
        arg(a, "-chardev");
        arg(a, "socket,id=vfs,path=%s", p->vfs_sock);
        arg(a, "-device");
        arg(a, "vhost-user-fs-device,chardev=vfs,tag=usr");
    }
    if (nic) { /* the tap in the qube's namespace, made by us: fd 6 (launch) */
        arg(a, "-netdev");
        arg(a, "tap,id=net0,fd=6");
        arg(a, "-device");
        arg(a, "virtio-net-device,netdev=net0,mac=%s", spec->net.mac);
    }
    if (spec->debug) {
        arg(a, "-serial");
        arg(a, "file:%s/console.log", p->vmdir);
    }
}

static int make_dirs(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, bh_error *err)
{
    if (bh_mkdir_p(p->rt, 0755) < 0)
        return bh_fail_errno(err, "mkdir %s", p->rt);
    if (mkdir(p->vchan, 0700) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", p->vchan);
    char opts[128];
    /* The bridge (the qube's host UID) owns it; qrexec's call processes, which are not
     * root, bind and connect there through their group ("dom0 qrexec"); sticky: neither
     * removes the other's names. No one else on the host gets in. */
    snprintf(opts, sizeof opts, "size=64k,nr_inodes=1024,mode=1770,uid=%u,gid=%u", spec->uid_base,
             (unsigned)BH_QX_CALL_GID);
    if (mount("bulkhead-vchan", p->vchan, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
        return bh_fail_errno(err, "mount tmpfs on %s", p->vchan);
    if (mkdir(p->vmdir, 0700) < 0 && errno != EEXIST)
        return bh_fail_errno(err, "mkdir %s", p->vmdir);
    if (chown(p->vmdir, spec->uid_base, spec->uid_base) < 0)
        return bh_fail_errno(err, "chown %s", p->vmdir);
    return 0;
}

/* The guest's RAM, when it is shared with virtiofsd: a tmpfs of the guest's size
 * (QEMU's file is all it holds), owned by the qube's host UID, with huge pages where
 * the host's kernel has them for tmpfs (otherwise plain pages: same function). */
static int make_mem_dir(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, bh_error *err)
{
    uint64_t mem = spec->memory_mib ? spec->memory_mib : 400;
    /* In the root-owned <rt>, not in vm/ (QEMU's UID owns that: a QEMU taken over could
     * leave a symlink there for root's mount to follow onto any host directory); a
     * directory left by an earlier run must be ours and not a link. */
    struct stat st;
    if (mkdir(p->mem, 0700) < 0 &&
        (errno != EEXIST || lstat(p->mem, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0))
        return bh_fail(err, EEXIST, "mkdir %s: exists and is not root's directory", p->mem);
    char opts[160];
    for (int huge = 1; huge >= 0; huge--) {
        snprintf(opts, sizeof opts, "size=%lluM,nr_inodes=8,mode=0700,uid=%u,gid=%u%s", (unsigned long long)mem + 2,
                 spec->uid_base, spec->uid_base, huge ? ",huge=always" : "");
        if (mount("bulkhead-vmmem", p->mem, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) == 0)
            return 0;
        if (errno != EINVAL)
            break;
    }
    return bh_fail_errno(err, "mount tmpfs on %s", p->mem);
}

static int make_cgroup(const struct bh_qube_spec *spec, const char *tag, bh_error *err)
{
    /* QEMU's own memory comes on top of the guest's: TCG's translation cache
     * (tb-size=64), device state, virtiofs queues. */
    struct bh_qube_spec s = *spec;
    uint64_t guest = spec->maxmem_mib > spec->memory_mib ? spec->maxmem_mib : spec->memory_mib;
    s.maxmem_mib = (guest ? guest : 400) + 256;
    s.memory_mib = s.maxmem_mib;
    if (bh_cgroup_ops()->create(tag, &s, err) < 0)
        return -1;
    /* v1 devices: the ns list plus /dev/kvm for QEMU */
    char dir[4200];
    snprintf(dir, sizeof dir, "/sys/fs/cgroup/devices/%s/%s", tag, spec->name);
    if (access(dir, F_OK) == 0)
        (void)bh_cg_write(dir, "devices.allow", "c 10:232 rwm", NULL);
    return 0;
}

int bh_vm_launch(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, bh_error *err)
{
    if (spec->kernelopts && strlen(spec->kernelopts) > 1024)
        return bh_fail(err, E2BIG, "kernelopts of %s longer than 1024 bytes", spec->name);
    if (spec->provides_network)
        return bh_fail(err, ENOTSUP, "%s provides network to other qubes: a netvm runs in the ns engine "
                                     "(virt_mode ns), its clients may be VMs", spec->name);
    /* an app qube or disposable: the template's tree as an erofs image under a
     * throwaway layer; a template or standalone: its own tree, shared writable */
    bool own_root = !spec->vol.root_lower && spec->vol.root_rw;
    if (!own_root && !(spec->vol.root_lower && spec->vol.root_throwaway))
        return bh_fail(err, EINVAL, "%s: no root volume", spec->name);
    struct bh_vm_assets as;
    if (bh_vm_assets(p->cache, spec->kernel, &as, err) < 0)
        return -1;
    char root_img[4096] = "";
    if (!own_root && bh_vm_root_image(p->images, spec->vol.root_lower, root_img, sizeof root_img, err) < 0)
        return -1;
    bool vfs = spec->vol.host_usr != NULL;
    if ((vfs || own_root) && !as.virtiofsd[0])
        return bh_fail(err, ENOENT, "%s in a VM needs virtiofsd (qemu-system-common)",
                       own_root ? "a template's or standalone's own root" : "template `host`");
    bool kvm = bh_vm_have_kvm();
    if (make_dirs(spec, p, err) < 0)
        return -1;
    char tag[128];
    bh_cgroup_tag(spec, tag, sizeof tag);
    if (make_cgroup(spec, tag, err) < 0)
        return -1;
    if (vfs || own_root) {
        if (make_mem_dir(spec, p, err) < 0)
            return -1;
        _cleanup_close_ int userns =
            bh_userns_create_rooted(spec->uid_base, spec->uid_count ? spec->uid_count : 65536, err);
        if (userns < 0)
            return bh_prefix(err, "virtiofsd's user namespace");
        char ulog[4200], rlog[4200];
        snprintf(ulog, sizeof ulog, "%s/virtiofsd.log", p->rt);
        snprintf(rlog, sizeof rlog, "%s/virtiofsd-root.log", p->rt);
        /* the root tree's own path is in the pool, behind root's directories: its view
         * goes on <rt>/vfs-root, root's like <rt> (not in vm/, which QEMU's UID owns) */
        char at[4200];
        snprintf(at, sizeof at, "%s/vfs-root", p->rt);
        struct stat st;
        if (own_root && mkdir(at, 0755) < 0 &&
            (errno != EEXIST || lstat(at, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != 0))
            return bh_fail(err, EEXIST, "mkdir %s: exists and is not root's directory", at);
        struct vfs_share usr = { spec->vol.host_usr, spec->vol.host_usr, p->vfs_sock, p->vfs_pid,
                                 spec->debug ? ulog : NULL, false };
        struct vfs_share root = { spec->vol.root_rw, at, p->root_sock, p->root_pid, rlog, true };
        if ((own_root && start_virtiofsd(spec, &root, as.virtiofsd, userns, err) < 0) ||
            (vfs && start_virtiofsd(spec, &usr, as.virtiofsd, userns, err) < 0))
            return -1;
    }
    _cleanup_close_ int rootfd = own_root ? -1 : open(root_img, O_RDONLY | O_CLOEXEC);
    _cleanup_close_ int privfd = spec->vol.private_img ? open(spec->vol.private_img, O_RDWR | O_CLOEXEC) : -1;
    _cleanup_close_ int privro = spec->vol.private_img ? open(spec->vol.private_img, O_RDONLY | O_CLOEXEC) : -1;
    if ((!own_root && rootfd < 0) || (spec->vol.private_img && (privfd < 0 || privro < 0)))
        return bh_fail_errno(err, "opening the qube's images");
    /* its network card: a tap in the qube's namespace (src/net), wired to the link to
     * its netvm; QEMU gets only the fd */
    _cleanup_close_ int tapfd = has_nic(spec) ? bh_net_guest_nic_open(spec->net.netns_path, err) : -1;
    if (has_nic(spec) && tapfd < 0)
        return -1;
    struct argv *a = calloc(1, sizeof *a);
    if (!a)
        return bh_fail(err, ENOMEM, "out of memory");
    qemu_argv(a, spec, p, &as, kvm, vfs, own_root);
    char log[4200];
    snprintf(log, sizeof log, "%s/qemu.log", p->rt);
    pid_t pid = fork();
    if (pid < 0) {
        free(a);
        return bh_fail_errno(err, "fork");
    }
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        child_stdio(log);
        if (bh_cgroup_ops()->attach_self(tag, spec->name, NULL) < 0)
            _exit(126);
        int src[] = { rootfd, privfd, privro, tapfd };
        if (place_fds(src, 4, 3) < 0)
            _exit(126);
        /* QEMU needs no network of the host's (its guest's card is the tap it was
         * given): a namespace of its own with nothing in it, so that even a
         * compromised QEMU reaches no host service over IP */
        if (unshare(CLONE_NEWNET) < 0)
            _exit(126);
        if (drop_to(spec->uid_base) < 0)
            _exit(126);
        execvp(a->v[0], a->v);
        _exit(127);
    }
    free(a);
    if (bh_vm_pidfile_write(p->qemu_pid, pid) < 0) {
        int e = errno;
        /* unrecorded, no cleanup would find it again: reaped here (it has just been
         * forked and ends at once) */
        kill(pid, SIGKILL);
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
        errno = e;
        return bh_fail_errno(err, "recording QEMU's pid");
    }
    /* Not waiting here for QEMU to make its port socket (0.1-0.2 s, more under load, on
     * bulkheadd's loop): the bridge connects once it exists (it retries), and a QEMU
     * that ends before that fails the start through its pidfd, with its log, as any
     * QEMU that stops while booting (vm_start_finish). */
    pid_t bpid = fork_detached(p->bridge_pid);
    if (bpid < 0)
        return bh_fail_errno(err, "starting the vchan bridge");
    if (bpid == 0) {
        /* its log: why it ended (and, for a debug qube, its trace); in the qube's
         * cgroup, so that a Kill takes its worker too, at once */
        snprintf(log, sizeof log, "%s/bridge.log", p->rt);
        child_stdio(log);
        if (bh_cgroup_ops()->attach_self(tag, spec->name, NULL) < 0 || drop_to(spec->uid_base) < 0)
            _exit(126);
        char qpid[32];
        snprintf(qpid, sizeof qpid, "%d", (int)pid);
        execl(as.bridge, "bulkhead-vchan-bridge", "--dir", p->vchan, "--connect", p->port, "--qemu-pid", qpid,
              spec->debug ? "--trace" : (char *)NULL, (char *)NULL);
        _exit(127);
    }
    return 0;
}

/* A pidfd of pid, once it pins the process: -1 unless the record still names it then
 * (a PID reused between the record's check and the open is not signalled or waited for). */
static int recorded_pidfd(const char *pidfile, pid_t pid)
{
    int pfd = pid > 0 ? (int)syscall(SYS_pidfd_open, pid, 0) : -1;
    if (pfd >= 0 && recorded_pid(pidfile, &(char){ 0 }) != pid) {
        close(pfd);
        return -1;
    }
    return pfd;
}

int bh_vm_reap_pidfd(int pidfd, int *ws)
{
    siginfo_t si;
    int r = bh_pidfd_try_reap(pidfd, &si);
    if (r <= 0)
        return r;
    if (ws)
        *ws = si.si_code == CLD_EXITED ? (si.si_status & 0xff) << 8 : (si.si_status & 0x7f);
    return 1;
}

pid_t bh_vm_pidfile_reap(const char *pidfile, int *ws, int *ending)
{
    char state = 0;
    pid_t pid = recorded_pid(pidfile, &state);
    if (pid <= 0 || state != 'Z')
        return -1;
    _cleanup_close_ int pfd = recorded_pidfd(pidfile, pid);
    if (pfd < 0)
        return -1;
    /* its leader shows 'Z' as soon as it has exited, but the group can be reaped only once
     * its last thread has ended too (QEMU's take a while): the pidfd tells when */
    struct pollfd pp = { .fd = pfd, .events = POLLIN };
    (void)poll(&pp, 1, 2000);
    int r = bh_vm_reap_pidfd(pfd, ws);
    if (r < 0)
        return -1; /* not ours (adopted after a restart): its parent reaps it */
    if (r == 1)
        return pid;
    /* its threads still end after 2 s (a large guest's RAM on a loaded host): the caller
     * or the daemon's tick reaps it once they have, and the record goes, so that no one
     * waits for it again */
    syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
    unlink(pidfile);
    if (ending)
        *ending = pfd;
    else
        (void)bh_late_reap(pfd);
    pfd = -1;
    return 0;
}

/* A recorded process that has already ended and is our child (a QEMU that died while
 * booting, or was killed from outside): reaped, or it stays a zombie for the daemon's
 * life. */
static void reap_recorded(const char *pidfile)
{
    (void)bh_vm_pidfile_reap(pidfile, NULL, NULL);
}

static void kill_recorded(const char *pidfile, uid_t uid)
{
    pid_t pid = bh_vm_pidfile_check(pidfile, uid);
    /* just started (a Kill, or a failed start, right after the launch): still root,
     * before its drop to the qube's UID; the record (root's file in a root dir) and its
     * start time name it */
    if (pid < 0 && uid != (uid_t)-1 && uid != 0)
        pid = bh_vm_pidfile_check(pidfile, 0);
    if (pid < 0)
        reap_recorded(pidfile);
    if (pid > 0) {
        int pfd = recorded_pidfd(pidfile, pid);
        if (pfd >= 0) {
            syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
            struct pollfd pp = { .fd = pfd, .events = POLLIN };
            poll(&pp, 1, 2000);
            /* reaped if ours (we started it) and ended; if ours and not ended within the
             * bound, later, by the daemon's tick; otherwise its parent's */
            (void)bh_late_reap(pfd);
        }
    }
    unlink(pidfile);
}

int bh_vm_qemu_end(const struct bh_vm_paths *p, bool signal)
{
    int pfd = recorded_pidfd(p->qemu_pid, recorded_pid(p->qemu_pid, &(char){ 0 }));
    if (pfd < 0)
        return -1;
    if (signal)
        syscall(SYS_pidfd_send_signal, pfd, SIGKILL, NULL, 0);
    return pfd;
}

int bh_vm_cleanup(const struct bh_qube_spec *spec, const struct bh_vm_paths *p, bh_error *err)
{
    /* uid_base 0: a teardown that knows only the runtime dir (bulkhead-ns kill-all) */
    uid_t uid = spec->uid_base ? spec->uid_base : (uid_t)-1;
    kill_recorded(p->qemu_pid, uid);
    kill_recorded(p->bridge_pid, uid);
    kill_recorded(p->vfs_pid, uid); /* falls back to root's: one from before it ran as uid_base */
    kill_recorded(p->root_pid, uid);
    char tag[128];
    bh_cgroup_tag(spec, tag, sizeof tag);
    const struct bh_cgroup_ops *cg = bh_cgroup_ops();
    cg->kill_all(tag, spec->name);
    int ret = cg->destroy(tag, spec->name, err);
    while (umount2(p->vchan, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
        ;
    rmdir(p->vchan);
    static const char *const files[] = { "qmp.sock", "port.sock", "virtiofs.sock", "virtiofs-root.sock", NULL };
    for (int i = 0; files[i]; i++) {
        char f[4200];
        snprintf(f, sizeof f, "%s/%s", p->vmdir, files[i]);
        unlink(f);
    }
    while (umount2(p->mem, MNT_DETACH | UMOUNT_NOFOLLOW) == 0)
        ;
    rmdir(p->mem);
    char at[4200];
    snprintf(at, sizeof at, "%s/vfs-root", p->rt);
    rmdir(at); /* a mount point in virtiofsd's namespace only: empty on the host */
    rmdir(p->vmdir);
    unlink(p->shutdown_mark);
    /* a link change still being told to the guest ends at its next try */
    static const char *const net[] = { "net.conf", "net.lock", NULL };
    for (int i = 0; net[i]; i++) {
        char f[4200];
        snprintf(f, sizeof f, "%s/%s", p->rt, net[i]);
        unlink(f);
    }
    return ret;
}
