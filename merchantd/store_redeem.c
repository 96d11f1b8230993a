#include "store_redeem.h"

#include <sqlite3.h>
#include <string.h>

#include "log.h"
#include "store.h"

static bool prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK)
		return true;
	log_err("store: preparing '%s': %s", sql, sqlite3_errmsg(db));
	return false;
}

bool store_word_at_or_above(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
			    uint32_t index, uint32_t *j, uint8_t w[MP_HASH_LEN])
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st;
	if (!prepare(db,
		     "SELECT j, w FROM pay_journal WHERE channel_id = ? AND j >= ? AND seg_seq = ? "
		     "ORDER BY j LIMIT 1",
		     &st))
		return false;
	/* A parameter left NULL by a failed bind would match nothing: a store error, logged. */
	int rcs = sqlite3_bind_blob(st, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, index) | sqlite3_bind_int64(st, 3, seg_seq);
	if (rcs != SQLITE_OK) {
		log_err("store: binding the step word query (index %u): %s", index,
			sqlite3_errmsg(db));
		sqlite3_finalize(st);
		return false;
	}
	bool found = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_bytes(st, 1) == MP_HASH_LEN;
	if (found) {
		*j = (uint32_t)sqlite3_column_int64(st, 0);
		memcpy(w, sqlite3_column_blob(st, 1), MP_HASH_LEN);
	}
	sqlite3_finalize(st);
	return found;
}

bool store_oldest_unredeemed(struct store *s, uint64_t *at)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st;
	/* One index seek (pay_journal_channel) per channel with unredeemed payments. */
	if (!prepare(db,
		     "SELECT min((SELECT p.at FROM pay_journal p WHERE p.channel_id = c.channel_id "
		     "AND p.j > c.redeemed_end ORDER BY p.j LIMIT 1)) FROM channels c "
		     "WHERE c.last > c.redeemed_end",
		     &st))
		return false;
	int rc = sqlite3_step(st);
	bool ok = rc == SQLITE_ROW;
	if (ok)
		*at = sqlite3_column_type(st, 0) == SQLITE_NULL
			  ? 0
			  : (uint64_t)sqlite3_column_int64(st, 0);
	else
		log_err("store: oldest unredeemed payment: %s", sqlite3_errmsg(db));
	sqlite3_finalize(st);
	return ok;
}
