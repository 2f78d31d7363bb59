/* private.img -> loop device -> a detached ext4 mount.
 *
 * The image is never mounted anywhere on the host: fsmount() gives a mount that only
 * the qube's mount namespace will hold, so the host's tree never shows qube files and
 * the mount (and, through LO_FLAGS_AUTOCLEAR, the loop device) goes away by itself when
 * the qube's last process exits. The image's fixed size bounds what the qube can write. */
#include "ns.h"
#include "cleanup.h"
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <linux/loop.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <unistd.h>

static int loop_attach(int backing, bool ro, char *dev, size_t devlen, bh_error *err)
{
    _cleanup_close_ int ctl = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (ctl < 0)
        return bh_fail_errno(err, "open /dev/loop-control");
    for (int attempt = 0; attempt < 16; attempt++) {
        int n = ioctl(ctl, LOOP_CTL_GET_FREE);
        if (n < 0)
            return bh_fail_errno(err, "LOOP_CTL_GET_FREE");
        snprintf(dev, devlen, "/dev/loop%d", n);
        int fd = open(dev, O_RDWR | O_CLOEXEC);
        if (fd < 0)
            return bh_fail_errno(err, "open %s", dev);
        struct loop_config cfg;
        memset(&cfg, 0, sizeof cfg);
        cfg.fd = (uint32_t)backing;
        cfg.info.lo_flags = LO_FLAGS_AUTOCLEAR | (ro ? LO_FLAGS_READ_ONLY : 0);
        if (ioctl(fd, LOOP_CONFIGURE, &cfg) == 0)
            return fd;
        int e = errno;
        close(fd);
        if (e != EBUSY) { /* EBUSY: another process took it between GET_FREE and us */
            errno = e;
            return bh_fail_errno(err, "LOOP_CONFIGURE %s", dev);
        }
    }
    return bh_fail(err, EBUSY, "no free loop device");
}

static int image_mount(const char *img, bool ro, bh_error *err)
{
    /* O_NOFOLLOW: the image path is storage's, but never follow a link planted there. */
    _cleanup_close_ int backing = open(img, (ro ? O_RDONLY : O_RDWR) | O_CLOEXEC | O_NOFOLLOW);
    if (backing < 0)
        return bh_fail_errno(err, "open %s", img);
    char dev[64];
    /* The loop fd stays open until the mount holds the device, else autoclear fires. */
    _cleanup_close_ int loopfd = loop_attach(backing, ro, dev, sizeof dev, err);
    if (loopfd < 0)
        return bh_prefix(err, "%s", img);
    _cleanup_close_ int fs = fsopen("ext4", FSOPEN_CLOEXEC);
    if (fs < 0)
        return bh_fail_errno(err, "fsopen ext4");
    if (fsconfig(fs, FSCONFIG_SET_STRING, "source", dev, 0) < 0 ||
        (ro && fsconfig(fs, FSCONFIG_SET_FLAG, "ro", NULL, 0) < 0) ||
        fsconfig(fs, FSCONFIG_SET_STRING, "errors", "remount-ro", 0) < 0 ||
        fsconfig(fs, FSCONFIG_CMD_CREATE, NULL, NULL, 0) < 0)
        return bh_fail_errno(err, "mounting %s (%s) as ext4", img, dev);
    int m = fsmount(fs, FSMOUNT_CLOEXEC, MOUNT_ATTR_NODEV | MOUNT_ATTR_NOSUID | (ro ? MOUNT_ATTR_RDONLY : 0));
    if (m < 0)
        return bh_fail_errno(err, "fsmount %s", img);
    return m;
}

int bh_ext4_image_mount(const char *img, bh_error *err) { return image_mount(img, false, err); }

int bh_ext4_image_mount_ro(const char *img, bh_error *err) { return image_mount(img, true, err); }
