/* The steps that confine a helper process (see confine.h). */
#include "confine.h"
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

int bh_confine_bounding_set(bh_error *err)
{
    for (int cap = 0; prctl(PR_CAPBSET_READ, cap, 0, 0, 0) >= 0; cap++)
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0)
            return bh_fail_errno(err, "dropping capability %d from the bounding set", cap);
    return 0;
}

int bh_confine_ids(uid_t uid, gid_t gid, bh_error *err)
{
    if (setgroups(0, NULL) < 0)
        return bh_fail_errno(err, "setgroups");
    if (setresgid(gid, gid, gid) < 0)
        return bh_fail_errno(err, "setresgid %u", (unsigned)gid);
    if (setresuid(uid, uid, uid) < 0)
        return bh_fail_errno(err, "setresuid %u", (unsigned)uid);
    if (getgroups(0, NULL) != 0)
        return bh_fail(err, EPERM, "supplementary groups left after dropping to %u", (unsigned)uid);
    return bh_confine_ids_are(uid, gid, uid, gid, err);
}

int bh_confine_ids_are(uid_t uid, gid_t gid, uid_t saved_uid, gid_t saved_gid, bh_error *err)
{
    uid_t ru, eu, su;
    gid_t rg, eg, sg;
    if (getresuid(&ru, &eu, &su) < 0 || getresgid(&rg, &eg, &sg) < 0)
        return bh_fail_errno(err, "reading back the IDs");
    if (ru != uid || eu != uid || su != saved_uid || rg != gid || eg != gid || sg != saved_gid)
        return bh_fail(err, EPERM, "IDs are uid %u/%u/%u gid %u/%u/%u, not uid %u/%u/%u gid %u/%u/%u", (unsigned)ru,
                       (unsigned)eu, (unsigned)su, (unsigned)rg, (unsigned)eg, (unsigned)sg, (unsigned)uid,
                       (unsigned)uid, (unsigned)saved_uid, (unsigned)gid, (unsigned)gid, (unsigned)saved_gid);
    return 0;
}

int bh_confine_clear_caps(bh_error *err)
{
    struct __user_cap_header_struct h = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct d[2];
    memset(d, 0, sizeof d);
    if (syscall(SYS_capset, &h, d) < 0)
        return bh_fail_errno(err, "capabilities");
    return 0;
}

bool bh_confine_caps_empty(void)
{
    struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return false;
    return !d[0].effective && !d[1].effective && !d[0].permitted && !d[1].permitted && !d[0].inheritable &&
           !d[1].inheritable;
}

int bh_confine_no_new_privs(bh_error *err)
{
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return bh_fail_errno(err, "no_new_privs");
    return 0;
}

int bh_confine_undumpable(bh_error *err)
{
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return bh_fail_errno(err, "dumpable");
    return 0;
}

int bh_confine_rlimits(const struct bh_rlimit *limits, size_t n, bh_error *err)
{
    for (size_t i = 0; i < n; i++) {
        const struct rlimit l = { limits[i].value, limits[i].value };
        if (setrlimit(limits[i].resource, &l) < 0)
            return bh_fail_errno(err, "setrlimit %d", limits[i].resource);
    }
    return 0;
}

uint32_t bh_allowlist_default(void)
{
#ifdef BH_SANITIZED
    return SCMP_ACT_LOG;
#else
    return SCMP_ACT_KILL_PROCESS;
#endif
}

int bh_seccomp_add_names(scmp_filter_ctx ctx, uint32_t action, const char *const names[], size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int nr = seccomp_syscall_resolve_name(names[i]);
        if (nr == __NR_SCMP_ERROR)
            continue; /* not on this architecture */
        int rc = seccomp_rule_add(ctx, action, nr, 0);
        if (rc)
            return rc;
    }
    return 0;
}

scmp_filter_ctx bh_allowlist_new(uint32_t def, const char *const names[], size_t n, bh_error *err)
{
    scmp_filter_ctx ctx = seccomp_init(def);
    if (!ctx) {
        bh_fail(err, ENOMEM, "seccomp_init");
        return NULL;
    }
    int rc = bh_seccomp_add_names(ctx, SCMP_ACT_ALLOW, names, n);
    if (!rc)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (!rc)
        rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mprotect), 1, SCMP_A2(SCMP_CMP_MASKED_EQ, PROT_EXEC, 0));
    if (rc) {
        seccomp_release(ctx);
        bh_fail(err, -rc, "seccomp: %s", strerror(-rc));
        return NULL;
    }
    return ctx;
}

int bh_seccomp_load(scmp_filter_ctx ctx, int rc, bh_error *err)
{
    if (!rc)
        rc = seccomp_load(ctx);
    seccomp_release(ctx);
    if (rc)
        return bh_fail(err, -rc, "seccomp: %s", strerror(-rc));
    return 0;
}
