/* Shared by the store's files (store.c: account, channels, checkpoints, in-flight Pays;
 * store_transfer.c: segments, offers, transfers out, segment claims): the connection and the
 * statement helpers. Every helper logs what failed with the store's path. */
#pragma once
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

struct wstore {
	const struct mp_clock *clock; /* protocol time for the rows it stamps */
	sqlite3 *db;
	char *path;
	sqlite3_stmt *checkpoint_get; /* the hot read while paying, prepared once */
};

void wsql_log_error(struct wstore *s, const char *what);
sqlite3_stmt *wsql_prep(struct wstore *s, const char *sql);
/* Step a write statement to completion and finalise it. */
bool wsql_run(struct wstore *s, sqlite3_stmt *st, const char *what);
bool wsql_exec(struct wstore *s, const char *sql);
int wsql_bind_blob(sqlite3_stmt *st, int i, const void *data, size_t len);
/* rcs is the OR of a statement's sqlite3_bind_* results; NULL (finalised, logged) unless 0. */
sqlite3_stmt *wsql_bound(struct wstore *s, sqlite3_stmt *st, int rcs, const char *what);
bool wsql_column_bytes(sqlite3_stmt *st, int col, uint8_t *out, size_t len);
/* A stored Signed (NULL for SQL NULL or undecodable bytes). */
MpSigned *wsql_column_stmt(sqlite3_stmt *st, int col);
/* Bind a Signed's serialised bytes (SQLITE_NOMEM if it cannot be encoded). */
int wsql_bind_stmt(sqlite3_stmt *st, int i, const MpSigned *s);
/* Version 3 (issue 6, customer transfers): segments, offers, transfers out, segment claims. */
bool wstore_migrate_transfer(struct wstore *s, int version);
/* The refunds table (store_refund.c), created if absent. */
bool wstore_migrate_refund(struct wstore *s);
