/* Block devices dom0 exports (admin.vm.device.block.Available on dom0): its loop
 * devices that have a backing file, are not in use by dom0 itself (mounted, holders
 * such as device-mapper on top) and are not an engine's own (autoclear loops back
 * qubes' private images). Read from sysfs at each call: nothing cached. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bh_blockdev {
    char port[32];       /* loopN */
    char device_id[40];  /* Qubes' BlockDevice.device_id: ":N" */
    unsigned major, minor;
    bool ro;             /* Qubes' mode 'r' */
    uint64_t size;
    char serial[256];    /* Qubes' desc: the backing file, sanitised as Qubes does */
};

/* All exported devices, sorted by port; *out is malloc'd (free it). */
int bh_blockdev_list(struct bh_blockdev **out, size_t *n);
/* One exported device by port id: 0 found, -1 not exported. */
int bh_blockdev_get(const char *port, struct bh_blockdev *out);
