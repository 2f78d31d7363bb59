/* The last steps before a qube's first program runs (and before `bulkhead-ns exec`
 * runs a command in it): capability bounding set, no_new_privs, Landlock, seccomp.
 *
 * The qube's root holds capabilities only in the qube's own user namespace; the host
 * kernel checks the initial namespace for everything that touches the host, so those
 * capabilities mean nothing outside. We still drop from the bounding set the ones that
 * no qube uses, so that even a kernel bug that checks the wrong namespace finds them
 * gone. */
#include "ns.h"
#include <errno.h>
#include <linux/capability.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

static const int dropped_caps[] = {
    CAP_SYS_MODULE,     /* kernel modules: host-wide */
    CAP_SYS_RAWIO,      /* raw I/O ports and memory */
    CAP_SYS_PACCT,      /* process accounting file: host-wide */
    CAP_SYS_BOOT,       /* reboot/kexec */
    CAP_SYS_TIME,       /* the clock is shared with the host */
    CAP_SYS_TTY_CONFIG, /* vhangup, console config */
    CAP_MKNOD,          /* device nodes: a qube gets a fixed /dev */
    CAP_AUDIT_CONTROL, CAP_AUDIT_READ, CAP_AUDIT_WRITE, /* the audit log is the host's */
    CAP_MAC_ADMIN, CAP_MAC_OVERRIDE, /* LSM policy is the host's */
    CAP_SYSLOG,         /* kernel log: host addresses and messages */
    CAP_WAKE_ALARM, CAP_BLOCK_SUSPEND, /* host power management */
    38 /* CAP_PERFMON */, 39 /* CAP_BPF */, 40 /* CAP_CHECKPOINT_RESTORE */,
};

#define RAW_NET_MARK "raw-net"

void bh_confine_opts_of(const struct bh_qube_spec *spec, struct bh_confine_opts *o)
{
    char path[4200];
    bh_path_join(path, sizeof path, spec->runtime_dir, RAW_NET_MARK);
    o->raw_net = access(path, F_OK) == 0; /* absent or unreadable: the strict filter */
}

int bh_confine_opts_record(const struct bh_qube_spec *spec, bh_error *err)
{
    char path[4200];
    bh_path_join(path, sizeof path, spec->runtime_dir, RAW_NET_MARK);
    if (!spec->provides_network) {
        if (unlink(path) < 0 && errno != ENOENT)
            return bh_fail_errno(err, "unlink %s", path);
        return 0;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return bh_fail_errno(err, "create %s", path);
    close(fd);
    return 0;
}

int bh_confine(const struct bh_confine_opts *o, bh_error *err)
{
    for (size_t i = 0; i < sizeof dropped_caps / sizeof dropped_caps[0]; i++)
        if (prctl(PR_CAPBSET_DROP, dropped_caps[i], 0, 0, 0) < 0 && errno != EINVAL)
            return bh_fail_errno(err, "dropping capability %d from the bounding set", dropped_caps[i]);
    /* no_new_privs: setuid programs inside still switch UIDs within the qube, but no
     * file capability or setuid bit can add to what the qube's root already has, and
     * seccomp can be installed without host privileges. */
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        return bh_fail_errno(err, "no_new_privs");
    if (bh_landlock_apply(err) < 0)
        return -1;
    return bh_seccomp_apply(o, err);
}
