#include "too_late_store.h"

#include <sqlite3.h>

#include "log.h"

bool too_late_store_migrate(struct store *s)
{
	return store_exec(s, "CREATE TABLE IF NOT EXISTS too_late_epochs ("
			     " channel_id BLOB NOT NULL CHECK (length(channel_id) = 16),"
			     " hseq INTEGER NOT NULL, claim_index INTEGER NOT NULL,"
			     " lost INTEGER NOT NULL, PRIMARY KEY (channel_id, hseq));");
}

bool too_late_store_put(struct store *s, const struct redeemed_claim *c)
{
	const char *sql = "INSERT OR IGNORE INTO too_late_epochs (channel_id, hseq, claim_index, "
			  "lost) VALUES (?, ?, ?, ?)";
	sqlite3_stmt *st = NULL;
	bool ok =
	    sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) == SQLITE_OK &&
	    (sqlite3_bind_blob(st, 1, c->channel_id, MP_ID_LEN, SQLITE_STATIC) |
	     sqlite3_bind_int64(st, 2, c->hseq) | sqlite3_bind_int64(st, 3, c->index) |
	     sqlite3_bind_int64(
		 st, 4, (sqlite3_int64)(c->lost > INT64_MAX ? INT64_MAX : c->lost))) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_DONE;
	if (!ok) {
		char hex[MP_HEX_ID_LEN + 1];
		mp_hex_encode(c->channel_id, MP_ID_LEN, hex);
		log_err("store %s: recording epoch %u of channel %s as TOO_LATE: %s", store_path(s),
			c->hseq, hex, sqlite3_errmsg(store_db(s)));
	}
	sqlite3_finalize(st);
	return ok;
}

bool too_late_store_load(struct store *s, too_late_each_fn each, void *arg)
{
	const char *sql = "SELECT channel_id, hseq, lost FROM too_late_epochs ORDER BY rowid";
	sqlite3_stmt *st = NULL;
	if (sqlite3_prepare_v2(store_db(s), sql, -1, &st, NULL) != SQLITE_OK) {
		log_err("store %s: %s: %s", store_path(s), sql, sqlite3_errmsg(store_db(s)));
		return false;
	}
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		if (sqlite3_column_bytes(st, 0) != MP_ID_LEN)
			continue; /* the CHECK keeps these out */
		each(arg, sqlite3_column_blob(st, 0), (uint32_t)sqlite3_column_int64(st, 1),
		     (uint64_t)sqlite3_column_int64(st, 2));
	}
	if (rc != SQLITE_DONE)
		log_err("store %s: reading too_late_epochs: %s", store_path(s),
			sqlite3_errmsg(store_db(s)));
	sqlite3_finalize(st);
	return rc == SQLITE_DONE;
}
