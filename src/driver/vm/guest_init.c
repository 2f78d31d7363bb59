/* bulkhead-vminit: PID 1 of a `vm` qube's guest kernel, from the initramfs Bulkhead
 * builds (assets.c). It puts together what the `ns` engine builds on the host, then
 * hands over to the same bulkhead-init that runs in `ns` qubes:
 *
 *   1. /dev, /proc, /sys; loads the modules listed in /modules/load (virtio, block,
 *      console, erofs, overlay, virtiofs: the cloud kernel has them as modules), in
 *      the background while the steps below wait for the ones they need;
 *   2. root: the template's erofs image (/dev/vda, read-only) under an overlay whose
 *      upper layer is a tmpfs of bh.vol MiB: every change is gone at the next start;
 *      a template or standalone (bh.root=virtiofs) mounts its own tree instead,
 *      shared writable by the host's virtiofsd (tag "root"), and keeps its changes;
 *   3. /usr: the root's own, or the host's /usr shared read-only through virtiofs
 *      (template `host`), with /usr/lib/bulkhead (our programs, from the initramfs)
 *      stacked on top read-only;
 *   4. the private ext4 image (/dev/vdb) at /rw, /home bound from /rw/home;
 *   5. switch_root; bulkhead-init runs as a child subreaper (it does not need to be
 *      PID 1) with the environment it gets in an `ns` qube, and starts the qrexec
 *      agent while the steps below run;
 *   6. the network: lo up; with a netvm, eth0 (virtio-net, on a tap the host wired to
 *      the qube's link) gets the qube's address, the gateway and the resolvers
 *      (bh.ip, bh.gw, bh.mask, bh.dns) as Qubes' vif script and qubes-network set them;
 *   7. once every module is in, the guest side of bulkhead-vchan-bridge on the
 *      virtio-serial port `bulkhead.vchan`, in /run/qubes/vchan (qrexec's directory,
 *      mirrored on the host): only from then on can the host reach the agent, so no
 *      call runs before the network is set.
 * SIGTERM (the bridge passes the host's SHUTDOWN) goes on to bulkhead-init. When it
 * exits 0 the guest powers off (QEMU exits 0: a clean stop); anything else, including
 * any failure above, ends this process, which panics the kernel: the pvpanic device
 * makes QEMU exit 1, which the host reports as Crashed.
 *
 * The kernel command line is written by the host (driver_vm.c), so it is trusted here. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <net/route.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/reboot.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define BHUSR "/bhusr" /* initramfs: lib/bulkhead/... */

static bool debug;

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "bulkhead-vminit: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (%s)\n", strerror(errno));
    va_end(ap);
    exit(1); /* PID 1 exits: kernel panic, QEMU exits 1 */
}

/* Each step of the boot, to the kernel's log (debug level: not on any console; `dmesg`
 * in the qube shows it with the kernel's timestamps). bench/vm_start.py reads it to
 * say where a start's time goes. */
