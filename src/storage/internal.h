/* Shared inside the storage area only. Layout of a `file` pool (docs/storage.md):
 *   <root>/pools/<pool>/qubes/<name>/
 *       private.img     ext4 image (sparse), 0-based UIDs inside
 *       private-mnt/    empty; the engine mounts private.img here while the qube runs
 *       root.img        TemplateVM/StandaloneVM: ext4 image (sparse) holding the root tree
 *       root/           its mount point: root.img mounted nosuid,nodev,noexec (rootimg.c)
 *       root.size       size of root.img (bytes); root.resize: a growth still to do
 *       root.gen        changes whenever root/ may have changed (template stopped)
 *       origin          built templates: "host" or "debian SUITE"; "claimed" once adopted
 *       running         while running: the template's root.gen seen at start
 *       volatile.size   only if resized
 *       revisions/<vol>/<timestamp>   snapshots (image files, or trees for root)
 *   Temporaries are ".tmp-<pid>-..." and ".trash-<pid>-...": never valid qube or volume
 *   names, so never visible as volumes; removed at pool open once <pid> is gone. */
#pragma once
#include "storage.h"
#include "fsutil.h"
#include <signal.h>
#include <stdlib.h>
#include <string.h>

struct bh_pool {
    char *path;   /* <root>/pools/<name>, or an added pool's dir_path */
    char name[64];
    char driver[16]; /* "file" or "file-reflink" (Qubes' driver names: the same code) */
    int fd;       /* the pool directory */
    int qubes_fd; /* <pool>/qubes */
    bool reflink; /* the pool's filesystem can share blocks (FICLONE) */
};

/* Takes the pool's exclusive lock (serialises every change between processes); returns
 * an fd to close to unlock. */
int st_lock(struct bh_pool *p, bh_error *err);
int st_validate(const struct bh_storage_qube *q, bh_error *err);
bool st_own_root(const char *klass);     /* TemplateVM, StandaloneVM */
bool st_shared_root(const char *klass);  /* AppVM, DispVM */
/* Opens qubes/<name> (validated, not followed). */
int st_qube_dir(struct bh_pool *p, const char *name, bh_error *err);
/* ".tmp-<pid>-<what>" */
void st_tmpname(char *buf, size_t n, const char *kind, const char *what);
/* Removes temporaries of dead processes in dirfd (not recursive). */
void st_sweep(int dirfd);
/* A new sparse ext4 image dirfd/name of size bytes (fails if it exists). */
int st_image_create(int dirfd, const char *name, uint64_t size, bh_error *err);
/* Grows the ext4 image dirfd/name (not in use) to size: file then filesystem. */
int st_image_grow(int dirfd, const char *name, uint64_t size, bh_error *err);
/* A fresh temporary qube directory (with private-mnt/ and revisions/); tmp gets its
 * name. st_publish_tmpdir renames it to qubes/<name> (never over an existing one). */
int st_new_tmpdir(struct bh_pool *p, const char *name, char *tmp, size_t n, bh_error *err);
int st_publish_tmpdir(struct bh_pool *p, int tmpfd, const char *tmp, const char *name, bh_error *err);
/* Writes a new root.gen in a qube directory. */
int st_bump_gen(int qfd, bh_error *err);
/* Grows the ext4 image dirfd/name while mounted through a loop device: file, loop
 * capacity, then resize2fs online. EBUSY if no loop device serves it. */
int st_image_grow_online(int dirfd, const char *name, uint64_t size, bh_error *err);
/* 1 if a loop device serves the image dirfd/name (matched by inode): the engine mounts
 * private images through detached mounts on autoclear loop devices, so this is the
 * system's own word on whether a qube still has it. */
int st_image_in_use(int dirfd, const char *name);
/* The qube's private volume is in use: a loop device serves it, or something is
 * mounted at private-mnt. */
bool st_private_in_use(int qfd);
/* Waits up to ms milliseconds for st_private_in_use to become false. */
bool st_private_wait_free(int qfd, int ms);
/* The loop device number serving the open image (matched by device and inode), or -1. */
int st_image_loop(int imgfd);
/* The root volume as an image (rootimg.c, docs/storage.md): root.img (sparse ext4 of
 * root.size) mounted on root/ with nosuid, nodev, noexec. */
bool st_root_is_image(int qfd);
/* A new root.img of size bytes and an empty root/ mount point (not mounted). */
int st_root_image_create(int qfd, uint64_t size, bh_error *err);
/* Mounts root.img on root/ unless it is already (idempotent; through the loop device
 * that already serves the image, if any). build: nosuid only, for a builder that runs
 * the tree's programs (debootstrap); st_root_seal then adds nodev and noexec. */
int st_root_mount(int qfd, bool build, bh_error *err);
int st_root_seal(int qfd, bh_error *err);
/* Detaches the mount on root/ if there is one. */
int st_root_unmount(int qfd, bh_error *err);
/* Converts a legacy root directory into root.img once, then mounts it. */
int st_root_ensure(int qfd, bh_error *err);
/* Copies sfd's root.img to dfd/dname, frozen while copied if mounted. */
int st_root_copy_image(int sfd, int dfd, const char *dname, bh_error *err);
/* A root tree sdir/sname into a new image qfd/dname (at least size bytes). */
int st_root_image_from_tree(int sdir, const char *sname, int qfd, const char *dname, uint64_t size, bh_error *err);
/* Unmounts qube dir parent/name's root (if mounted; or parent/name itself if it is a
 * mount point, a conversion's temporary), then removes the whole tree. */
int st_qube_tree_remove(int parent, const char *name, bh_error *err);
/* Grows root.img to the size recorded in root.resize (online, or offline when nothing
 * else has the image); leaves the wish in place when the image is in use. */
int st_root_grow_pending(int qfd, bh_error *err);
int st_root_freeze(int qfd);
void st_root_thaw(int fd);
int st_revisions_open_newest(int qfd, const char *vol, int *dirfd, char *name, size_t n);
/* The disposable template's shared read-only private base (dispbase.c): made fresh if
 * the template's private changed since; *usable false if it cannot serve (its journal
 * needs replaying, or it changed while copied): then copy per disposable. */
int st_dispbase_prepare(int dfd, const char *tmpl, bool *usable, bh_error *err);
/* Fills the empty directory rootfd with the `host` template tree (template_host.c). */
int st_build_host_tree(int rootfd, bh_error *err);
/* Deletes every block and character device node in the tree rootfd (one filesystem). */
int st_remove_device_nodes(int rootfd, bh_error *err);
/* Creates qubes/<name> as a TemplateVM volume set with the given origin, its root filled
 * by fill(rootfd, rootpath, ctx); all under a temporary name, renamed at the end. */
int st_template_create(struct bh_pool *p, const char *name, const char *origin, uint64_t root_size, bool build_exec,
                       int (*fill)(int rootfd, const char *rootpath, void *ctx, bh_error *err), void *ctx,
                       bh_error *err);

/* Failpoints for the crash tests: only in the test build (BH_STORAGE_FAILPOINTS), where
 * BH_STORAGE_FAILPOINT=<name> makes the process kill itself with SIGKILL right there,
 * exactly like a crash at that instant. */
#ifdef BH_STORAGE_FAILPOINTS
#define st_failpoint(name)                                                         \
    do {                                                                           \
        const char *fp_ = getenv("BH_STORAGE_FAILPOINT");                          \
        if (fp_ && !strcmp(fp_, name))                                             \
            raise(SIGKILL);                                                        \
    } while (0)
#else
#define st_failpoint(name) do { } while (0)
#endif
