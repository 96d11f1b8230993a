#include "store_redeem.h"

#include <sqlite3.h>
#include <string.h>

#include "journal_chain.h"
#include "log.h"
#include "merchant.h"
#include "store.h"

static bool prepare(sqlite3 *db, const char *sql, sqlite3_stmt **st)
{
	if (sqlite3_prepare_v2(db, sql, -1, st, NULL) == SQLITE_OK)
		return true;
	log_err("store: preparing '%s': %s", sql, sqlite3_errmsg(db));
	return false;
}

bool store_word_at_or_above(struct store *s, const struct channel *ch, uint32_t seg_seq,
			    uint32_t index, uint32_t *j, uint8_t w[MP_HASH_LEN])
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *st;
	/* The walk finds the rows at or above index up to the first mark above it; past that mark
	 * the segment's first row at or above index is a mark itself (a segment's first row is
	 * marked), found by the second part. */
	if (!prepare(db,
		     JOURNAL_WALK
		     "SELECT j, w FROM (SELECT p.j, p.w FROM walk JOIN pay_journal p ON "
		     "p.seq = walk.seq WHERE p.j >= ?2 AND p.seg_seq = ?3 UNION ALL "
		     "SELECT * FROM (SELECT m.j, m.w FROM pay_journal m WHERE "
		     "m.channel_id = ?1 AND m.mark = 1 AND m.j >= ?2 AND "
		     "m.seg_seq = ?3 ORDER BY m.j LIMIT 1)) ORDER BY j LIMIT 1",
		     &st))
		return false;
	/* A parameter left NULL by a failed bind would match nothing: a store error, logged. */
	int rcs = sqlite3_bind_blob(st, 1, ch->id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(st, 2, index) | sqlite3_bind_int64(st, 3, seg_seq) |
		  journal_bind_head(st, ch->journal_head);
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

/* The time of channel ch's first payment above its redeemed end into *at (0 if none is
 * journalled): one mark seek and a walk of at most a block (journal_chain.h). */
static bool first_unredeemed_at(sqlite3_stmt *walk, const struct channel *ch, uint64_t *at)
{
	*at = 0;
	int rc = (sqlite3_bind_blob(walk, 1, ch->id, MP_ID_LEN, SQLITE_STATIC) |
		  sqlite3_bind_int64(walk, 2, (int64_t)ch->redeemed_end + 1) |
		  journal_bind_head(walk, ch->journal_head)) == SQLITE_OK
		     ? sqlite3_step(walk)
		     : SQLITE_MISUSE;
	if (rc == SQLITE_ROW)
		*at = (uint64_t)sqlite3_column_int64(walk, 0);
	sqlite3_reset(walk);
	sqlite3_clear_bindings(walk);
	return rc == SQLITE_ROW || rc == SQLITE_DONE;
}

bool store_load_unredeemed_since(struct store *s, struct table *channels)
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *walk = NULL;
	bool ok =
	    prepare(db,
		    JOURNAL_WALK "SELECT p.at FROM walk JOIN pay_journal p ON p.seq = walk.seq "
				 "WHERE p.j >= ?2 ORDER BY p.j LIMIT 1",
		    &walk);
	TABLE_FOREACH(channels, struct channel, ch)
	{
		if (ch->durable_last <= ch->redeemed_end)
			continue;
		if (!walk || !first_unredeemed_at(walk, ch, &ch->unredeemed_since)) {
			ch->unredeemed_since = 1; /* unknown: as old as can be, never too young */
			if (walk && ok)
				log_err("store: the first unredeemed payment's time: %s",
					sqlite3_errmsg(db));
			ok = false;
		}
	}
	sqlite3_finalize(walk);
	return ok;
}
