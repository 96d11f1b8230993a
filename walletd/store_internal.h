/* Shared by the store's files (store.c: account, channels, checkpoints, in-flight Pays;
 * store_transfer.c: segments, offers, transfers out, segment claims): the connection and the
 * statement helpers. Every helper logs what failed with the store's path. */
#pragma once
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"
#include "vault.h"

struct wstore {
	const struct mp_clock *clock; /* protocol time for the rows it stamps */
	sqlite3 *db;
	char *path;
	sqlite3_stmt *checkpoint_get; /* the hot read while paying, prepared once */
	bool sealed;		      /* secrets sealed under data_key (store_vault.c) */
	uint8_t data_key[WVAULT_KEY_LEN];
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
/* Version 4: the secret columns' CHECKs accept sealed values (store_vault.c). */
bool wstore_migrate_vault(struct wstore *s, int version);
/* Bind a secret (32 bytes): itself in a plain store, sealed under the data key with ad as its
 * associated data in an encrypted one. An SQLite error code (logged) if it cannot be sealed. */
int wsql_bind_secret(struct wstore *s, sqlite3_stmt *st, int i, const uint8_t *secret, size_t len,
		     const struct wvault_ad *ad);
/* A secret column of len bytes (opened in an encrypted store); false if absent, of the wrong
 * length, or (logged) sealed for another row or altered. */
bool wsql_column_secret(struct wstore *s, sqlite3_stmt *st, int col, uint8_t *out, size_t len,
			const struct wvault_ad *ad);
/* Columns (owner_seed, the row's chain key) of channel or offer id: the owner seed opened. */
bool wsql_column_owner_seed(struct wstore *s, sqlite3_stmt *st, const uint8_t id[MP_ID_LEN],
			    uint8_t seed[MP_SK_LEN]);

/* The in-flight Pay j of channel id acknowledged: its row deleted, the channel's last and
 * credit stored; inside the caller's transaction (wstore_inflight_done makes one). */
bool wstore_inflight_clear(struct wstore *s, const uint8_t id[MP_ID_LEN], uint32_t j, uint32_t last,
			   uint64_t credit);
