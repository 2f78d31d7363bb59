/* Storage pools and volumes (docs/storage.md). One pool interface; the first
 * pool driver is `file` (a directory of ext4 images and plain directories) at
 * <root>/pools/<pool>/. bulkheadd calls these; the engine only consumes the resulting
 * bh_volume_layout (driver/driver.h).
 *
 * Volumes per qube: root, private, volatile, kernel (Qubes' names). Persistent volumes
 * have a size a qube cannot exceed (ext4 image files, loop-mounted by the engine).
 * All operations are crash-safe: a new volume is built under a temporary name and
 * renamed into place; a crash leaves either the old or the new one, never a half.
 *
 * Calls are synchronous: they copy data (clone, revisions, disposable privates) and
 * run mkfs.ext4/resize2fs/cp/rm/du as children, reaped with waitpid(pid) before they
 * return (so SIGCHLD must not be SIG_IGN in the caller). Changes take the pool's flock.
 * Layout, classes and on-disk format: docs/storage.md. */
#pragma once
#include "err.h"
#include "driver/driver.h"
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct bh_pool;

struct bh_volume_info {
    char pool[64];
    char vid[256];
    uint64_t size;
    uint64_t usage;
    bool rw;
    char source[256];     /* vid this volume is based on (app qube root: template root) */
    bool save_on_stop;
    bool snap_on_start;
    int revisions_to_keep;
    bool ephemeral;
    bool is_outdated;
};

/* What the model tells storage about a qube. */
struct bh_storage_qube {
    const char *name;
    const char *klass;           /* AppVM, TemplateVM, StandaloneVM, DispVM */
    const char *template_name;   /* AppVM/DispVM: its template; DispVM: its dispvm template's template */
    const char *dispvm_template;  /* DispVM: the app qube whose private it copies */
    int revisions_to_keep;
    uint64_t private_size;       /* create: size of a new private image; 0 = default (2 GiB) */
    bool private_layer;          /* DispVM: its engine layers a throwaway upper over a
                                  * read-only private (bh_volume_layout.private_throwaway) */
};

/* Defaults (Qubes' sizes). Persistent images are sparse: a new one takes almost no disk. */
#define BH_PRIVATE_DEFAULT_SIZE (2ULL << 30)
#define BH_ROOT_DEFAULT_SIZE (10ULL << 30)
#define BH_VOLATILE_DEFAULT_SIZE (1ULL << 30) /* tmpfs: charged to the qube's memory cgroup */
#define BH_VOLUME_MIN_SIZE (8ULL << 20)
#define BH_VOLUME_MAX_SIZE (16ULL << 40)

/* The volume names of every qube, in Qubes' order (admin.vm.volume.List). */
extern const char *const bh_volume_names[5]; /* NULL-terminated */

/* Opens (creating if needed) the pool `name` under root. */
struct bh_pool *bh_pool_open(const char *root, const char *name, bh_error *err);
void bh_pool_close(struct bh_pool *p);
/* A pool in directory dir (absolute; created with its parents if missing: *created),
 * as admin.pool.Add makes one. */
struct bh_pool *bh_pool_open_dir(const char *dir, const char *name, bool *created, bh_error *err);
/* Can the pool's filesystem share blocks (FICLONE)? */
bool bh_pool_reflinks(const struct bh_pool *p);
/* The driver name Info reports (default "file"). */
void bh_pool_set_driver(struct bh_pool *p, const char *driver);

int bh_volumes_create(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err);
int bh_volumes_remove(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err);
/* After a crash between making volumes and committing the qube to the store (create,
 * clone) or between the store commit and the delete (remove), the pool holds volumes of
 * a qube the store does not know. Removes every such qube directory (known(name, ctx)
 * false); a built template that was claimed is only unclaimed (it is adopted again by
 * the next create of that name), an unclaimed one is left waiting. Skips a directory
 * whose private volume is in use. Returns how many were collected, or -1. */
int bh_volumes_collect_orphans(struct bh_pool *p, bool (*known)(const char *name, void *ctx), void *ctx,
                               bh_error *err);
