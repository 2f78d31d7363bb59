/* The device filter of a qube on cgroup v2: a BPF_PROG_TYPE_CGROUP_DEVICE program.
 *
 * cgroup v2 has no devices controller; the kernel asks the BPF programs attached to a
 * process's cgroup (and its ancestors') at every open and mknod of a device node, and
 * allows the access only if every program returns 1. The program is built here from a
 * list of rules, the same rules cgroup v1's devices.allow takes ("c 1:3 rwm",
 * "b 7:4 r"): one test block per rule, falling through to the next on a mismatch and
 * to "deny" after the last. The list lives in the program, so a change (a block device
 * attached or detached) loads a new program and replaces the old one.
 *
 * Replacement without a window: the new program is attached next to the old ones
 * (BPF_F_ALLOW_MULTI), then every other program attached to the cgroup is detached.
 * While both are attached the kernel allows only what both allow, so at no moment is
 * anything allowed that neither the old nor the new list allows. This needs no memory
 * of the old program's fd: a restarted bulkheadd replaces its predecessor's program the
 * same way. Only bulkheadd attaches programs to a qube's cgroup (a qube has no
 * capability in the host's user namespace and its seccomp filter refuses bpf(2)). */
#include "ns.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <stddef.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static int sys_bpf(int cmd, union bpf_attr *attr)
{
    return (int)syscall(__NR_bpf, cmd, attr, sizeof *attr);
}

/* Registers of the program: r1 = context (struct bpf_cgroup_dev_ctx), then */
enum { R_CTX = 1, R_TYPE = 2, R_ACC = 3, R_MAJOR = 4, R_MINOR = 5, R_TMP = 6 };

struct prog {
    struct bpf_insn *insn;
    size_t n, cap;
    bool overflow;
};

static void emit(struct prog *p, uint8_t code, uint8_t dst, uint8_t src, int16_t off, int32_t imm)
{
    if (p->n == p->cap) {
        p->overflow = true;
        return;
    }
    if (!p->insn) { /* counting only */
        p->n++;
        return;
    }
    p->insn[p->n++] = (struct bpf_insn){ .code = code, .dst_reg = dst, .src_reg = src, .off = off, .imm = imm };
}

/* "if (u32)reg != imm goto <end of this rule>": the offset is patched once the rule's
 * length is known. */
static size_t emit_jne(struct prog *p, uint8_t reg, int32_t imm)
{
    emit(p, BPF_JMP32 | BPF_JNE | BPF_K, reg, 0, 0, imm);
    return p->n - 1;
}

static unsigned access_bits(const char *acc)
{
    unsigned bits = 0;
    for (; *acc; acc++)
        bits |= *acc == 'r' ? BPF_DEVCG_ACC_READ : *acc == 'w' ? BPF_DEVCG_ACC_WRITE
                : *acc == 'm' ? BPF_DEVCG_ACC_MKNOD : 0;
    return bits;
}

