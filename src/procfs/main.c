/* bulkhead-procfs: one per ns qube, the server of a FUSE filesystem whose files the ns
 * engine binds over the qube's /proc/uptime, /proc/stat, /proc/softirqs,
 * /proc/interrupts, /proc/vmstat, /proc/schedstat and /proc/pressure/{cpu,io,memory} (what they show:
 * render.h). The engine starts it as host root with
 * the /dev/fuse fd of the mount it is about to make and a pipe it writes to once that
 * mount exists; it opens its inputs (the host's /proc files, the qube's cgroup CPU
 * accounting), reads their state at the qube's start, then drops to a host UID of its
 * own (no capabilities, no_new_privs, undumpable) under an allowlist seccomp filter
 * that has no open, socket, fork or exec: a qube that finds a bug here holds an
 * unprivileged process that can read these host files and nothing else.
 *
 * It serves one qube only, so it never has to tell readers apart, and it lives as long
 * as the qube's mount: when the qube's last process is gone the kernel ends the FUSE
 * connection and the loop returns.
 *
 * usage: bulkhead-procfs --id UID --owner UID --boot-offset SECONDS [--cpu FILE]
 *        (fd 3: /dev/fuse, fd 4: the go pipe) */
#define FUSE_USE_VERSION 34
#include "render.h"
#include "buf.h"
#include "confine.h"
#include "host_ids.h"
#include <errno.h>
#include <fcntl.h>
#include <fuse_lowlevel.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define FUSE_FD 3
#define GO_FD 4
#define MAX_INPUT (1u << 20)   /* a host /proc file larger than this is cut: fails the open */
#define MAX_HANDLES 64         /* files open at once; more: ENFILE (bounds our memory) */

enum { INO_ROOT = 1, INO_UPTIME, INO_STAT, INO_SOFTIRQS, INO_INTERRUPTS, INO_VMSTAT, INO_SCHEDSTAT,
       INO_PRESSURE_CPU, INO_PRESSURE_IO, INO_PRESSURE_MEMORY, INO_END };
/* The names in this filesystem; the engine binds each over /proc/<name> ('-' for '/':
 * pressure-cpu is /proc/pressure/cpu; src/driver/ns/procfs.c). */
static const char *const names[] = { [INO_UPTIME] = "uptime", [INO_STAT] = "stat", [INO_SOFTIRQS] = "softirqs",
                                     [INO_INTERRUPTS] = "interrupts", [INO_VMSTAT] = "vmstat",
                                     [INO_SCHEDSTAT] = "schedstat", [INO_PRESSURE_CPU] = "pressure-cpu",
                                     [INO_PRESSURE_IO] = "pressure-io", [INO_PRESSURE_MEMORY] = "pressure-memory" };

static struct {
    int stat_fd, softirqs_fd, interrupts_fd, cpu_fd;
    int host_fd[INO_END]; /* the host's file of a zeroed one (vmstat...), -1 if it has none */
    bool cpu_v2;
    uint64_t btime;
    long long boot_offset;
    uid_t owner;
    unsigned hz;
    struct bh_pf_cpu cpus[BH_PF_MAX_CPUS];
    bh_buf open_files[MAX_HANDLES];
    bool used[MAX_HANDLES], read_before[MAX_HANDLES];
} S;

/* The whole of a /proc or cgroup file, read again from its start (seq files render
 * afresh at offset 0). NUL-terminated; NULL on failure. */
static char *reread(int fd)
{
    bh_buf b;
    bh_buf_init(&b, MAX_INPUT);
    if (lseek(fd, 0, SEEK_SET) < 0)
        return NULL;
    for (;;) {
        if (bh_buf_reserve(&b, 8192) < 0) {
            bh_buf_free(&b);
            return NULL;
        }
        ssize_t n = read(fd, b.data + b.len, b.cap - b.len - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            bh_buf_free(&b);
            return NULL;
        }
        if (n == 0)
            break;
        b.len += (size_t)n;
    }
    return bh_buf_steal(&b);
}

