/* The model of qubes that bulkheadd manages (Qubes' qubes.app / qubes.vm): classes,
 * labels, explicitly set properties, tags, features, notes, firewall rules, plus the
 * runtime state the engine reports. Every value is kept as the string that goes on the
 * wire; only explicitly set values are stored, everything else is a computed default.
 *
 * Mutations go through model functions that validate, write the store in one
 * transaction, and only then change memory and emit events, so an acknowledged
 * change is durable and a refused one changes nothing. */
#pragma once
#include "driver/driver.h"
#include "err.h"
#include "response.h"
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

enum bh_klass { BH_ADMINVM, BH_TEMPLATEVM, BH_APPVM, BH_DISPVM, BH_STANDALONEVM, BH_KLASS_COUNT };
#define BH_KMASK(k) (1u << (k))
#define BH_K_ALL_VMS (BH_KMASK(BH_TEMPLATEVM) | BH_KMASK(BH_APPVM) | BH_KMASK(BH_DISPVM) | BH_KMASK(BH_STANDALONEVM))
#define BH_K_ALL (BH_K_ALL_VMS | BH_KMASK(BH_ADMINVM))

const char *bh_klass_name(enum bh_klass k);
int bh_klass_parse(const char *s, enum bh_klass *out);

/* A small ordered string map (explicit properties, features, tags, globals). Sizes are
 * small (tens), so a sorted array beats a hash in both code and speed. */
struct bh_kv {
    char *key, *value;
};
struct bh_kvlist {
    struct bh_kv *v;
    size_t n, cap;
};
const char *bh_kv_get(const struct bh_kvlist *l, const char *key);
int bh_kv_set(struct bh_kvlist *l, const char *key, const char *value);
bool bh_kv_del(struct bh_kvlist *l, const char *key);
void bh_kv_free(struct bh_kvlist *l);

#define BH_LABEL_MAX 32
/* Limits of what one qube's calls may cost the host (docs/ns-engine.md, threat model). */
#define BH_DISPVMS_PER_CALLER 8       /* disposables alive at once per calling qube */
#define BH_DISPVM_RATE 1.0            /* new disposables per second per calling qube... */
#define BH_DISPVM_BURST 4.0           /* ...after a burst of this many */
#define BH_HOST_RESERVE_MIB 1024      /* host memory never budgeted to qubes (at least) */
struct bh_label {
    int index;
    char name[BH_LABEL_MAX];
    char color[16]; /* 0xRRGGBB */
};

struct bh_runtime {
    enum bh_power_state state;
    int pidfd;         /* engine's watch fd, -1 when halted */
    pid_t qrexec_pid;  /* the qube's qrexec-daemon, 0 if none */
    int qrexec_pidfd;  /* watched: its exit is noticed at once; -1 none */
    int qrexec_readyfd; /* a restarted daemon's ready pipe, watched; -1 none */
    int qrexec_gofd;    /* a daemon forked with its booting qube: its go pipe, -1 none */
    int qrexec_early_rfd; /* ... and its ready pipe, -1 none */
    int64_t qrexec_restart_ms[4]; /* the last restarts, to slow down a restart loop */
    uint32_t disp_caller; /* DispVM: qid of the qube whose call made it (0: dom0/unknown) */
    double disp_tokens;   /* a caller's disposable-creation bucket (see create_disposable) */
    int64_t disp_tokens_ms; /* when it was last filled; 0: never used */
    int64_t start_time;
    bool shutdown_requested;
    int64_t shutdown_deadline_ms;
    /* the engine it was started in, until it has halted and been cleaned up (its
     * virt_mode's default may change meanwhile); NULL: virt_mode's (engine_glue.c) */
    const struct bh_driver *engine;
    /* a cleanup of that engine failed (a Kill's, a start's): it stays the qube's until
     * a later cleanup succeeds (the next Start has it clean up first) */
    bool engine_dirty;
};

