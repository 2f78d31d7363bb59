#include "store.h"
#include "model.h"
#include <errno.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct bh_store {
    sqlite3 *db;
    bool is_new;
    bool batch; /* inside bh_store_batch_begin: transactions are savepoints in it */
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS qubes(qid INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL,"
    "  klass TEXT NOT NULL, uuid TEXT UNIQUE NOT NULL);"
    "CREATE TABLE IF NOT EXISTS props(qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(qid, key));"
    "CREATE TABLE IF NOT EXISTS features(qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(qid, key));"
    "CREATE TABLE IF NOT EXISTS tags(qid INTEGER NOT NULL REFERENCES qubes(qid) ON DELETE CASCADE,"
    "  key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY(qid, key));"
    "CREATE TABLE IF NOT EXISTS notes(qid INTEGER PRIMARY KEY REFERENCES qubes(qid) ON DELETE CASCADE, text TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS firewall(qid INTEGER PRIMARY KEY REFERENCES qubes(qid) ON DELETE CASCADE, text TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS globals(qid INTEGER NOT NULL DEFAULT 0, key TEXT PRIMARY KEY, value TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS labels(idx INTEGER PRIMARY KEY, name TEXT UNIQUE NOT NULL, color TEXT NOT NULL);"
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);";

static int sql_fail(struct bh_store *s, bh_error *err, const char *what)
{
    return bh_fail(err, EIO, "store: %s: %s", what, sqlite3_errmsg(s->db));
}

static int exec(struct bh_store *s, const char *sql, bh_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        bh_fail(err, EIO, "store: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return -1;
    }
    return 0;
}

struct bh_store *bh_store_open(const char *path, bh_error *err)
{
    struct bh_store *s = calloc(1, sizeof *s);
    if (!s) {
        bh_fail_errno(err, "calloc");
        return NULL;
    }
    if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        bh_fail(err, EIO, "store: cannot open %s: %s", path, s->db ? sqlite3_errmsg(s->db) : "out of memory");
        bh_store_close(s);
        return NULL;
    }
    /* WAL + synchronous=FULL: a commit is on disk before we acknowledge it, and a crash
     * mid-transaction is rolled back on the next open. */
    if (exec(s, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err) < 0 ||
        exec(s, "BEGIN IMMEDIATE;", err) < 0) {
        bh_store_close(s);
        return NULL;
    }
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(s->db, "SELECT count(*) FROM sqlite_master WHERE name='qubes'", -1, &st, NULL);
    s->is_new = st && sqlite3_step(st) == SQLITE_ROW && sqlite3_column_int(st, 0) == 0;
    sqlite3_finalize(st);
    if (exec(s, schema, err) < 0 || exec(s, "COMMIT;", err) < 0) {
        bh_store_close(s);
        return NULL;
    }
    sqlite3_busy_timeout(s->db, 5000);
    return s;
}

void bh_store_close(struct bh_store *s)
{
    if (!s)
        return;
    sqlite3_close(s->db);
    free(s);
}

bool bh_store_is_new(struct bh_store *s) { return s->is_new; }

int bh_store_begin(struct bh_store *s, bh_error *err)
{
    return exec(s, s->batch ? "SAVEPOINT bh;" : "BEGIN IMMEDIATE;", err);
}
int bh_store_commit(struct bh_store *s, bh_error *err)
{
    if (exec(s, s->batch ? "RELEASE bh;" : "COMMIT;", err) < 0) {
        bh_store_rollback(s);
        return -1;
    }
    return 0;
}
void bh_store_rollback(struct bh_store *s)
{
    sqlite3_exec(s->db, s->batch ? "ROLLBACK TO bh; RELEASE bh;" : "ROLLBACK;", NULL, NULL, NULL);
}

int bh_store_batch_begin(struct bh_store *s, bh_error *err)
{
    if (s->batch)
        return bh_fail(err, EBUSY, "store: a batch is open already");
    if (exec(s, "BEGIN IMMEDIATE;", err) < 0)
        return -1;
    s->batch = true;
    return 0;
}

int bh_store_batch_commit(struct bh_store *s, bh_error *err)
{
    if (!s->batch)
        return bh_fail(err, EINVAL, "store: no batch is open");
    s->batch = false;
    if (exec(s, "COMMIT;", err) < 0) {
        sqlite3_exec(s->db, "ROLLBACK;", NULL, NULL, NULL);
        return -1;
    }
    return 0;
}

/* Runs one statement with text/int parameters given as a printf-like spec:
 * 'i' = uint32, 't' = text (NULL binds NULL). */
static int run(struct bh_store *s, const char *sql, const char *spec, bh_error *err, ...)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, "prepare");
    va_list ap;
    va_start(ap, err);
    for (int i = 0; spec[i]; i++) {
        if (spec[i] == 'i')
            sqlite3_bind_int64(st, i + 1, va_arg(ap, uint32_t));
        else {
            const char *t = va_arg(ap, const char *);
            if (t)
                sqlite3_bind_text(st, i + 1, t, -1, SQLITE_TRANSIENT);
            else
                sqlite3_bind_null(st, i + 1);
        }
    }
    va_end(ap);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s, err, "write");
    return 0;
}

int bh_store_put_qube(struct bh_store *s, uint32_t qid, const char *name, const char *klass, const char *uuid, bh_error *err)
{
    return run(s, "INSERT OR REPLACE INTO qubes(qid,name,klass,uuid) VALUES(?,?,?,?)", "ittt", err, qid, name, klass, uuid);
}