static uint64_t age_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_BOOTTIME, &t);
    long long s = (long long)t.tv_sec + S.boot_offset;
    return s < 0 ? 0 : (uint64_t)s * 1000000000ull + (uint64_t)t.tv_nsec;
}

static int render(fuse_ino_t ino, bh_buf *out)
{
    if (ino >= INO_VMSTAT && ino < INO_END) {
        char *cur = S.host_fd[ino] >= 0 ? reread(S.host_fd[ino]) : NULL;
        int r = !cur ? -1
                : ino >= INO_PRESSURE_CPU ? bh_pf_render_pressure(out, cur)
                                          : bh_pf_render_counts_zeroed(out, cur);
        free(cur);
        return r;
    }
    if (ino == INO_SOFTIRQS || ino == INO_INTERRUPTS) {
        char *cur = reread(ino == INO_SOFTIRQS ? S.softirqs_fd : S.interrupts_fd);
        int r = cur ? bh_pf_render_zeroed(out, cur) : -1;
        free(cur);
        return r;
    }
    char *st = reread(S.stat_fd);
    if (!st)
        return -1;
    unsigned list[BH_PF_MAX_CPUS], n = bh_pf_stat_cpus(st, list, BH_PF_MAX_CPUS), ncpu = 0;
    for (unsigned i = 0; i < n; i++)
        if (list[i] + 1 > ncpu)
            ncpu = list[i] + 1;
    /* The qube's CPU use; without cgroup CPU accounting every CPU shows as idle. */
    memset(S.cpus, 0, sizeof S.cpus);
    char *cpu = S.cpu_fd >= 0 ? reread(S.cpu_fd) : NULL;
    if (cpu)
        (void)(S.cpu_v2 ? bh_pf_parse_cpu_stat(cpu, S.cpus, ncpu) : bh_pf_parse_usage_all(cpu, S.cpus, ncpu));
    free(cpu);
    struct bh_pf_view v = { .age_ns = age_ns(), .btime = S.btime, .hz = S.hz, .cpus = S.cpus, .ncpu = ncpu };
    int r = ino == INO_STAT ? bh_pf_render_stat(out, st, &v) : bh_pf_render_uptime(out, st, &v);
    free(st);
    return r;
}

static void attr_of(fuse_ino_t ino, struct stat *st)
{
    memset(st, 0, sizeof *st);
    st->st_ino = ino;
    st->st_mode = ino == INO_ROOT ? S_IFDIR | 0555 : S_IFREG | 0444;
    st->st_nlink = ino == INO_ROOT ? 2 : 1;
    st->st_uid = S.owner;
    st->st_gid = S.owner;
    clock_gettime(CLOCK_REALTIME, &st->st_mtim);
    st->st_atim = st->st_ctim = st->st_mtim;
}

static void pf_init(void *ud, struct fuse_conn_info *conn)
{
    (void)ud;
    /* plain read/writev on /dev/fuse only (the filter allows no splice or pipes) */
    conn->want &= ~(unsigned)(FUSE_CAP_SPLICE_READ | FUSE_CAP_SPLICE_WRITE | FUSE_CAP_SPLICE_MOVE);
}

static void pf_lookup(fuse_req_t req, fuse_ino_t parent, const char *name)
{
    for (fuse_ino_t i = INO_UPTIME; parent == INO_ROOT && i < INO_END; i++) {
        if (!strcmp(name, names[i]) && (i < INO_VMSTAT || S.host_fd[i] >= 0)) {
            struct fuse_entry_param e = { .ino = i, .attr_timeout = 86400, .entry_timeout = 86400 };
            attr_of(i, &e.attr);
            fuse_reply_entry(req, &e);
            return;
        }
    }
    fuse_reply_err(req, ENOENT);
}

static void pf_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)fi;
    struct stat st;
    if (ino < INO_ROOT || ino >= INO_END) {
        fuse_reply_err(req, ENOENT);
        return;
    }
    attr_of(ino, &st);
    fuse_reply_attr(req, &st, 86400);
}

