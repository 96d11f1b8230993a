#include "redeem_wait_store.h"

#include <sqlite3.h>

#include "log.h"

bool redeem_wait_store_migrate(struct store *s)
{
	return store_exec(s, "CREATE TABLE IF NOT EXISTS redeem_waiting ("
			     " channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"
			     " hseq INTEGER NOT NULL, since INTEGER NOT NULL,"
			     " PRIMARY KEY (channel_id, hseq));");
}

bool redeem_wait_store_put(struct store *s, const struct redeemed_claim *c)
{
	const char *sql = c->waits
			      ? "INSERT OR IGNORE INTO redeem_waiting (channel_id, hseq, "
				"since) VALUES (?1, ?2, strftime('%s', 'now'))"
			      : "DELETE FROM redeem_waiting WHERE channel_id = ?1 AND hseq = ?2";
	sqlite3_stmt *st = NULL;
	bool ok = sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
		  (sqlite3_bind_blob(st, 1, c->channel_id, MP_ID_LEN, SQLITE_STATIC) |
		   sqlite3_bind_int64(st, 2, c->hseq)) == SQLITE_OK &&
		  sqlite3_step(st) == SQLITE_DONE;
	if (!ok) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(c->channel_id, MP_ID_LEN, hex);
		log_err("store %s: recording whether the claim of channel %s epoch %u waits for "
			"funds: %s",
			store_path(s), hex, c->hseq, sqlite3_errmsg(store_db(s)));
	}
	sqlite3_finalize(st);
	return ok;
}

bool redeem_wait_store_load(struct store *s, redeem_wait_each_fn each, void *arg)
{
	const char *sql = "SELECT channel_id, hseq FROM redeem_waiting ORDER BY since, rowid";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
		return false;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(st, 0) != MP_ID_LEN)
			continue; /* the CHECK keeps these out */
		each(arg, sqlite3_column_blob(st, 0), (uint32_t)sqlite3_column_int64(st, 1));
	}
	if (rc != SQLITE_DONE)
		log_err("store %s: reading redeem_waiting: %s", store_path(s),
			sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE;
}
