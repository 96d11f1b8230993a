#include "close_store.h"

#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "store.h"

bool close_store_migrate(struct store *s)
{
	char *err = NULL;
	if (sqlite3_exec(store_db(s),
			 "CREATE TABLE IF NOT EXISTS closes ("
			 " channel_id BLOB PRIMARY KEY CHECK (length(channel_id) = 16),"
			 " hseq INTEGER NOT NULL, final_index INTEGER NOT NULL,"
			 " stmt BLOB NOT NULL);",
			 NULL, NULL, &err) == SQLITE_OK)
		return true;
	log_err("store %s: creating the closes table: %s", store_path(s), err ? err : "?");
	sqlite3_free(err);
	return false;
}

static bool run(struct store *s, const char *sql, sqlite3_stmt *st, int rcs)
{
	bool ok = rcs == SQLITE_OK && sqlite3_step(st) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return ok;
}

static bool put_close(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		      const struct custody_write *cw)
{
	const char *sql =
	    "INSERT INTO closes (channel_id, hseq, final_index, stmt) VALUES (?, ?, ?, ?)";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return run(s, sql, st, SQLITE_ERROR);
	int rcs = sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, cw->closed_hseq) |
		  sqlite3_bind_int64(st, 3, cw->end_index) |
		  sqlite3_bind_blob(st, 4, cw->handoff.data, (int)cw->handoff.len, SQLITE_STATIC);
	return run(s, sql, st, rcs);
}

/* The epoch we held ends at final_index: redemption claims it from table epochs. */
static bool put_epoch(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		      const struct custody_write *cw)
{
	const char *sql = "INSERT OR REPLACE INTO epochs (channel_id, hseq, end_index, w_end, "
			  "redeemed_end, seg_seq) VALUES (?, ?, ?, ?, ?, ?)";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return run(s, sql, st, SQLITE_ERROR);
	int rcs =
	    sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
	    sqlite3_bind_int64(st, 2, cw->closed_hseq) | sqlite3_bind_int64(st, 3, cw->end_index) |
	    sqlite3_bind_blob(st, 4, cw->w_end, MP_HASH_LEN, SQLITE_STATIC) |
	    sqlite3_bind_int64(st, 5, cw->redeemed_end) | sqlite3_bind_int64(st, 6, cw->end_seg);
	return run(s, sql, st, rcs);
}

static bool set_closed(struct store *s, const uint8_t channel_id[MP_ID_LEN])
{
	const char *sql = "UPDATE channels SET state = ? WHERE channel_id = ?";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK)
		return run(s, sql, st, SQLITE_ERROR);
	int rcs = sqlite3_bind_int(st, 1, CHANNEL_CLOSED) |
		  sqlite3_bind_blob(st, 2, channel_id, MP_ID_LEN, SQLITE_STATIC);
	return run(s, sql, st, rcs);
}

bool close_store_put(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		     const struct custody_write *cw)
{
	return put_close(s, channel_id, cw) && put_epoch(s, channel_id, cw) &&
	       set_closed(s, channel_id);
}

bool close_store_load(struct store *s, struct channel *ch)
{
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), "SELECT stmt FROM closes WHERE channel_id = ?", -1, &st,
			       NULL) != SQLITE_OK)
		return false;
	bool ok = sqlite3_bind_blob(st, 1, ch->id, MP_ID_LEN, SQLITE_STATIC) == SQLITE_OK &&
		  sqlite3_step(st) == SQLITE_ROW;
	size_t len = ok ? (size_t)sqlite3_column_bytes(st, 0) : 0;
	ok = ok && len > 0 && (ch->close = malloc(len)) != NULL;
	if (ok) {
		memcpy(ch->close, sqlite3_column_blob(st, 0), len);
		ch->close_len = len;
	}
	sqlite3_finalize(st);
	return ok;
}
