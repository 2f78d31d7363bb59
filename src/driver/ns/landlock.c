/* Landlock, where the kernel has it (ABI >= 2).
 *
 * Why Landlock for a whole qube: the rule grants everything beneath the qube's own "/"
 * and nothing else. Inside its tree a qube may do anything; a host file or directory
 * that ever reached a qube process by another way (a leaked descriptor, a /proc magic
 * link into another mount namespace) stays unusable, because it is not beneath the
 * qube's root. A Landlock domain also forbids every change to the mount tree (mount,
 * umount, pivot_root, move_mount), which closes the kernel's filesystem-mount code to
 * the qube: those mounts were made by us before init started. */
#include "ns.h"
#include "cleanup.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef LANDLOCK_ACCESS_FS_TRUNCATE
#define LANDLOCK_ACCESS_FS_TRUNCATE (1ULL << 14)
#endif
#ifndef LANDLOCK_ACCESS_FS_IOCTL_DEV
#define LANDLOCK_ACCESS_FS_IOCTL_DEV (1ULL << 15)
#endif

int bh_landlock_apply(bh_error *err)
{
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LANDLOCK_CREATE_RULESET_VERSION);
    /* ABI 1 refuses every rename between directories: too strict for a whole system. */
    if (abi < 2)
        return 1;
    uint64_t fs = (1ULL << 14) - 1; /* EXECUTE .. REFER */
    if (abi >= 3)
        fs |= LANDLOCK_ACCESS_FS_TRUNCATE;
    if (abi >= 5)
        fs |= LANDLOCK_ACCESS_FS_IOCTL_DEV;
    struct landlock_ruleset_attr attr = { .handled_access_fs = fs };
    _cleanup_close_ int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, sizeof attr, 0);
    if (rs < 0)
        return bh_fail_errno(err, "landlock_create_ruleset");
    _cleanup_close_ int root = open("/", O_PATH | O_CLOEXEC | O_DIRECTORY);
    if (root < 0)
        return bh_fail_errno(err, "open /");
    struct landlock_path_beneath_attr pb = { .allowed_access = fs, .parent_fd = root };
    if (syscall(SYS_landlock_add_rule, rs, LANDLOCK_RULE_PATH_BENEATH, &pb, 0) < 0)
        return bh_fail_errno(err, "landlock_add_rule");
    if (syscall(SYS_landlock_restrict_self, rs, 0) < 0)
        return bh_fail_errno(err, "landlock_restrict_self");
    return 0;
}