/* The text is made at open and again at each later read from offset 0, as the kernel's
 * seq files do: a reader that reads in small pieces sees one consistent snapshot, never
 * a line torn between two, and one that keeps the file open and seeks back to 0 before
 * each read (top, vmstat) sees fresh figures. */
static void pf_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    if (ino <= INO_ROOT || ino >= INO_END) {
        fuse_reply_err(req, ino == INO_ROOT ? EISDIR : ENOENT);
        return;
    }
    if ((fi->flags & O_ACCMODE) != O_RDONLY) {
        fuse_reply_err(req, EACCES);
        return;
    }
    size_t h = 0;
    while (h < MAX_HANDLES && S.used[h])
        h++;
    if (h == MAX_HANDLES) {
        fuse_reply_err(req, ENFILE);
        return;
    }
    bh_buf_init(&S.open_files[h], MAX_INPUT);
    if (render(ino, &S.open_files[h]) < 0) {
        bh_buf_free(&S.open_files[h]);
        fuse_reply_err(req, EIO);
        return;
    }
    S.used[h] = true;
    S.read_before[h] = false;
    fi->fh = h;
    fi->direct_io = 1; /* size 0 in getattr, as /proc: reads must come to us */
    fi->keep_cache = 0;
    if (fuse_reply_open(req, fi) != 0) { /* the opener was interrupted: nobody holds it */
        S.used[h] = false;
        bh_buf_free(&S.open_files[h]);
    }
}

static void pf_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi)
{
    (void)ino;
    if (fi->fh >= MAX_HANDLES || !S.used[fi->fh] || off < 0) {
        fuse_reply_err(req, EBADF);
        return;
    }
    bh_buf *b = &S.open_files[fi->fh];
    if (off == 0 && S.read_before[fi->fh]) {
        bh_buf_reset(b);
        if (render(ino, b) < 0) {
            fuse_reply_err(req, EIO);
            return;
        }
    }
    S.read_before[fi->fh] = true;
    size_t o = (size_t)off < b->len ? (size_t)off : b->len;
    size_t n = b->len - o < size ? b->len - o : size;
    fuse_reply_buf(req, b->data + o, n);
}

static void pf_release(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi)
{
    (void)ino;
    if (fi->fh < MAX_HANDLES && S.used[fi->fh]) {
        bh_buf_free(&S.open_files[fi->fh]);
        S.used[fi->fh] = false;
    }
    fuse_reply_err(req, 0);
}

static const struct fuse_lowlevel_ops ops = {
    .init = pf_init,
    .lookup = pf_lookup,
    .getattr = pf_getattr,
    .open = pf_open,
    .read = pf_read,
    .release = pf_release,
};

/* What the loop needs, and nothing else: read requests and write answers on /dev/fuse,
 * reread the already open inputs, memory (mmap and mprotect never executable: confine.h),
 * clocks, exit. Anything else kills. */
static int apply_seccomp(bh_error *err)
{
    static const char *const allowed[] = {
        "read", "write", "writev", "lseek", "close",
        "brk", "munmap", "mremap", "madvise",
        "futex", "clock_gettime", "gettimeofday", "getpid", "gettid",
        "rt_sigreturn", "rt_sigprocmask", "exit", "exit_group",
    };
    scmp_filter_ctx ctx = bh_allowlist_new(bh_allowlist_default(), allowed, sizeof allowed / sizeof *allowed, err);
    return ctx ? bh_seccomp_load(ctx, 0, err) : -1;
}

static int drop_privileges(uid_t id, bh_error *err)
{
    if (geteuid() == 0 && bh_confine_ids(id, id, err) < 0)
        return -1;
    /* no files beyond what we hold, no processes */
    static const struct bh_rlimit none[] = { { RLIMIT_NOFILE, 0 }, { RLIMIT_NPROC, 0 } };
    if (bh_confine_rlimits(none, sizeof none / sizeof *none, err) < 0)
        return -1;
    if (bh_confine_no_new_privs(err) < 0 || bh_confine_undumpable(err) < 0)
        return -1;
    return 0;
}

