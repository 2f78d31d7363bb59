/* Storage pools and volumes (ARCHITECTURE.md "Volumes"). One pool interface; the first
 * pool driver is `file` (a directory of ext4 images and plain directories) at
 * <root>/pools/<pool>/. bulkheadd calls these; the engine only consumes the resulting
 * bh_volume_layout (driver/driver.h).
 *
 * Volumes per qube: root, private, volatile, kernel (Qubes' names). Persistent volumes
 * have a size a qube cannot exceed (ext4 image files, loop-mounted by the engine).
 * All operations are crash-safe: a new volume is built under a temporary name and
 * renamed into place; a crash leaves either the old or the new one, never a half. */
#pragma once
#include "err.h"
#include "driver/driver.h"
#include <stdbool.h>
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
};

/* Opens (creating if needed) the pool `name` under root. */
struct bh_pool *bh_pool_open(const char *root, const char *name, bh_error *err);
void bh_pool_close(struct bh_pool *p);

int bh_volumes_create(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err);
int bh_volumes_remove(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err);
/* Clone: copy every persistent volume of src to a new qube dst. */
int bh_volumes_clone(struct bh_pool *p, const struct bh_storage_qube *src, const struct bh_storage_qube *dst, bh_error *err);
/* Volume names: "root", "private", "volatile", "kernel". */
int bh_volume_info(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, struct bh_volume_info *out, bh_error *err);
int bh_volume_resize(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, uint64_t size, bh_error *err);
/* Revisions: names are timestamps; list writes them one a line into *out (malloc'd). */
int bh_volume_list_snapshots(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, char **out, bh_error *err);
int bh_volume_revert(struct bh_pool *p, const struct bh_storage_qube *q, const char *vol, const char *revision, bh_error *err);
/* Called around a qube's life: prepare fills the layout for the engine; stopped takes
 * the revision snapshot (revisions_to_keep) and drops throwaway data. */
int bh_volumes_prepare(struct bh_pool *p, const struct bh_storage_qube *q, struct bh_volume_layout *out, bh_error *err);
int bh_volumes_stopped(struct bh_pool *p, const struct bh_storage_qube *q, bh_error *err);