static int kmsg = -1;
static void step(const char *what)
{
    if (kmsg < 0)
        kmsg = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
    char line[128];
    int n = snprintf(line, sizeof line, "<7>bulkhead-vminit: step %s\n", what);
    /* write(), not dprintf(): glibc's dprintf gives up on /dev/kmsg, whose lseek(SEEK_CUR)
     * fails, and writes nothing */
    if (kmsg >= 0 && n > 0)
        (void)!write(kmsg, line, (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
}

static void xmount(const char *src, const char *dst, const char *type, unsigned long fl, const char *data)
{
    if (mkdir(dst, 0755) < 0 && errno != EEXIST && errno != EROFS)
        fail("mkdir %s", dst);
    if (mount(src, dst, type, fl, data) < 0)
        fail("mount %s on %s", type ? type : src, dst);
}

static char cmdline[4096];
static const char *param(const char *key, const char *def)
{
    static char val[16][256];
    static int slot;
    size_t kl = strlen(key);
    for (char *p = cmdline; *p;) {
        while (*p == ' ')
            p++;
        if (!strncmp(p, key, kl) && p[kl] == '=') {
            char *v = val[slot++ % 16];
            size_t n = strcspn(p + kl + 1, " \n");
            snprintf(v, 256, "%.*s", (int)n, p + kl + 1);
            return v;
        }
        p += strcspn(p, " ");
    }
    return def;
}

/* ---- kernel modules, loaded in the background ----
 * The cloud kernel has virtio, erofs, overlay, virtiofs, ... as modules. Under TCG each
 * load costs tens of milliseconds (its devices probed, its code relocated), and one
 * after another they took ~0.5 s of the boot. So a thread loads them in the
 * background, each module once every module it needs is in, while the main thread
 * goes on and waits only for the ones its next step needs (module_wait): the network
 * card's and pvpanic's modules load while the disks are mounted. The host wrote the
 * list into the initramfs (/modules/load: "FILE DEPS" per line, dependencies first,
 * DEPS the names of the modules it needs or "-"; assets.c), with the modules'
 * signatures taken off: reading every module here for its .modinfo took ~0.1 s before
 * the first load, and checking a signature ~10-40 ms per module. A module that fails
 * to load fails the boot as before. */
#define MODS_MAX 32
#define MOD_DEPS 8
static struct mod {
    char file[64], name[64];
    int deps[MOD_DEPS], ndeps;
    int state; /* 0 waiting, 1 loading, 2 loaded */
} mods[MODS_MAX];
static int nmods;
/* the initramfs's /modules: the last loads may come after switch_root, when that path
 * names nothing */
static int mods_dir = -1;
static pthread_mutex_t mod_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t mod_cond = PTHREAD_COND_INITIALIZER;

static void mod_name(char *out, size_t n, const char *s, size_t len)
{
    snprintf(out, n, "%.*s", (int)len, s);
    for (char *c = out; *c; c++)
        if (*c == '-')
            *c = '_';
}

/* DEPS of a /modules/load line: names of earlier modules (the list has dependencies
 * first; a name not in it is built into the kernel) */
static void mod_deps(struct mod *m, const char *deps)
{
    for (const char *d = deps; *d && strcmp(d, "-");) {
        size_t l = strcspn(d, ",");
        char dn[64];
        mod_name(dn, sizeof dn, d, l);
        for (int i = 0; i < nmods; i++)
            if (!strcmp(mods[i].name, dn) && m->ndeps < MOD_DEPS)
                m->deps[m->ndeps++] = i;
        d += l + (d[l] == ',');
    }
}

static void *mod_worker(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&mod_lock);
    for (;;) {
        int pick = -1, left = 0;
        for (int i = 0; i < nmods && pick < 0; i++) {
            if (mods[i].state != 0)
                continue;
            left++;
            bool ready = true;
            for (int k = 0; k < mods[i].ndeps; k++)
                ready = ready && mods[mods[i].deps[k]].state == 2;
            if (ready)
                pick = i;
        }
        if (pick < 0 && !left)
            break;
        if (pick < 0) {
            pthread_cond_wait(&mod_cond, &mod_lock);
            continue;
        }
        mods[pick].state = 1;
        pthread_mutex_unlock(&mod_lock);
        int fd = openat(mods_dir, mods[pick].file, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (syscall(SYS_finit_module, fd, "", 0) < 0 && errno != EEXIST))
            fail("loading %s", mods[pick].file);
        close(fd);
        pthread_mutex_lock(&mod_lock);
        mods[pick].state = 2;
        pthread_cond_broadcast(&mod_cond);
    }
    pthread_mutex_unlock(&mod_lock);
    return NULL;
}

static void modules_start(void)
{
    mods_dir = open("/modules", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    FILE *f = mods_dir >= 0 ? fopen("/modules/load", "re") : NULL;
    if (!f)
        return;
    char line[768];
    while (nmods < MODS_MAX && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        char *deps = strchr(line, ' ');
        if (deps)
            *deps++ = '\0';
        size_t l = strlen(line);
        if (l < 4 || l >= sizeof mods[0].file || strcmp(line + l - 3, ".ko"))
            continue;
        struct mod *m = &mods[nmods];
        snprintf(m->file, sizeof m->file, "%s", line);
        mod_name(m->name, sizeof m->name, line, l - 3);
        mod_deps(m, deps ? deps : "-");
        nmods++;
    }
    fclose(f);
    /* one loader per vCPU that the main thread leaves, at most 2: two loaders on a
     * 2-vCPU guest made /init to bulkhead-init 0.63-0.87 s -> 1.10-1.50 s (3 boots
     * each, alternated, TCG, load 8): loads serialise in the kernel and fight over
     * the vCPUs */
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    int nth = cpus > 2 ? 2 : 1;
    for (int i = 0; i < nth; i++) {
        pthread_t t;
        if (pthread_create(&t, NULL, mod_worker, NULL) != 0)
            fail("starting the module loader");
        pthread_detach(t);
    }
}

/* Waits until the module (by name, e.g. "virtio_blk"; NULL: every one) is loaded. */
static void module_wait(const char *name)
{
    pthread_mutex_lock(&mod_lock);
    for (;;) {
        bool done = true;
        for (int i = 0; i < nmods; i++)
            if ((!name || !strcmp(mods[i].name, name)) && mods[i].state != 2)
                done = false;
        if (done)
            break;
        pthread_cond_wait(&mod_cond, &mod_lock);
    }
    pthread_mutex_unlock(&mod_lock);
}

static void wait_for(const char *path)
{
    for (int i = 0; i < 1000; i++) { /* devtmpfs fills in as the drivers probe */
        if (access(path, F_OK) == 0)
            return;
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    errno = ENOENT;
    fail("waiting for %s", path);
}

/* /dev/vdX of the virtio disk whose serial the host set (device order is not fixed) */
static void find_disk(const char *serial, char *out, size_t n)
{
    for (int i = 0; i < 1000; i++) {
        for (char c = 'a'; c <= 'h'; c++) {
            char path[64], buf[64] = "";
            snprintf(path, sizeof path, "/sys/block/vd%c/serial", c);
            int fd = open(path, O_RDONLY | O_CLOEXEC);
            if (fd < 0)
                continue;
            ssize_t r = read(fd, buf, sizeof buf - 1);
            close(fd);
            if (r > 0 && !strncmp(buf, serial, strlen(serial))) {
                snprintf(out, n, "/dev/vd%c", c);
                wait_for(out);
                return;
            }
        }
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    errno = ENOENT;
    fail("no disk with serial %s", serial);
}

/* /dev/vportNpM of the virtio-serial port with this name (no udev for the symlink) */
static void find_port(const char *name, char *out, size_t n)
{
    for (int i = 0; i < 1000; i++) {
        for (int d = 0; d < 4; d++)
            for (int p = 0; p < 4; p++) {
                char path[96], buf[64] = "";
                snprintf(path, sizeof path, "/sys/class/virtio-ports/vport%dp%d/name", d, p);
                int fd = open(path, O_RDONLY | O_CLOEXEC);
                if (fd < 0)
                    continue;
                ssize_t r = read(fd, buf, sizeof buf - 1);
                close(fd);
                if (r > 0 && !strncmp(buf, name, strlen(name)) && (buf[strlen(name)] == '\n' || !buf[strlen(name)])) {
                    snprintf(out, n, "/dev/vport%dp%d", d, p);
                    wait_for(out);
                    return;
                }
            }
        nanosleep(&(struct timespec){ 0, 10 * 1000 * 1000 }, NULL);
    }
    errno = ENOENT;
    fail("no virtio-serial port %s", name);
}

/* Starts the guest side of the vchan bridge and returns once it runs (it has exec'd).
 *
 * Everything the child needs is opened before the fork: the port here, the vchan
 * directory and the program (dirfd, exe) before switch_root. The child works only
 * through fds (a child that once looked up "/newroot/run/qubes/vchan" by name while
 * the parent moved /newroot to / found nothing in about one boot in ten under TCG on
 * a loaded host, and the qube never became ready: docs/vm-engine.md), and the parent
 * waits for its exec (a close-on-exec pipe that carries the errno of a failure), so a
 * bridge that cannot start fails the boot at once instead of leaving a qube without
 * qrexec. */
static pid_t start_bridge(const char *port, int dirfd, int exe)
{
    /* close-on-exec: bulkhead-init and everything in the qube must not hold these
     * (a process reading the port would steal the host's frames) */
    int portfd = open(port, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (portfd < 0)
        fail("open %s", port);
    int sync[2];
    if (pipe2(sync, O_CLOEXEC) < 0)
        fail("preparing the vchan bridge");
    char portarg[16];
    snprintf(portarg, sizeof portarg, "%d", portfd);
    /* a test knob (kernelopts): a slow child must still be waited for */
    long delay_ms = atol(param("bh.bridge_delay_ms", "0"));
    pid_t pid = fork();
    if (pid < 0)
        fail("fork");
    if (pid == 0) {
        close(sync[0]);
        if (delay_ms > 0 && delay_ms <= 60000) /* the tests hold a boot 30 s */
            nanosleep(&(struct timespec){ delay_ms / 1000, (delay_ms % 1000) * 1000000 }, NULL);
        if (fchdir(dirfd) == 0 && fcntl(portfd, F_SETFD, 0) == 0) {
            char *argv[] = { "bulkhead-vchan-bridge", "--guest", "--dir", ".", "--port-fd", portarg,
                             debug ? "--trace" : NULL, NULL };
            char *envp[] = { NULL };
            fexecve(exe, argv, envp);
        }
        int e = errno;
        (void)!write(sync[1], &e, sizeof e);
        _exit(127);
    }
    close(sync[1]);
    int e = 0;
    ssize_t r;
    while ((r = read(sync[0], &e, sizeof e)) < 0 && errno == EINTR)
        ;
    if (r > 0) {
        errno = e;
        fail("starting the vchan bridge");
    }
    close(sync[0]);
    close(portfd);
    return pid;
}

/* ---- the guest's network (bh.ip, bh.gw, bh.mask from the host) ----
 * As Qubes' vif script and qubes-network do in a Qubes VM: the qube's address on eth0
 * with its netmask (/32), a host route to the gateway on the link, the default route
 * through it, and the gateway's MAC set once for all: every netvm's end of a link has
 * fe:ff:ff:ff:ff:ff (as in Qubes), so when the host re-plugs the qube into another
 * netvm while it runs (`netvm` changed; the new gateway has another address) frames
 * still go to whichever netvm is at the other end, which routes them by their
 * destination: the guest needs no word of the change. Plain ioctls: no netlink
 * library in this static program. */
static int ifreq_op(int s, unsigned long op, const char *dev, const char *ip)
{
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
    sin->sin_family = AF_INET;
    if (inet_pton(AF_INET, ip, &sin->sin_addr) != 1) {
        errno = EINVAL;
        return -1;
    }
    return ioctl(s, op, &ifr);
}

static int link_up(int s, const char *dev)
{
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "%s", dev);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        return -1;
    ifr.ifr_flags |= IFF_UP;
    return ioctl(s, SIOCSIFFLAGS, &ifr);
}

static int route_add(int s, const char *dst, const char *mask, const char *gw, const char *dev)
{
    struct rtentry rt = { 0 };
    struct sockaddr_in *d = (struct sockaddr_in *)&rt.rt_dst, *m = (struct sockaddr_in *)&rt.rt_genmask,
                       *g = (struct sockaddr_in *)&rt.rt_gateway;
    d->sin_family = m->sin_family = g->sin_family = AF_INET;
    if (inet_pton(AF_INET, dst, &d->sin_addr) != 1 || inet_pton(AF_INET, mask, &m->sin_addr) != 1 ||
        (gw && inet_pton(AF_INET, gw, &g->sin_addr) != 1)) {
        errno = EINVAL;
        return -1;
    }
    rt.rt_flags = RTF_UP | (gw ? RTF_GATEWAY : RTF_HOST);
    rt.rt_dev = (char *)dev;
    return ioctl(s, SIOCADDRT, &rt);
}

static void write_proc(const char *path, const char *val)
{
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
        (void)!write(fd, val, strlen(val));
        close(fd);
    }
}

/* The gateway's MAC as a permanent IPv6 neighbour: no ioctl does that, so one
 * rtnetlink request by hand (no library in this static program). */
static int neigh6_permanent(int ifindex, const struct in6_addr *dst, const uint8_t mac[6])
{
    struct {
        struct nlmsghdr n;
        struct ndmsg nd;
        char attrs[64];
    } req = { 0 };
    req.n.nlmsg_len = NLMSG_LENGTH(sizeof req.nd);
    req.n.nlmsg_type = RTM_NEWNEIGH;
    req.n.nlmsg_flags = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE | NLM_F_ACK;
    req.nd.ndm_family = AF_INET6;
    req.nd.ndm_ifindex = ifindex;
    req.nd.ndm_state = NUD_PERMANENT;
    const struct { unsigned short type, len; const void *data; } at[] = { { NDA_DST, 16, dst }, { NDA_LLADDR, 6, mac } };
    for (int i = 0; i < 2; i++) {
        struct rtattr *ra = (struct rtattr *)((char *)&req + NLMSG_ALIGN(req.n.nlmsg_len));
        ra->rta_type = at[i].type;
        ra->rta_len = (unsigned short)RTA_LENGTH(at[i].len);
        memcpy(RTA_DATA(ra), at[i].data, at[i].len);
        req.n.nlmsg_len = NLMSG_ALIGN(req.n.nlmsg_len) + RTA_ALIGN(ra->rta_len);
    }
    int s = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_ROUTE);
    if (s < 0)
        return -1;
    char buf[512];
    ssize_t r = -1;
    if (send(s, &req, req.n.nlmsg_len, 0) == (ssize_t)req.n.nlmsg_len)
        r = recv(s, buf, sizeof buf, 0);
    close(s);
    const struct nlmsghdr *h = (const struct nlmsghdr *)buf;
    if (r < (ssize_t)NLMSG_LENGTH(sizeof(struct nlmsgerr)) || h->nlmsg_type != NLMSG_ERROR)
        return errno = EIO, -1;
    int e = ((const struct nlmsgerr *)NLMSG_DATA(h))->error;
    return e ? (errno = -e, -1) : 0;
}

/* Routed IPv6 (Qubes' `ipv6` feature; bh.ip6, bh.gw6), as the host sets up an `ns`
 * qube's end of the link: on eth0 only, no link-local address, no DAD, router
 * advertisement or autoconfiguration; ip6/128, a host route to the gateway, the
 * default route through it, the gateway's MAC permanent (which also keeps a live
 * netvm change working, as for IPv4). */
static void setup_ipv6(void)
{
    const char *ip6 = param("bh.ip6", NULL), *gw6 = param("bh.gw6", NULL);
    if (!ip6 || !gw6)
        return;
    static const char *const off[] = { "addr_gen_mode", "1", "accept_dad", "0", "accept_ra", "0",
                                       "autoconf", "0", "disable_ipv6", "0", NULL };
    for (int i = 0; off[i]; i += 2) {
        char path[96];
        snprintf(path, sizeof path, "/proc/sys/net/ipv6/conf/eth0/%s", off[i]);
        write_proc(path, off[i + 1]);
    }
    struct { /* struct in6_ifreq of <linux/ipv6.h>, which clashes with libc's headers */
        struct in6_addr addr;
        uint32_t prefixlen;
        int ifindex;
    } ifr = { .prefixlen = 128, .ifindex = (int)if_nametoindex("eth0") };
    struct in6_rtmsg host = { .rtmsg_dst_len = 128, .rtmsg_metric = 1, .rtmsg_flags = RTF_UP | RTF_HOST,
                              .rtmsg_ifindex = ifr.ifindex },
                     def = { .rtmsg_metric = 1, .rtmsg_flags = RTF_UP | RTF_GATEWAY, .rtmsg_ifindex = ifr.ifindex };
    if (inet_pton(AF_INET6, ip6, &ifr.addr) != 1 || inet_pton(AF_INET6, gw6, &host.rtmsg_dst) != 1)
        fail("bad IPv6 address");
    def.rtmsg_gateway = host.rtmsg_dst;
    const uint8_t mac[6] = { 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff };
    int s = socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0 || ioctl(s, SIOCSIFADDR, &ifr) < 0)
        fail("IPv6 address %s on eth0", ip6);
    if (neigh6_permanent(ifr.ifindex, &host.rtmsg_dst, mac) < 0)
        fail("the IPv6 gateway's MAC");
    if (ioctl(s, SIOCADDRT, &host) < 0 || ioctl(s, SIOCADDRT, &def) < 0)
        fail("IPv6 routes through %s", gw6);
    close(s);
}

/* eth0 from bh.ip, bh.gw, bh.mask (and bh.ip6, bh.gw6) */
static void setup_link(int s)
{
    const char *ip = param("bh.ip", NULL), *gw = param("bh.gw", NULL);
    const char *mask = param("bh.mask", "255.255.255.255");
    /* the address, its mask, and no broadcast (SIOCSIFADDR sets a classful one;
     * `ip addr add IP/32` as Qubes does sets none) */
    if (ifreq_op(s, SIOCSIFADDR, "eth0", ip) < 0 || ifreq_op(s, SIOCSIFNETMASK, "eth0", mask) < 0 ||
        ifreq_op(s, SIOCSIFBRDADDR, "eth0", "0.0.0.0") < 0)
        fail("address %s on eth0", ip);
    if (link_up(s, "eth0") < 0)
        fail("bringing up eth0");
    struct arpreq ar = { 0 };
    struct sockaddr_in *pa = (struct sockaddr_in *)&ar.arp_pa;
    pa->sin_family = AF_INET;
    if (inet_pton(AF_INET, gw, &pa->sin_addr) != 1)
        fail("bad gateway %s", gw);
    ar.arp_ha.sa_family = ARPHRD_ETHER;
    memset(ar.arp_ha.sa_data, 0xff, 6);
    ar.arp_ha.sa_data[0] = (char)0xfe;
    ar.arp_flags = ATF_PERM | ATF_COM;
    snprintf(ar.arp_dev, sizeof ar.arp_dev, "eth0");
    if (ioctl(s, SIOCSARP, &ar) < 0)
        fail("the gateway's MAC");
    if (route_add(s, gw, "255.255.255.255", NULL, "eth0") < 0 || route_add(s, "0.0.0.0", "0.0.0.0", gw, "eth0") < 0)
        fail("routes through %s", gw);
    setup_ipv6();
}

static void setup_network(void)
{
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        fail("socket");
    if (link_up(s, "lo") < 0)
        fail("bringing up lo");
    /* the qubes' network is IPv4 only (the netvm drops IPv6 in any case) */
    write_proc("/proc/sys/net/ipv6/conf/all/disable_ipv6", "1");
    write_proc("/proc/sys/net/ipv6/conf/default/disable_ipv6", "1");
    /* ping as the qube's normal user, as in an `ns` qube and in Qubes */
    write_proc("/proc/sys/net/ipv4/ping_group_range", "0 2147483647");
    /* no netvm: the card stays down, without address or routes, until one is set
     * while the qube runs (net_update) */
    if (param("bh.ip", NULL) && param("bh.gw", NULL)) {
        wait_for("/sys/class/net/eth0");
        setup_link(s);
    }
    close(s);
}

/* bulkhead-vminit --net [bh.ip=... bh.gw=... bh.mask=... bh.ip6=... bh.gw6=...], run
 * as root in a running qube by the host (the vm engine's net_changed, over qrexec)
 * when its netvm was set, changed or removed: the guest's view of its link follows,
 * as a Qubes VM's does when its vif is re-attached with new qubesdb values. The link
 * goes down first, which drops its routes, neighbours and IPv6 addresses; then it is
 * set up from the new values as at boot. No values: it stays down (no netvm). */
static int net_update(int argc, char **argv)
{
    size_t off = 0;
    for (int i = 0; i < argc; i++) {
        size_t l = strlen(argv[i]);
        if (strncmp(argv[i], "bh.", 3) || off + l + 2 > sizeof cmdline)
            return fprintf(stderr, "bulkhead-vminit --net: bad argument\n"), 2;
        memcpy(cmdline + off, argv[i], l);
        off += l;
        cmdline[off++] = ' ';
    }
    cmdline[off] = '\0';
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        fail("socket");
    struct ifreq ifr = { 0 };
    snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "eth0");
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        fail("eth0");
    ifr.ifr_flags &= ~IFF_UP;
    if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
        fail("taking eth0 down");
    if (param("bh.ip", NULL) && param("bh.gw", NULL))
        setup_link(s);
    close(s);
    return 0;
}

