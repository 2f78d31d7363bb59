/* The request an ns qube's `fusermount` sends to its FUSE mount broker (see
 * src/driver/ns/fusebroker.c and docs/devices.md, "Mounting inside an ns qube").
 *
 * A qube may not mount anything itself (Landlock closes the kernel's mount code to it),
 * so a broker that bulkheadd starts in the qube's namespaces makes FUSE mounts, and
 * only those, for the qube's root. One request per connection on the abstract unix
 * socket BH_FUSEMOUNT_SOCKET of the qube's network namespace (SOCK_SEQPACKET): this
 * fixed-size struct, with file descriptors as SCM_RIGHTS: for 'M' (mount) an open
 * /dev/fuse and an O_PATH descriptor of the mount point, for 'U' (unmount) an O_PATH
 * descriptor of the mount's root. The answer is one int32: 0 or an errno value. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define BH_FUSEMOUNT_SOCKET "bulkhead-fuse-mount"

enum {
    BH_FUSEMOUNT_RDONLY = 1,
    BH_FUSEMOUNT_NOEXEC = 2,
    BH_FUSEMOUNT_ALLOW_OTHER = 4,
    BH_FUSEMOUNT_DEFAULT_PERMISSIONS = 8,
    BH_FUSEMOUNT_FLAGS = 15,
};

struct bh_fusemount_req {
    char op;          /* 'M' mount, 'U' unmount */
    uint8_t pad[3];   /* zero */
    uint32_t flags;   /* BH_FUSEMOUNT_* */
    char subtype[32]; /* NUL-terminated, may be empty: fuse.<subtype> in mountinfo */
    char source[128]; /* NUL-terminated, non-empty for 'M': what mountinfo shows as source */
};

/* Checks a request as received (len bytes): exact size, known op and flags, zero
 * padding, both strings terminated and made of [A-Za-z0-9._+:@/-] only. 0 or -1. */
int bh_fusemount_req_check(const void *buf, size_t len, struct bh_fusemount_req *out);