static int emit_rule(struct prog *p, const struct bh_dev_rule *r)
{
    size_t jumps[4], nj = 0;
    jumps[nj++] = emit_jne(p, R_TYPE, r->type == 'b' ? BPF_DEVCG_DEV_BLOCK : BPF_DEVCG_DEV_CHAR);
    if (r->major >= 0)
        jumps[nj++] = emit_jne(p, R_MAJOR, r->major);
    if (r->minor >= 0)
        jumps[nj++] = emit_jne(p, R_MINOR, r->minor);
    /* every access asked for must be in the rule: (asked & ~allowed) == 0 */
    emit(p, BPF_ALU64 | BPF_MOV | BPF_X, R_TMP, R_ACC, 0, 0);
    emit(p, BPF_ALU64 | BPF_AND | BPF_K, R_TMP, 0, 0, (int32_t)(~access_bits(r->access) & 0xffff));
    jumps[nj++] = emit_jne(p, R_TMP, 0);
    emit(p, BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 1);
    emit(p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    if (p->overflow)
        return -1;
    for (size_t i = 0; p->insn && i < nj; i++)
        p->insn[jumps[i]].off = (int16_t)(p->n - jumps[i] - 1);
    return 0;
}

size_t bh_devbpf_build(const struct bh_dev_rule *rules, size_t n, struct bpf_insn *out, size_t cap)
{
    struct prog p = { out, 0, cap, false };
    const int off_type = offsetof(struct bpf_cgroup_dev_ctx, access_type);
    /* access_type = (access << 16) | type */
    emit(&p, BPF_LDX | BPF_MEM | BPF_W, R_TYPE, R_CTX, (int16_t)off_type, 0);
    emit(&p, BPF_ALU64 | BPF_MOV | BPF_X, R_ACC, R_TYPE, 0, 0);
    emit(&p, BPF_ALU64 | BPF_RSH | BPF_K, R_ACC, 0, 0, 16);
    emit(&p, BPF_ALU64 | BPF_AND | BPF_K, R_TYPE, 0, 0, 0xffff);
    emit(&p, BPF_LDX | BPF_MEM | BPF_W, R_MAJOR, R_CTX, (int16_t)offsetof(struct bpf_cgroup_dev_ctx, major), 0);
    emit(&p, BPF_LDX | BPF_MEM | BPF_W, R_MINOR, R_CTX, (int16_t)offsetof(struct bpf_cgroup_dev_ctx, minor), 0);
    for (size_t i = 0; i < n; i++)
        if (emit_rule(&p, &rules[i]) < 0)
            return 0;
    emit(&p, BPF_ALU64 | BPF_MOV | BPF_K, 0, 0, 0, 0); /* nothing matched: deny */
    emit(&p, BPF_JMP | BPF_EXIT, 0, 0, 0, 0);
    return p.overflow ? 0 : p.n;
}

/* Ids of the device programs attached directly to the cgroup (at most cap). */
static int query_ids(int cgfd, uint32_t *ids, uint32_t cap)
{
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.query.target_fd = (uint32_t)cgfd;
    a.query.attach_type = BPF_CGROUP_DEVICE;
    a.query.prog_ids = (uint64_t)(uintptr_t)ids;
    a.query.prog_cnt = cap;
    if (sys_bpf(BPF_PROG_QUERY, &a) < 0)
        return -1;
    return (int)a.query.prog_cnt;
}

int bh_devbpf_install(const char *cgdir, const struct bh_dev_rule *rules, size_t n, bh_error *err)
{
    struct bpf_insn insn[BH_DEVBPF_MAX_INSNS];
    size_t cnt = bh_devbpf_build(rules, n, insn, BH_ARRAY_SIZE(insn));
    if (cnt == 0)
        return bh_fail(err, E2BIG, "device filter of %s: too many rules (%zu)", cgdir, n);
    _cleanup_close_ int cgfd = open(cgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cgfd < 0)
        return bh_fail_errno(err, "open %s", cgdir);

    union bpf_attr a;
    memset(&a, 0, sizeof a);
    static const char license[] = "GPL";
    char log[1024] = "";
    a.prog_type = BPF_PROG_TYPE_CGROUP_DEVICE;
    a.insns = (uint64_t)(uintptr_t)insn;
    a.insn_cnt = (uint32_t)cnt;
    a.license = (uint64_t)(uintptr_t)license;
    a.log_buf = (uint64_t)(uintptr_t)log;
    a.log_size = sizeof log;
    a.log_level = 1;
    memcpy(a.prog_name, "bulkhead_dev", sizeof "bulkhead_dev");
    _cleanup_close_ int prog = sys_bpf(BPF_PROG_LOAD, &a);
    if (prog < 0 && errno == ENOSPC) { /* log too small: the load itself may be fine */
        a.log_buf = 0, a.log_size = 0, a.log_level = 0;
        prog = sys_bpf(BPF_PROG_LOAD, &a);
    }
    if (prog < 0)
        return bh_fail_errno(err, "loading the device filter of %s (%.200s)", cgdir, log);

    /* the programs attached before this one: they go once it is in place */
    uint32_t old[64];
    int nold = query_ids(cgfd, old, BH_ARRAY_SIZE(old));
    if (nold < 0)
        return bh_fail_errno(err, "querying the device filters of %s", cgdir);

    memset(&a, 0, sizeof a);
    a.target_fd = (uint32_t)cgfd;
    a.attach_bpf_fd = (uint32_t)prog;
    a.attach_type = BPF_CGROUP_DEVICE;
    a.attach_flags = BPF_F_ALLOW_MULTI;
    if (sys_bpf(BPF_PROG_ATTACH, &a) < 0)
        return bh_fail_errno(err, "attaching the device filter of %s", cgdir);

    for (int i = 0; i < nold; i++) {
        memset(&a, 0, sizeof a);
        a.prog_id = old[i];
        _cleanup_close_ int ofd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &a);
        if (ofd < 0) {
            if (errno == ENOENT)
                continue; /* gone meanwhile */
            return bh_fail_errno(err, "old device filter %u of %s", old[i], cgdir);
        }
        memset(&a, 0, sizeof a);
        a.target_fd = (uint32_t)cgfd;
        a.attach_bpf_fd = (uint32_t)ofd;
        a.attach_type = BPF_CGROUP_DEVICE;
        /* A failure leaves the old program attached: the qube gets at most the
         * intersection of both lists, never more; the caller hears of it. */
        if (sys_bpf(BPF_PROG_DETACH, &a) < 0 && errno != ENOENT)
            return bh_fail_errno(err, "detaching the old device filter of %s", cgdir);
    }
    return 0;
}

int bh_devbpf_attached_len(const char *cgdir)
{
    _cleanup_close_ int cgfd = open(cgdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    uint32_t ids[64];
    int n = cgfd < 0 ? -1 : query_ids(cgfd, ids, BH_ARRAY_SIZE(ids));
    int longest = n < 0 ? -1 : 0;
    for (int i = 0; i < n; i++) {
        union bpf_attr a;
        memset(&a, 0, sizeof a);
        a.prog_id = ids[i];
        _cleanup_close_ int fd = sys_bpf(BPF_PROG_GET_FD_BY_ID, &a);
        struct bpf_prog_info info;
        memset(&info, 0, sizeof info);
        memset(&a, 0, sizeof a);
        a.info.bpf_fd = (uint32_t)fd;
        a.info.info_len = sizeof info;
        a.info.info = (uint64_t)(uintptr_t)&info;
        if (fd >= 0 && sys_bpf(BPF_OBJ_GET_INFO_BY_FD, &a) == 0 &&
            (int)(info.xlated_prog_len / sizeof(struct bpf_insn)) > longest)
            longest = (int)(info.xlated_prog_len / sizeof(struct bpf_insn));
    }
    return longest;
}
