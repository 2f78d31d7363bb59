/* The qrexec policy engine: Qubes policy format 5 (docs/policy.md).
 *
 * Three steps, each its own unit:
 *   1. a "system info" snapshot of the qubes (sysinfo.h): filled from the Admin API by
 *      the qrexec daemon, from a file or directly by tests;
 *   2. bh_policy_load_dir(): parses <root>/policy.d into rules (never fails for a
 *      syntax error: a broken file becomes a barrier that denies every call reaching it);
 *   3. bh_policy_evaluate(): first matching rule decides; the result names the rule.
 *
 * The policy is immutable after loading: evaluations do not change it, so one loaded
 * policy can serve any number of calls (bh_policy_cache_get reloads it when policy.d
 * changes). */
#pragma once
#include "err.h"
#include "sysinfo.h"
#include <stdbool.h>
#include <stddef.h>

/* Hard limits on what the parser accepts (a policy directory is admin-written, but a
 * management qube may be delegated to write it, so treat it as untrusted). */
#define BH_POLICY_MAX_FILE_SIZE (1u << 20) /* bytes per file */
#define BH_POLICY_MAX_LINE 4096            /* bytes per line, without the newline */
#define BH_POLICY_MAX_FILES 1024           /* files read per load, includes counted */
#define BH_POLICY_MAX_TOTAL (16u << 20)      /* bytes read per load, includes counted */
#define BH_POLICY_MAX_DEPTH 8              /* nesting of !include* directives */
#define BH_POLICY_MAX_RULES 200000         /* rules per load */
#define BH_POLICY_MAX_ERRORS 100           /* syntax errors kept for reporting */
#define BH_POLICY_MAX_SERVICE 255          /* service name and argument, each */

typedef struct bh_policy bh_policy;

/* Loads every *.policy file of dir (C-locale name order) and what they include.
 * Returns NULL only when memory runs out; read and syntax errors are kept in the
 * policy (see bh_policy_error_count) and make the affected calls fail closed. */
bh_policy *bh_policy_load_dir(const char *dir);
/* Parses in-memory bytes as one policy file named `name` (fuzzing, tests, lint of a
 * single file). `dir` resolves !include* paths; NULL refuses every include. */
bh_policy *bh_policy_load_buffer(const char *name, const void *data, size_t len,
                                 const char *dir);
/* Parses one file (lint of FILE...), includes resolved relative to dir. */
bh_policy *bh_policy_load_file(const char *path, const char *dir);
/* Drops a reference (a load gives one; bh_policy_ref and the cache add more). */
void bh_policy_free(bh_policy *p);
bh_policy *bh_policy_ref(bh_policy *p);

/* A directory's loaded policy, reused while nothing the load looked at has changed
 * (policy_cache.c says how that is known, exactly, with stat and realpath). Zero it to
 * start. Not for use from several threads at once. */
struct bh_policy_cache {
    char *dir;
    bh_policy *policy;
    unsigned long loads, hits; /* for tests and benchmarks */
};
/* The policy of dir as a load now would give it: the kept one when it still holds, a
 * new load otherwise (kept for the next call when it can be checked). A reference:
 * bh_policy_free() it. NULL only when memory runs out. */
bh_policy *bh_policy_cache_get(struct bh_policy_cache *c, const char *dir);
void bh_policy_cache_clear(struct bh_policy_cache *c);
#define _cleanup_policy_ __attribute__((cleanup(bh_policy_freep)))
static inline void bh_policy_freep(bh_policy **p) { if (*p) bh_policy_free(*p); }

/* Syntax and read errors found while loading, each "file:line: message". */
size_t bh_policy_error_count(const bh_policy *p);
const char *bh_policy_error(const bh_policy *p, size_t i);
size_t bh_policy_rule_count(const bh_policy *p);

enum bh_policy_decision { BH_POLICY_DENY = 0, BH_POLICY_ALLOW, BH_POLICY_ASK };
enum bh_policy_target_kind {
    BH_TARGET_NONE = 0, /* deny */
    BH_TARGET_QUBE,     /* an existing qube: target is its name */
    BH_TARGET_ADMINVM,  /* dom0: target is "dom0" (the AdminVM's name) */
    BH_TARGET_DISPVM,   /* a new disposable: target is "@dispvm:TEMPLATE" */
};

struct bh_policy_result {
    enum bh_policy_decision decision;
    char source[64];          /* the calling qube's name ("dom0" for the AdminVM) */
    /* ALLOW: where the call goes. ASK: empty until bh_policy_confirm_ask(). */
    enum bh_policy_target_kind target_kind;
    char target[64];          /* qube name, "dom0", or "@dispvm:TEMPLATE" */
    char target_uuid[40];     /* the qube's uuid when known (not for a new dispvm) */
    char dispvm_template[32]; /* BH_TARGET_DISPVM: the disposable template */
    char user[64];            /* user= parameter, empty = the qube's default user */
    bool notify;              /* notify= (deny defaults to yes, allow/ask to no) */
    bool autostart;           /* autostart= (default yes) */
    /* ASK: the targets a person may choose from (qube names, "dom0",
     * "@dispvm:TEMPLATE"), sorted; default_target is empty or one of them. */
    char **choices;
    size_t n_choices;
    char default_target[64];
    /* The deciding rule: file path and line, or rule_file empty (no rule matched,
     * or the call was refused before any rule, e.g. a call to itself). */
    char rule_file[512];
    unsigned rule_line;
    char reason[768];         /* one line, human-readable: why this decision */
};
void bh_policy_result_free(struct bh_policy_result *r);

/* Evaluates a call from `source` (a qube name, "dom0" or "@adminvm") to the target the
 * source asked for (a qube name, "uuid:…", "@default" or "", "@adminvm"/"dom0",
 * "@dispvm", "@dispvm:NAME") for "SERVICE[+ARG]". Always fills *out (a deny carries its
 * reason); returns the decision. Never allows on any internal error. */
enum bh_policy_decision bh_policy_evaluate(const bh_policy *p, const struct bh_sysinfo *si,
                                           const char *source, const char *target,
                                           const char *service_and_arg,
                                           struct bh_policy_result *out);

/* After an ASK was answered by a person with `chosen`: checks that chosen is one of
 * the offered choices and applies the rule's autostart=; turns *r into ALLOW (returns
 * BH_POLICY_ALLOW) or into DENY with a reason. */
enum bh_policy_decision bh_policy_confirm_ask(struct bh_policy_result *r,
                                              const struct bh_sysinfo *si,
                                              const char *chosen);

const char *bh_policy_decision_name(enum bh_policy_decision d);