struct bh_qube {
    uint32_t qid;
    char name[32];
    enum bh_klass klass;
    char uuid[37];
    struct bh_kvlist props;    /* explicitly set properties */
    struct bh_kvlist features;
    struct bh_kvlist tags;     /* values unused ("1") */
    char *notes;
    char *firewall;            /* NULL = the default rule set (accept all) */
    struct bh_runtime rt;
};

struct bh_store;

struct bh_app {
    struct bh_qube **qubes; /* sorted by name */
    size_t nqubes, cap;
    struct bh_kvlist globals;
    struct bh_label *labels;
    size_t nlabels;
    struct bh_store *store;
    char *root_dir;
    char *runtime_dir;
    /* qids: a new qube gets the lowest free qid from qid_base (0 counts as 1) that no
     * other bulkheadd on this host holds and whose host UIDs no live process has (with
     * claims_on: proc_ids.h). With claims_on, every qid in the model but
     * dom0's is claimed on claims_fd (qid_claim.h); off (tests, fuzzers): no host claims. */
    uint32_t qid_base;
    bool claims_on;
    int claims_fd;
};

/* Lookup: name, or "uuid:<uuid>". */
struct bh_qube *bh_app_find(struct bh_app *app, const char *name);
struct bh_qube *bh_app_find_qid(struct bh_app *app, uint32_t qid);
const struct bh_label *bh_label_find(const struct bh_app *app, const char *name);
const struct bh_label *bh_label_of(const struct bh_app *app, const struct bh_qube *q);

/* Loads the model from the store; a new store gets dom0 and the labels. */
int bh_app_load(struct bh_app *app, struct bh_store *store, bh_error *err);
/* Turns host-wide qid claims on (claims_fd: bh_qid_claims_open) and claims the qid of
 * every qube loaded but dom0. -1 when one is held by another bulkheadd or process on
 * this host: the stores of two daemons running side by side give one qid twice, and
 * their qubes would share host identities (the error names the qube). */
int bh_app_claim_qids(struct bh_app *app, int claims_fd, bh_error *err);
void bh_app_free(struct bh_app *app);

/* Creation and removal (validated, stored, events emitted). */
struct bh_create_args {
    enum bh_klass klass;
    const char *name;
    const char *label;
    const char *template_name; /* may be NULL */
    const char *props[32][2];  /* extra properties name/value, NULL-terminated */
    const char *tags[8];       /* tags it is created with (Qubes' automatic ones), NULL-terminated */
    const char *features[4][2]; /* features it is created with (a disposable's internal.auto-cleanup),
                                 * name/value, NULL-terminated: stored in the create's one commit */
};
struct bh_qube *bh_qube_create(struct bh_app *app, const struct bh_create_args *a, struct bh_exc *e);
int bh_qube_remove(struct bh_app *app, struct bh_qube *q, struct bh_exc *e);
/* Where a qube is still used (template, netvm, default_dispvm, global defaults...);
 * writes a human-readable list into buf, returns the count. */
int bh_qube_usage(struct bh_app *app, const struct bh_qube *q, char *buf, size_t cap);

/* Tags, features, notes, firewall, labels. */
int bh_qube_tag_set(struct bh_app *app, struct bh_qube *q, const char *tag, bool on, struct bh_exc *e);
int bh_qube_feature_set(struct bh_app *app, struct bh_qube *q, const char *key, const char *value, struct bh_exc *e);
int bh_qube_feature_del(struct bh_app *app, struct bh_qube *q, const char *key, struct bh_exc *e);
int bh_qube_notes_set(struct bh_app *app, struct bh_qube *q, const char *text, struct bh_exc *e);
int bh_qube_firewall_set(struct bh_app *app, struct bh_qube *q, const char *rules, struct bh_exc *e);
int bh_label_create(struct bh_app *app, const char *name, const char *color, struct bh_exc *e);
int bh_label_remove(struct bh_app *app, const char *name, struct bh_exc *e);

bool bh_qube_is_running(const struct bh_qube *q); /* not Halted (nor Crashed) */
