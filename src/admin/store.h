/* The durable store: SQLite in WAL mode with synchronous=FULL; every model change is
 * one transaction, committed before the client hears "ok". A SIGKILL at any moment
 * leaves either the old or the new state. */
#pragma once
#include "err.h"
#include <stdbool.h>
#include <stdint.h>

struct bh_store;
struct bh_app;

struct bh_store *bh_store_open(const char *path, bh_error *err);
void bh_store_close(struct bh_store *s);
bool bh_store_is_new(struct bh_store *s);

int bh_store_begin(struct bh_store *s, bh_error *err);
int bh_store_commit(struct bh_store *s, bh_error *err);
void bh_store_rollback(struct bh_store *s);

/* Writes inside the current transaction. value NULL deletes. qid 0 is dom0. */
int bh_store_put_qube(struct bh_store *s, uint32_t qid, const char *name, const char *klass, const char *uuid, bh_error *err);
int bh_store_del_qube(struct bh_store *s, uint32_t qid, bh_error *err); /* cascades */
/* table: "props", "features", "tags", "globals" (qid ignored for globals) */
int bh_store_put_kv(struct bh_store *s, const char *table, uint32_t qid, const char *key, const char *value, bh_error *err);
int bh_store_put_text(struct bh_store *s, const char *table, uint32_t qid, const char *text, bh_error *err); /* notes, firewall */
int bh_store_put_label(struct bh_store *s, int index, const char *name, const char *color, bh_error *err);

/* Loads everything into app (qubes, props, features, tags, notes, firewall, globals, labels). */
int bh_store_load(struct bh_store *s, struct bh_app *app, bh_error *err);

/* A batch: every transaction begun until bh_store_batch_commit is a savepoint of one
 * SQLite transaction, so several model changes of one API call cost one synchronous
 * commit instead of one each. The caller replies only after the batch's commit, and
 * must undo (or make harmless) what it changed in memory when that commit fails. */
int bh_store_batch_begin(struct bh_store *s, bh_error *err);
int bh_store_batch_commit(struct bh_store *s, bh_error *err);

/* One-shot helper: begin, run fn, commit (rollback on failure). */
int bh_store_txn(struct bh_store *s, int (*fn)(struct bh_store *, void *, bh_error *), void *ctx, bh_error *err);