/* Clone: copy every persistent volume of src to a new qube dst. */
int bh_volumes_clone(struct bh_pool *p, const struct bh_storage_qube *src, const struct bh_storage_qube *dst, bh_error *err);
/* Volume names: "root", "private", "volatile", "kernel". */
int bh_volume_info(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, struct bh_volume_info *out, bh_error *err);
int bh_volume_resize(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, uint64_t size, bh_error *err);
/* Revisions: names are timestamps; list writes them one a line into *out (malloc'd). */
int bh_volume_list_snapshots(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, char **out, bh_error *err);
int bh_volume_revert(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, const char *revision, bh_error *err);
/* Called around a qube's life: prepare fills the layout for the engine (strings are
 * malloc'd: bh_volume_layout_free) and, for a DispVM, copies its fresh private; stopped
 * takes the revision (the volume as saved at this shutdown; the revisions_to_keep
 * newest stay, 0 drops all) and drops throwaway data (a DispVM's private). Remove of a
 * qube without volumes succeeds; resize/revert/remove refuse while private-mnt is
 * mounted (the qube runs). */
int bh_volumes_prepare(struct bh_pool *p, const struct bh_storage_qube *q, struct bh_volume_layout *out, bh_error *err);
int bh_volumes_stopped(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err);
/* Frees the strings bh_volumes_prepare put into *l (they are malloc'd) and zeroes it. */
void bh_volume_layout_free(struct bh_volume_layout *l);
/* Qubes' admin.vm.volume.Info body: "key=value\n" lines in Qubes' order, with
 * booleans as True/False. Returns the length, or -1 if buf is too small. */
int bh_volume_info_format(const struct bh_volume_info *i, char *buf, size_t n);
/* Parses "1073741824", "512M", "2G", "1T" (binary units) into bytes. */
int bh_size_parse(const char *s, uint64_t *out);
/* Qubes' admin.pool.Info body for this pool (sorted key=value lines: dir_path, driver,
 * ephemeral_volatile, name, revisions_to_keep, size, usage). -1 if buf is too small. */
int bh_pool_info_format(struct bh_pool *p, char *buf, size_t n);
/* The default revisions_to_keep for volumes of this pool: 1 (Qubes' default) where the
 * filesystem has reflinks, so that a revision costs no copy; 0 elsewhere, where each
 * revision would be a full copy of the volume's data at every shutdown. */
int bh_pool_default_revisions(const struct bh_pool *p);
/* admin.pool.Set.revisions_to_keep: the pool's default from now on (-1 and up), kept in
 * <pool>/revisions_to_keep. */
int bh_pool_set_default_revisions(struct bh_pool *p, int keep, bh_error *err);

/* Import (import.c), Qubes' two steps: begin makes an empty file of `size` bytes (0:
 * the volume's current size) next to the private volume and puts its absolute path in
 * path; the caller writes the raw data there; end(ok) checks it (a clean ext4) and
 * renames it over the volume, end(!ok) deletes it. Only `private`, qube halted. */
/* `importer` names one import among concurrent ones into the same volume (bulkheadd
 * passes the importing client's PID): begin and end must give the same. */
int bh_volume_import_begin(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, long importer, uint64_t size,
                           char *path, size_t n, uint64_t *size_out, bh_error *err);
int bh_volume_import_end(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, long importer, bool ok,
                         bh_error *err);
/* admin.vm.volume.Clear: the private volume becomes a fresh empty filesystem of its size. */
int bh_volume_clear(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, bh_error *err);
/* <root>/pools/<name>, for messages. */
const char *bh_pool_path(const struct bh_pool *p);

/* Templates (template.c). A built template is the full volume set of a TemplateVM named
 * NAME in the pool, marked with its origin; bh_volumes_create() for a TemplateVM of that
 * name adopts it instead of failing. */
/* bulkheadd calls this at start: builds the `host` template volumes if missing; *created
 * tells whether it did (then register a TemplateVM "host" in the store). */
int bh_template_ensure_host(struct bh_pool *p, bool *created, bh_error *err);
/* root_size: bytes of the template's root image, 0 = BH_ROOT_DEFAULT_SIZE. */
int bh_template_build_host(struct bh_pool *p, const char *name, uint64_t root_size, bh_error *err);
/* debootstrap SUITE from MIRROR (NULL: Debian's) into a new template NAME; each output
 * line of debootstrap goes to progress (may be NULL). */
int bh_template_build_debian(struct bh_pool *p, const char *name, const char *suite, const char *mirror,
                             uint64_t root_size, void (*progress)(const char *line, void *ctx), void *ctx, bh_error *err);
/* "NAME ORIGIN adopted|unclaimed USAGE_BYTES" one a line for every built template. */
int bh_template_list(struct bh_pool *p, char **out, bh_error *err);