/* The private volume (the disk whose serial is arg) at /newroot/rw, /home bound from
 * /rw/home; a failure ends the boot as any other (fail: exit). */
static void *mount_private(void *arg)
{
    char dev[64];
    find_disk(arg, dev, sizeof dev);
    xmount(dev, "/newroot/rw", "ext4", MS_NODEV | MS_NOSUID, NULL);
    mkdir("/newroot/rw/home", 0755);
    xmount("/newroot/rw/home", "/newroot/home", NULL, MS_BIND, NULL);
    return NULL;
}

static volatile sig_atomic_t term;
static void on_term(int sig) { (void)sig; term = 1; }

int main(int argc, char **argv)
{
    if (getpid() != 1) /* the host's word to a running qube (net_update) */
        return argc >= 2 && !strcmp(argv[1], "--net") ? net_update(argc - 2, argv + 2) : 2;
    xmount("devtmpfs", "/dev", "devtmpfs", MS_NOSUID, "mode=0755");
    xmount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    xmount("sysfs", "/sys", "sysfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL);
    /* Without a console (no serial port unless debug) the kernel starts us with fds
     * 0-2 closed, and the next files opened would take them: fill them first. */
    int con = open("/dev/console", O_RDWR);
    if (con < 0)
        con = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3 && con >= 0; fd++)
        if (fd != con)
            dup2(con, fd);
    if (con > 2)
        close(con);
    int cfd = open("/proc/cmdline", O_RDONLY);
    ssize_t cl = cfd >= 0 ? read(cfd, cmdline, sizeof cmdline - 1) : -1;
    if (cl < 0)
        fail("reading /proc/cmdline");
    close(cfd);
    debug = param("bh.debug", NULL) != NULL;
    step("start");
    modules_start();

    char opts[512];
    /* root: template image + throwaway upper on a tmpfs */
    snprintf(opts, sizeof opts, "size=%sm,mode=0755", param("bh.vol", "1024"));
    xmount("volatile", "/vol", "tmpfs", MS_NOSUID | MS_NODEV, opts);
    mkdir("/vol/root", 0755);
    mkdir("/vol/rwork", 0755);
    mkdir("/vol/usr", 0755);
    mkdir("/vol/uwork", 0755);
    char dev[64];
    /* a template's or standalone's own root: its tree on the host, shared writable
     * through virtiofs (tag "root"); what the guest changes there stays */
    bool own_root = !strcmp(param("bh.root", "image"), "virtiofs");
    module_wait("virtio_blk");
    module_wait("overlay");
    if (own_root) {
        module_wait("virtiofs");
        xmount("root", "/newroot", "virtiofs", 0, NULL);
    } else {
        module_wait("erofs");
        find_disk("bhroot", dev, sizeof dev);
        xmount(dev, "/lower", "erofs", MS_RDONLY, NULL);
        xmount("overlay", "/newroot", "overlay", 0, "lowerdir=/lower,upperdir=/vol/root,workdir=/vol/rwork");
    }
    step("root mounted");
    /* the private volume in a second thread, while this one mounts /usr (virtiofs: a
     * round trip to the host's virtiofsd) and the tmpfs's: both waited one after the
     * other before; joined before switch_root moves /newroot */
    pthread_t priv_thread;
    static char priv[64]; /* its own copy: param()'s buffers are reused */
    snprintf(priv, sizeof priv, "%s", param("bh.priv", ""));
    if (*priv && pthread_create(&priv_thread, NULL, mount_private, priv) != 0)
        fail("starting the private volume's mount");
    /* /usr: ours on top of the host's (read-only) or the template's (throwaway) */
    if (!strcmp(param("bh.usr", "root"), "virtiofs")) {
        module_wait("virtiofs");
        xmount("usr", "/hostusr", "virtiofs", MS_RDONLY | MS_NODEV | MS_NOSUID, NULL);
        xmount("overlay", "/newroot/usr", "overlay", MS_RDONLY | MS_NODEV, "lowerdir=" BHUSR ":/hostusr");
    } else if (own_root) {
        /* the root's own /usr stays writable (the template installs software there);
         * only our programs' directory is bound over, read-only */
        mkdir("/newroot/usr", 0755);
        mkdir("/newroot/usr/lib", 0755);
        /* our mount point; anything else of that name (a link the template's root
         * left there would be followed into this initramfs) goes */
        struct stat st;
        if (lstat("/newroot/usr/lib/bulkhead", &st) == 0 && !S_ISDIR(st.st_mode))
            unlink("/newroot/usr/lib/bulkhead");
        xmount(BHUSR "/lib/bulkhead", "/newroot/usr/lib/bulkhead", NULL, MS_BIND, NULL);
        xmount(NULL, "/newroot/usr/lib/bulkhead", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NODEV | MS_NOSUID, NULL);
    } else {
        xmount("overlay", "/newroot/usr", "overlay", MS_NODEV,
               "lowerdir=" BHUSR ":/newroot/usr,upperdir=/vol/usr,workdir=/vol/uwork");
    }
    step("usr mounted");
    xmount("run", "/newroot/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=64m");
    xmount("tmp", "/newroot/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    mkdir("/newroot/run/qubes", 0755);
    xmount("vchan", "/newroot/run/qubes/vchan", "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=64k");
    if (*priv && pthread_join(priv_thread, NULL) != 0)
        fail("the private volume's mount");
    step("private mounted");
    const char *name = param("bh.name", "qube");
    sethostname(name, strlen(name));
    /* what the guest's vchan bridge will need, opened while their paths are these */
    int vchan_dir = open("/newroot/run/qubes/vchan", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int bridge_exe = open(BHUSR "/lib/bulkhead/bulkhead-vchan-bridge", O_PATH | O_CLOEXEC);
    if (vchan_dir < 0 || bridge_exe < 0)
        fail("preparing the vchan bridge");

    /* switch_root */
    xmount("/dev", "/newroot/dev", NULL, MS_MOVE, NULL);
    xmount("/proc", "/newroot/proc", NULL, MS_MOVE, NULL);
    xmount("/sys", "/newroot/sys", NULL, MS_MOVE, NULL);
    mkdir("/newroot/dev/pts", 0755);
    mount("devpts", "/newroot/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620");
    mkdir("/newroot/dev/shm", 01777);
    mount("shm", "/newroot/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777");
    if (chdir("/newroot") < 0 || mount(".", "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0 || chdir("/") < 0)
        fail("switch_root");
    struct sigaction sa = { .sa_handler = on_term };
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGPWR, &sa, NULL);
    pid_t init = fork();
    if (init == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGTERM, SIG_DFL);
        setsid();
        prctl(PR_SET_CHILD_SUBREAPER, 1);
        int nul = open("/dev/null", O_RDWR);
        dup2(nul, 0);
        if (!debug) {
            dup2(nul, 1);
            dup2(nul, 2);
        }
        char qid[64], user[128], qname[128], dns[300] = "BULKHEAD_DNS=";
        /* the resolvers (Qubes' virtual 10.139.1.1/2), written to /etc/resolv.conf by
         * bulkhead-init as in an `ns` qube; none without a network card */
        const char *d = param("bh.ip", NULL) ? param("bh.dns", NULL) : NULL;
        for (size_t i = strlen(dns); d && *d && i + 1 < sizeof dns; d++)
            dns[i++] = *d == ',' ? ' ' : *d, dns[i] = '\0';
        snprintf(qid, sizeof qid, "BULKHEAD_QID=%s", param("bh.qid", "0"));
        snprintf(user, sizeof user, "BULKHEAD_USER=%s", param("bh.user", "user"));
        snprintf(qname, sizeof qname, "BULKHEAD_QUBE=%s", name);
        char *envp[] = { qid, user, qname, dns, "VCHAN_SOCKET_DIR=/run/qubes/vchan",
                         "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", NULL };
        char *argv[] = { "bulkhead-init", NULL };
        execve("/usr/lib/bulkhead/bulkhead-init", argv, envp);
        _exit(127);
    }
    if (init < 0)
        fail("fork");
    step("bulkhead-init forked");
    /* bulkhead-init starts the qrexec agent (a dynamic program: its exec and start
     * under TCG take ~0.1 s) while the last modules load and the network is set up;
     * nothing reaches the qube before its bridge runs, so no call sees it without its
     * network (/init to the bridge: 0.38-0.43 s with the agent after it) */
    setup_network();
    step("network set");
    /* every module in (pvpanic too: a panic from here on is reported) */
    module_wait(NULL);
    step("modules loaded");
    char port[64];
    find_port("bulkhead.vchan", port, sizeof port);
    pid_t bridge = start_bridge(port, vchan_dir, bridge_exe);
    close(vchan_dir);
    close(bridge_exe);
    step("bridge started");
    if (kmsg >= 0)
        close(kmsg), kmsg = -1;
    for (;;) {
        if (term) { /* also one that came while the network and the bridge were set up */
            kill(init, SIGTERM);
            term = 0;
        }
        int st;
        pid_t p = waitpid(-1, &st, 0);
        if (p < 0 && errno == EINTR)
            continue;
        if (p == init) {
            sync();
            if (WIFEXITED(st) && WEXITSTATUS(st) == 0) {
                if (bridge > 0)
                    kill(bridge, SIGKILL);
                reboot(RB_POWER_OFF);
            }
            errno = 0;
            fail("bulkhead-init ended with status %d", st);
        }
        if (p == bridge && bridge > 0) {
            /* the qube keeps running but is unreachable over qrexec: say so where the
             * guest's log and a debug console show it */
            int k = open("/dev/kmsg", O_WRONLY | O_CLOEXEC);
            if (k >= 0) {
                char line[128];
                int n = snprintf(line, sizeof line,
                                 "<3>bulkhead-vminit: the vchan bridge ended (status %d): no qrexec from now on\n", st);
                (void)!write(k, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : 0); /* not dprintf: see step() */
                close(k);
            }
            bridge = -1;
        }
        if (p < 0)
            nanosleep(&(struct timespec){ 0, 100 * 1000 * 1000 }, NULL);
    }
}
