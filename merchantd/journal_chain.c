/* The pay journal's per-channel chain (journal_chain.h). Writing a Pay (store.c):
 *
 *   INSERT the row: prev_seq = the channel's head (its journal_heads entry, else the channel
 *     row's head_seq); mark = no head row, or the head in another segment or another block of
 *     64 chain indices
 *   journal_heads (TEMP, the writer's connection): the channel's head = the new row
 *
 * in the batch's transaction; the channel row takes its head and Pay state at the next
 * checkpoint (or at open after a crash). A Pay's row touches the journal's last page and, once
 * in 64 chain indices of a channel, the partial index. Reading (store_find_pay, receipts, the
 * redeemer's words, the redemption lag) seeks a mark and walks back (JOURNAL_WALK). Compaction
 * deletes old redeemed rows: a walk that reaches a deleted row stops. Every older row of that
 * channel is redeemed too and as old (protocol time only moves forward), so it is deleted by
 * the same or the next compaction run; until then a lookup of it (a retry of a redeemed Pay
 * past T_dedupe) may miss it. A channel whose head row was compacted away starts a new chain
 * with its next Pay (marked, no link). Compaction keeps the journal's newest row, so SQLite
 * never gives a seq twice (it gives max(seq) + 1); a store from before that rule may have
 * given one again, which the join on channel_id tells apart. */
#include "journal_chain.h"

#include <sqlite3.h>

#include "log.h"
#include "store.h"

static const char fill_sql[] =
    "BEGIN IMMEDIATE;"
    "ALTER TABLE pay_journal ADD COLUMN prev_seq INTEGER;"
    "ALTER TABLE pay_journal ADD COLUMN mark INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE channels ADD COLUMN head_seq INTEGER;"
    "UPDATE pay_journal SET mark = 1, prev_seq = l.prev FROM"
    " (SELECT seq, lag(seq) OVER (PARTITION BY channel_id ORDER BY seq) AS prev"
    "  FROM pay_journal) AS l WHERE l.seq = pay_journal.seq;"
    "UPDATE channels SET head_seq ="
    " (SELECT max(p.seq) FROM pay_journal p WHERE p.channel_id = channels.channel_id);"
    "COMMIT;";

bool journal_chain_migrate(struct store *s)
{
	if (!store_has_column(s, "SELECT prev_seq, mark FROM pay_journal LIMIT 0")) {
		log_info("store %s: linking each channel's journal rows (one pass)", store_path(s));
		if (!store_exec(s, fill_sql)) {
			store_exec(s, "ROLLBACK;");
			return false;
		}
	}
	return store_exec(s, "CREATE INDEX IF NOT EXISTS pay_journal_mark ON pay_journal"
			     " (channel_id, j) WHERE mark = 1;"
			     "DROP INDEX IF EXISTS pay_journal_channel;");
}

/* The Pay state of a channel row, from its newest journal row p. */
#define FOLD_SET                                                                                   \
	"UPDATE channels SET last = p.j, w_last = p.w, credit = p.credit, "                        \
	"last_order_ref = p.order_ref, last_code = p.code, last_price = p.price, head_seq = "      \
	"p.seq "

static const char heads_table_sql[] =
    "PRAGMA temp_store = MEMORY;"
    "CREATE TEMP TABLE IF NOT EXISTS journal_heads ("
    " channel_id BLOB PRIMARY KEY, head_seq INTEGER NOT NULL, first_seq INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS temp.journal_heads_first ON journal_heads (first_seq);";

/* A store from before lazy channel rows had every row current: its synced seq is the newest.
 * A channel's newest row above the synced seq is folded in unless the channel row's head_seq
 * is newer: a fold before a direct write (a new segment, a takeover) set it to a row above the
 * synced seq, which compaction keeps, and everything older is in the row. A head_seq naming no
 * row of the channel (NULL, or a row compacted away) cannot be such a fold: when the direct
 * write came, the channel had no row above the synced seq (it would have had a journal_heads
 * entry, folded then), so its rows above it all came later. (Before lazy rows, compaction could
 * delete the journal's newest rows and SQLite gave their seqs again: an upgraded store's
 * head_seq can be above every row.) */
static const char recover_sql[] =
    "BEGIN IMMEDIATE;"
    "INSERT OR IGNORE INTO meta (key, value) VALUES ('journal_synced_seq',"
    " (SELECT coalesce(max(seq), 0) FROM pay_journal));"
    "WITH newest(channel_id, seq) AS (SELECT channel_id, max(seq) FROM pay_journal"
    "  WHERE seq > (SELECT value FROM meta WHERE key = 'journal_synced_seq')"
    "  GROUP BY channel_id) " FOLD_SET "FROM newest n JOIN pay_journal p ON p.seq = n.seq"
    " WHERE channels.channel_id = n.channel_id"
    " AND (n.seq > channels.head_seq OR NOT EXISTS (SELECT 1 FROM pay_journal h"
    "  WHERE h.seq = channels.head_seq AND h.channel_id = channels.channel_id));"
    "UPDATE meta SET value = (SELECT coalesce(max(seq), 0) FROM pay_journal)"
    " WHERE key = 'journal_synced_seq'"
    " AND value < (SELECT coalesce(max(seq), 0) FROM pay_journal);"
    "COMMIT;";

