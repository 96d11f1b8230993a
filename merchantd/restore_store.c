#include "restore_store.h"

#include <sqlite3.h>

#include "log.h"

bool restore_store_migrate(struct store *s)
{
	return store_exec(
	    s, "CREATE TABLE IF NOT EXISTS restored_channels ("
	       " channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
	       " hseq INTEGER NOT NULL, marked_at INTEGER NOT NULL, confirmed_at INTEGER);");
}

/* One statement; `now` is bound to its parameter, if it has one. */
static bool exec_at(struct store *s, const char *sql, uint64_t now)
{
	sqlite3_stmt *st = NULL;
	bool ok = sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
		  (sqlite3_bind_parameter_count(st) == 0 ||
		   sqlite3_bind_int64(st, 1, (sqlite3_int64)now) == SQLITE_OK) &&
		  sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return ok;
}

bool restore_store_mark(struct store *s, uint64_t now)
{
	if (!exec_at(s, "BEGIN IMMEDIATE", 0))
		return false;
	bool ok =
	    exec_at(s,
		    "INSERT OR REPLACE INTO restored_channels (channel_id, hseq, marked_at, "
		    "confirmed_at) SELECT channel_id, hseq, ?, NULL FROM channels WHERE state = 1",
		    now) &&
	    exec_at(s, "INSERT OR REPLACE INTO meta (key, value) VALUES ('restored_at', ?)", now);
	return exec_at(s, ok ? "COMMIT" : "ROLLBACK", 0) && ok;
}

static bool load_restored_at(struct store *s, uint64_t *restored_at)
{
	sqlite3_stmt *st = NULL;
	*restored_at = 0;
	if (sqlite3_prepare_v2(store_db(s), "SELECT value FROM meta WHERE key = 'restored_at'", -1,
			       &st, NULL) != SQLITE_OK) {
		log_err("store %s: reading restored_at: %s", store_path(s),
			sqlite3_errmsg(store_db(s)));
		return false;
	}
	int rc = sqlite3_step(st);
	if (rc == SQLITE_ROW)
		*restored_at = (uint64_t)sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

bool restore_store_load(struct store *s, uint64_t *restored_at, restore_each_fn each, void *arg)
{
	const char *sql = "SELECT channel_id FROM restored_channels WHERE confirmed_at IS NULL";
	sqlite3_stmt *st = NULL;
	if (!load_restored_at(s, restored_at))
		return false;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
		return false;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW)
		if (sqlite3_column_bytes(st, 0) == MP_ID_LEN) /* the CHECK keeps others out */
			each(arg, sqlite3_column_blob(st, 0));
	if (rc != SQLITE_DONE)
		log_err("store %s: reading restored_channels: %s", store_path(s),
			sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE;
}

bool restore_store_confirm(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint64_t now,
			   bool *changed)
{
	const char *sql = "UPDATE restored_channels SET confirmed_at = ? WHERE channel_id = ? AND "
			  "confirmed_at IS NULL";
	sqlite3_stmt *st = NULL;
	bool ok = sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
		  (sqlite3_bind_int64(st, 1, (sqlite3_int64)now) |
		   sqlite3_bind_blob(st, 2, channel_id, MP_ID_LEN, SQLITE_STATIC)) == SQLITE_OK &&
		  sqlite3_step(st) == SQLITE_DONE;
	*changed = ok && sqlite3_changes(store_db(s)) > 0;
	if (!ok) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(channel_id, MP_ID_LEN, hex);
		log_err("store %s: confirming the custody of channel %s: %s", store_path(s), hex,
			sqlite3_errmsg(store_db(s)));
	}
	sqlite3_finalize(st);
	return ok;
}