static __attribute__((noreturn)) void die(const char *what)
{
    fprintf(stderr, "bulkhead-procfs: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    long long id = -1;
    /* the qube's root: 2^20 + 2^16 * qid, above 2^31 from qid 32753 on (host_ids.h) */
    uid_t owner = 0;
    bool owner_ok = false;
    const char *cpu = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--id"))
            id = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--owner"))
            owner_ok = bh_parse_host_uid(argv[i + 1], &owner);
        else if (!strcmp(argv[i], "--boot-offset"))
            S.boot_offset = strtoll(argv[i + 1], NULL, 10);
        else if (!strcmp(argv[i], "--cpu"))
            cpu = argv[i + 1];
        else {
            errno = EINVAL;
            die(argv[i]);
        }
    }
    if (id <= 0 || id > 0x7fffffff || !owner_ok || fcntl(FUSE_FD, F_GETFD) < 0 ||
        fcntl(GO_FD, F_GETFD) < 0) {
        errno = EINVAL;
        die("usage: bulkhead-procfs --id UID --owner UID --boot-offset S [--cpu FILE] (fd 3 /dev/fuse, fd 4 go)");
    }
    S.owner = owner;
    long hz = sysconf(_SC_CLK_TCK);
    S.hz = hz > 0 && hz < 100000 ? (unsigned)hz : 100;
    S.stat_fd = open("/proc/stat", O_RDONLY | O_CLOEXEC);
    S.softirqs_fd = open("/proc/softirqs", O_RDONLY | O_CLOEXEC);
    S.interrupts_fd = open("/proc/interrupts", O_RDONLY | O_CLOEXEC);
    S.cpu_fd = cpu ? open(cpu, O_RDONLY | O_CLOEXEC) : -1;
    S.cpu_v2 = cpu && strlen(cpu) >= 8 && !strcmp(cpu + strlen(cpu) - 8, "cpu.stat");
    if (S.stat_fd < 0 || S.softirqs_fd < 0 || S.interrupts_fd < 0)
        die("open /proc/stat, /proc/softirqs, /proc/interrupts");
    /* optional: a kernel without schedstats or PSI has no such file (nor has the qube) */
    for (int i = INO_VMSTAT; i < INO_END; i++) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%s", names[i]);
        for (char *c = path + 6; *c; c++)
            if (*c == '-')
                *c = '/';
        S.host_fd[i] = open(path, O_RDONLY | O_CLOEXEC);
    }
    char *host_stat = reread(S.stat_fd);
    if (!host_stat)
        die("read the host's /proc/stat");
    const char *bt = strstr(host_stat, "\nbtime ");
    unsigned long long host_btime = bt ? strtoull(bt + 7, NULL, 10) : 0;
    /* As the kernel shows btime in a time namespace: the host's minus the offset. */
    S.btime = (uint64_t)((long long)host_btime - S.boot_offset);
    free(host_stat);

    struct fuse_args args = FUSE_ARGS_INIT(0, NULL);
    if (fuse_opt_add_arg(&args, "bulkhead-procfs") < 0)
        die("fuse args");
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se || fuse_session_mount(se, "/dev/fd/3") != 0)
        die("fuse session");
    bh_error err;
    if (drop_privileges((uid_t)id, &err) < 0 || apply_seccomp(&err) < 0) {
        fprintf(stderr, "bulkhead-procfs: %s\n", err.msg);
        return 1;
    }
    /* The engine mounts the filesystem next; a read of /dev/fuse before that fails. */
    char go;
    ssize_t n;
    while ((n = read(GO_FD, &go, 1)) < 0 && errno == EINTR)
        ;
    if (n != 1)
        return 0; /* the start failed before the mount */
    close(GO_FD);
    int r = fuse_session_loop(se);
    return r < 0 ? 1 : 0;
}
