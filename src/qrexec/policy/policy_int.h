/* Internals shared by the parser (parse.c, token.c) and the evaluator (eval.c). */
#pragma once
#include "policy.h"
#include <stdbool.h>
#include <stddef.h>
#include <sys/stat.h>
#include <time.h>

/* Qube tokens. Where each may appear (Qubes' multifile-policy table, plus `*` and uuid):
 *            source target redirect intended(call)
 *   name       +      +      +        +
 *   uuid:U     +      +      +        +
 *   *          +      +      -        -
 *   @anyvm     +      +      -        -
 *   @adminvm   +      +      +        +
 *   @default   -      +      -        +
 *   @dispvm    -      +      +        +
 *   @dispvm:N  +      +      +        +
 *   @dispvm:@tag:T +  +      -        -
 *   @tag:T     +      +      -        -
 *   @type:T    +      +      -        -        */
enum tok_kind {
    TOK_NAME,
    TOK_UUID,
    TOK_WILDCARD,
    TOK_ANYVM,
    TOK_ADMINVM,
    TOK_DEFAULT,
    TOK_DISPVM,
    TOK_DISPVM_NAME,
    TOK_DISPVM_TAG,
    TOK_TAG,
    TOK_TYPE,
};

enum tok_ctx { CTX_SOURCE = 1, CTX_TARGET = 2, CTX_REDIRECT = 4, CTX_INTENDED = 8 };

struct tok {
    enum tok_kind kind;
    char *value; /* name, uuid, tag, type or dispvm template; NULL for keywords */
};

/* Parses s as a token valid in ctx. On failure returns -1 and points *why at a static
 * message. "dom0" is read as @adminvm, as Qubes does. */
int tok_parse(const char *s, enum tok_ctx ctx, struct tok *out, const char **why);
void tok_free(struct tok *t);
/* Writes the token back in policy syntax (for messages). */
const char *tok_str(const struct tok *t, char *buf, size_t n);

enum action { ACT_DENY, ACT_ALLOW, ACT_ASK };

struct rule {
    const char *file;  /* owned by the policy's file-name list */
    unsigned line;
    /* A barrier stands where a broken file's rules would have been: a call that gets
     * this far without a match is denied with `barrier` as the reason. */
    char *barrier;
    char *service;     /* NULL = * */
    char *argument;    /* with its leading '+'; NULL = * */
    struct tok source, target;
    enum action action;
    bool has_redirect, has_default_target;
    struct tok redirect, default_target;
    char *user;
    bool notify, autostart;
};

/* Index by service name: rules naming a service, sorted by (service, position), so
 * that a call only looks at the rules that can match it, still in file order. */
struct svc_ent {
    const char *svc;
    size_t idx;
};

/* What a load of a policy directory looked at, to tell later, by looking again,
 * whether a new load would see the same thing (policy_cache.c). */
enum fp_kind { FP_STAT, FP_REALPATH };
struct fp_entry {
    enum fp_kind kind;
    char *path;
    char *real;       /* FP_REALPATH: what realpath(path) gave */
    dev_t dev;        /* FP_STAT: what stat(path) gave */
    ino_t ino;
    mode_t mode;
    off_t size;
    struct timespec mtime, ctime;
};
struct policy_footprint {
    struct fp_entry *e;
    size_t n, cap;
    struct timespec started; /* CLOCK_REALTIME when the load began */
    bool recording;          /* load_dir records; buffers and single files do not */
    bool untrusted;          /* something may change unseen: never reuse this load */
};

struct bh_policy {
    unsigned refs; /* bh_policy_ref / bh_policy_free */
    struct policy_footprint fp;
    struct rule *rules;
    size_t n_rules, cap_rules;
    char **files; /* interned paths the rules point at */
    size_t n_files, cap_files;
    char **errors;
    size_t n_errors, cap_errors;
    size_t first_barrier; /* index of the first barrier rule, or SIZE_MAX */
    size_t files_read;
    struct svc_ent *by_svc; /* rules with a service name */
    size_t n_by_svc;
    size_t *always;         /* positions of `*`-service rules and barriers */
    size_t n_always;
    size_t bytes_read;
};

/* Characters of service names and arguments (Qubes' RPCNAME_ALLOWED_CHARSET). */
bool policy_service_char(char c, bool allow_plus);

/* Builds the service index once loading is done; -1 when memory runs out. */
int policy_build_index(bh_policy *p);

/* The footprint (policy_cache.c). Recording notes what the loader saw; a result that a
 * later look could not reproduce exactly (an error, a timestamp too recent to rely on)
 * marks the footprint untrusted. */
void fp_note_stat(struct policy_footprint *fp, const char *path, const struct stat *st);
void fp_note_realpath(struct policy_footprint *fp, const char *path, const char *real);
/* arr with room for at least n + 1 elements of size bytes (capacity doubled as it
 * grows; *cap updated), or NULL with arr untouched when memory runs out. */
void *policy_grow(void *arr, size_t *cap, size_t n, size_t size);
void fp_note_failure(struct policy_footprint *fp);
/* realpath(path) as already seen in this load (a malloc'd copy), NULL if not seen. */
char *fp_seen_realpath(const struct policy_footprint *fp, const char *path, bool *seen);
void fp_free(struct policy_footprint *fp);
