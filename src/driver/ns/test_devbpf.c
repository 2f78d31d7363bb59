/* The cgroup v2 device program (devbpf.c), enforced by the kernel: a process in a
 * cgroup2 cgroup with the program attached opens (and mknods) exactly what the rules
 * allow, a replacement takes effect and leaves one program attached.
 *
 * Needs root and a cgroup2 hierarchy: /sys/fs/cgroup on a v2 host, or the v1 hosts'
 * hybrid /sys/fs/cgroup/unified (BPF device programs work there too: the kernel runs
 * them for every process, whatever its v1 devices cgroup). Skips (exit 77) without. */
#include "ns.h"
#include "cleanup.h"
#include "../../../tests/unit/tap.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/magic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

static char cg[256];

/* In a child that joins the cgroup: open (or mknod) path; 0 or the errno. */
static int try_in_cg(const char *path, int flags, dev_t mknod_dev)
{
    pid_t pid = fork();
    if (pid == 0) {
        char procs[300];
        snprintf(procs, sizeof procs, "%s/cgroup.procs", cg);
        int fd = open(procs, O_WRONLY);
        if (fd < 0 || write(fd, "0", 1) != 1)
            _exit(250);
        close(fd);
        if (mknod_dev) {
            if (mknod(path, S_IFCHR | 0600, mknod_dev) < 0)
                _exit(errno);
            unlink(path);
            _exit(0);
        }
        fd = open(path, flags | O_CLOEXEC);
        _exit(fd < 0 ? errno : 0);
    }
    int st;
    if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st))
        return -1;
    return WEXITSTATUS(st);
}

static const char *cgroup2_root(void)
{
    static const char *cand[] = { "/sys/fs/cgroup", "/sys/fs/cgroup/unified" };
    for (size_t i = 0; i < 2; i++) {
        struct statfs sf;
        if (statfs(cand[i], &sf) == 0 && sf.f_type == CGROUP2_SUPER_MAGIC)
            return cand[i];
    }
    return NULL;
}

int main(void)
{
    /* the program builder alone: lengths and bounds */
    struct bpf_insn insn[BH_DEVBPF_MAX_INSNS];
    const struct bh_dev_rule one[] = { { 'b', 7, 0, "r" } };
    size_t empty = bh_devbpf_build(NULL, 0, insn, BH_ARRAY_SIZE(insn));
    CHECK(empty == 8);                                                     /* loads, deny */
    CHECK(bh_devbpf_build(one, 1, insn, BH_ARRAY_SIZE(insn)) == empty + 8); /* a block rule: 8 */
    CHECK(bh_devbpf_build(one, 1, NULL, BH_DEVBPF_MAX_INSNS) == empty + 8);
    CHECK(bh_devbpf_build(one, 1, insn, empty + 7) == 0);                   /* does not fit: refused */
    struct bh_dev_rule many[600];
    for (size_t i = 0; i < BH_ARRAY_SIZE(many); i++)
        many[i] = (struct bh_dev_rule){ 'b', 7, (int32_t)i, "rw" };
    CHECK(bh_devbpf_build(many, BH_ARRAY_SIZE(many), insn, BH_ARRAY_SIZE(insn)) == 0);

    const char *root = cgroup2_root();
    if (geteuid() != 0 || !root) {
        printf("skipped: needs root and a cgroup2 hierarchy\n");
        return tap_failed ? 1 : 77;
    }
    snprintf(cg, sizeof cg, "%s/bh-devbpf-test-%d", root, (int)getpid());
    CHECK(mkdir(cg, 0755) == 0);
    char node[] = "/tmp/bh-devbpf-node-XXXXXX";
    int tfd = mkstemp(node);
    CHECK(tfd >= 0);
    close(tfd);
    unlink(node);

    /* control: without a program the child opens everything it asks for */
    CHECK(try_in_cg("/dev/zero", O_RDONLY, 0) == 0);

    const struct bh_dev_rule first[] = { { 'c', 1, 3, "rwm" }, { 'c', 1, -1, "r" }, { 'b', 7, 0, "r" } };
    bh_error err;
    CHECK(bh_devbpf_install(cg, first, BH_ARRAY_SIZE(first), &err) == 0);
    CHECK(try_in_cg("/dev/null", O_RDWR, 0) == 0);
    CHECK(try_in_cg("/dev/zero", O_RDONLY, 0) == 0);   /* c 1:* r */
    CHECK(try_in_cg("/dev/zero", O_WRONLY, 0) == EPERM);
    CHECK(try_in_cg("/dev/loop0", O_RDONLY, 0) == 0);  /* b 7:0 r */
    CHECK(try_in_cg("/dev/loop0", O_RDWR, 0) == EPERM);
    CHECK(try_in_cg("/dev/tty", O_RDWR, 0) == EPERM);  /* 5:0: not in the list */
    CHECK(try_in_cg(node, 0, makedev(1, 3)) == 0);     /* m for 1:3 */
    CHECK(try_in_cg(node, 0, makedev(1, 5)) == EPERM); /* not for 1:5 */
    int len1 = bh_devbpf_attached_len(cg);
    CHECK(len1 == (int)bh_devbpf_build(first, BH_ARRAY_SIZE(first), NULL, BH_DEVBPF_MAX_INSNS));

    /* replaced: the block device is gone, one program is left */
    const struct bh_dev_rule second[] = { { 'c', 1, 3, "rwm" } };
    CHECK(bh_devbpf_install(cg, second, 1, &err) == 0);
    CHECK(try_in_cg("/dev/loop0", O_RDONLY, 0) == EPERM);
    CHECK(try_in_cg("/dev/zero", O_RDONLY, 0) == EPERM);
    CHECK(try_in_cg("/dev/null", O_RDWR, 0) == 0);
    CHECK(bh_devbpf_attached_len(cg) == (int)bh_devbpf_build(second, 1, NULL, BH_DEVBPF_MAX_INSNS));
    uint32_t ids[8];
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    int cgfd = open(cg, O_RDONLY | O_DIRECTORY);
    a.query.target_fd = (uint32_t)cgfd;
    a.query.attach_type = BPF_CGROUP_DEVICE;
    a.query.prog_ids = (uint64_t)(uintptr_t)ids;
    a.query.prog_cnt = 8;
    CHECK(syscall(__NR_bpf, BPF_PROG_QUERY, &a, sizeof a) == 0 && a.query.prog_cnt == 1);
    close(cgfd);

    /* too many rules: refused, the previous program stays */
    CHECK(bh_devbpf_install(cg, many, BH_ARRAY_SIZE(many), &err) < 0);
    CHECK(try_in_cg("/dev/null", O_RDWR, 0) == 0 && try_in_cg("/dev/zero", O_RDONLY, 0) == EPERM);

    CHECK(rmdir(cg) == 0);
    return tap_done();
}