int bh_store_del_qube(struct bh_store *s, uint32_t qid, bh_error *err)
{
    return run(s, "DELETE FROM qubes WHERE qid=?", "i", err, qid);
}

static bool table_ok(const char *t)
{
    return !strcmp(t, "props") || !strcmp(t, "features") || !strcmp(t, "tags") || !strcmp(t, "globals");
}

int bh_store_put_kv(struct bh_store *s, const char *table, uint32_t qid, const char *key, const char *value, bh_error *err)
{
    if (!table_ok(table))
        return bh_fail(err, EINVAL, "store: bad table");
    char sql[160];
    if (value)
        snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO %s(qid,key,value) VALUES(?,?,?)", table);
    else
        snprintf(sql, sizeof sql, "DELETE FROM %s WHERE qid=? AND key=?", table);
    return value ? run(s, sql, "itt", err, qid, key, value) : run(s, sql, "it", err, qid, key);
}

int bh_store_put_text(struct bh_store *s, const char *table, uint32_t qid, const char *text, bh_error *err)
{
    if (strcmp(table, "notes") != 0 && strcmp(table, "firewall") != 0)
        return bh_fail(err, EINVAL, "store: bad table");
    char sql[128];
    if (text) {
        snprintf(sql, sizeof sql, "INSERT OR REPLACE INTO %s(qid,text) VALUES(?,?)", table);
        return run(s, sql, "it", err, qid, text);
    }
    snprintf(sql, sizeof sql, "DELETE FROM %s WHERE qid=?", table);
    return run(s, sql, "i", err, qid);
}

int bh_store_put_label(struct bh_store *s, int index, const char *name, const char *color, bh_error *err)
{
    if (!name)
        return run(s, "DELETE FROM labels WHERE idx=?", "i", err, (uint32_t)index);
    return run(s, "INSERT OR REPLACE INTO labels(idx,name,color) VALUES(?,?,?)", "itt", err, (uint32_t)index, name, color);
}

int bh_store_txn(struct bh_store *s, int (*fn)(struct bh_store *, void *, bh_error *), void *ctx, bh_error *err)
{
    if (bh_store_begin(s, err) < 0)
        return -1;
    if (fn(s, ctx, err) < 0) {
        bh_store_rollback(s);
        return -1;
    }
    return bh_store_commit(s, err);
}

/* ---- loading ---- */

static int load_kv(struct bh_store *s, struct bh_app *app, const char *table, bh_error *err)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT qid,key,value FROM %s", table);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, "prepare");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        uint32_t qid = (uint32_t)sqlite3_column_int64(st, 0);
        const char *k = (const char *)sqlite3_column_text(st, 1);
        const char *v = (const char *)sqlite3_column_text(st, 2);
        struct bh_kvlist *l;
        if (!strcmp(table, "globals"))
            l = &app->globals;
        else {
            struct bh_qube *q = bh_app_find_qid(app, qid);
            if (!q)
                continue;
            l = !strcmp(table, "props") ? &q->props : !strcmp(table, "features") ? &q->features : &q->tags;
        }
        if (bh_kv_set(l, k, v) < 0) {
            sqlite3_finalize(st);
            return bh_fail_errno(err, "load");
        }
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s, err, "read");
}

static int load_text(struct bh_store *s, struct bh_app *app, const char *table, bh_error *err)
{
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT qid,text FROM %s", table);
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, "prepare");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        struct bh_qube *q = bh_app_find_qid(app, (uint32_t)sqlite3_column_int64(st, 0));
        if (!q)
            continue;
        char *t = strdup((const char *)sqlite3_column_text(st, 1));
        char **slot = !strcmp(table, "notes") ? &q->notes : &q->firewall;
        free(*slot);
        *slot = t;
    }
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : sql_fail(s, err, "read");
}

int bh_app_add_loaded(struct bh_app *app, uint32_t qid, const char *name, const char *klass, const char *uuid, bh_error *err);
int bh_app_add_label(struct bh_app *app, int idx, const char *name, const char *color);

int bh_store_load(struct bh_store *s, struct bh_app *app, bh_error *err)
{
    sqlite3_stmt *st;
    if (sqlite3_prepare_v2(s->db, "SELECT qid,name,klass,uuid FROM qubes ORDER BY qid", -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, "prepare");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (bh_app_add_loaded(app, (uint32_t)sqlite3_column_int64(st, 0), (const char *)sqlite3_column_text(st, 1),
                              (const char *)sqlite3_column_text(st, 2), (const char *)sqlite3_column_text(st, 3), err) < 0) {
            sqlite3_finalize(st);
            return -1;
        }
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE)
        return sql_fail(s, err, "read");
    if (sqlite3_prepare_v2(s->db, "SELECT idx,name,color FROM labels ORDER BY idx", -1, &st, NULL) != SQLITE_OK)
        return sql_fail(s, err, "prepare");
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        bh_app_add_label(app, sqlite3_column_int(st, 0), (const char *)sqlite3_column_text(st, 1),
                         (const char *)sqlite3_column_text(st, 2));
    sqlite3_finalize(st);
    if (load_kv(s, app, "props", err) < 0 || load_kv(s, app, "features", err) < 0 || load_kv(s, app, "tags", err) < 0 ||
        load_kv(s, app, "globals", err) < 0 || load_text(s, app, "notes", err) < 0 || load_text(s, app, "firewall", err) < 0)
        return -1;
    return 0;
}