bool journal_heads_open(struct store *s)
{
	if (!store_exec(s, heads_table_sql))
		return false;
	if (store_exec(s, recover_sql))
		return true;
	store_exec(s, "ROLLBACK;");
	log_err("store %s: folding the journal's newest rows into the channel rows failed",
		store_path(s));
	return false;
}

int journal_bind_head(sqlite3_stmt *st, int64_t head)
{
	return head > 0 ? sqlite3_bind_int64(st, 9, head) : sqlite3_bind_null(st, 9);
}

/* The channels to fold: oldest unfolded row at or below ?1, at most ?2 of them, oldest first
 * (first_seq is a journal seq: no two entries share one). */
#define FOLD_PICK                                                                                  \
	"SELECT channel_id, head_seq FROM temp.journal_heads WHERE first_seq <= ?1"                \
	" ORDER BY first_seq LIMIT ?2"

enum { FOLD_ROWS, FOLD_FORGET, FOLD_SYNCED, FOLD_LEFT, FOLD_STEPS };

static const char *const fold_sql[FOLD_STEPS] = {
    [FOLD_ROWS] =
	"WITH f AS (" FOLD_PICK ") " FOLD_SET "FROM f JOIN pay_journal p ON p.seq = f.head_seq"
	" WHERE channels.channel_id = f.channel_id",
    [FOLD_FORGET] = "DELETE FROM temp.journal_heads WHERE channel_id IN"
		    " (SELECT channel_id FROM (" FOLD_PICK "))",
    /* every row below the oldest one left unfolded is in its channel row */
    [FOLD_SYNCED] = "UPDATE meta SET value = coalesce((SELECT min(first_seq) - 1 FROM"
		    " temp.journal_heads), (SELECT coalesce(max(seq), 0) FROM pay_journal))"
		    " WHERE key = 'journal_synced_seq'",
    [FOLD_LEFT] = "SELECT EXISTS (SELECT 1 FROM temp.journal_heads WHERE first_seq <= ?1),"
		  " EXISTS (SELECT 1 FROM temp.journal_heads)",
};

/* One statement of a fold; for FOLD_LEFT its two answers. */
static bool fold_step(sqlite3 *db, int step, int64_t upto, int limit, bool left[2])
{
	sqlite3_stmt *st = NULL;
	bool ok = sqlite3_prepare_v2(db, fold_sql[step], -1, &st, NULL) == SQLITE_OK;
	int params = ok ? sqlite3_bind_parameter_count(st) : 0;
	ok = ok && (params < 1 || sqlite3_bind_int64(st, 1, upto) == SQLITE_OK) &&
	     (params < 2 || sqlite3_bind_int(st, 2, limit) == SQLITE_OK);
	int rc = ok ? sqlite3_step(st) : SQLITE_ERROR;
	if (step == FOLD_LEFT && rc == SQLITE_ROW) {
		left[0] = sqlite3_column_int(st, 0) != 0;
		left[1] = sqlite3_column_int(st, 1) != 0;
		rc = SQLITE_DONE;
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE;
}

bool journal_heads_checkpoint(struct store *s, int64_t upto, int limit, bool *more, bool *unfolded)
{
	sqlite3 *db = store_db(s);
	bool left[2] = {true, true};
	for (int step = 0; step < FOLD_STEPS; step++)
		if (!fold_step(db, step, upto, limit, left)) {
			log_err(
			    "store %s: folding the paid channels' journal rows into their rows: %s",
			    store_path(s), sqlite3_errmsg(db));
			return false;
		}
	*more = left[0];
	*unfolded = left[1];
	return true;
}

bool journal_heads_fold(struct store *s, const uint8_t channel_id[MP_ID_LEN])
{
	sqlite3 *db = store_db(s);
	sqlite3_stmt *fold = NULL, *forget = NULL;
	bool ok = sqlite3_prepare_v2(db,
				     FOLD_SET "FROM temp.journal_heads t JOIN pay_journal p"
					      " ON p.seq = t.head_seq WHERE t.channel_id = ?1"
					      " AND channels.channel_id = ?1",
				     -1, &fold, NULL) == SQLITE_OK &&
		  sqlite3_prepare_v2(db, "DELETE FROM temp.journal_heads WHERE channel_id = ?1", -1,
				     &forget, NULL) == SQLITE_OK &&
		  sqlite3_bind_blob(fold, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) == SQLITE_OK &&
		  sqlite3_bind_blob(forget, 1, channel_id, MP_ID_LEN, SQLITE_STATIC) == SQLITE_OK &&
		  sqlite3_step(fold) == SQLITE_DONE && sqlite3_step(forget) == SQLITE_DONE;
	if (!ok)
		log_err("store %s: folding a channel's journal row into its row: %s", store_path(s),
			sqlite3_errmsg(db));
	sqlite3_finalize(fold);
	sqlite3_finalize(forget);
	return ok;
}
