/* The pay journal's per-channel chain (journal_chain.h). Writing a Pay (store.c):
 *
 *   INSERT the row: prev_seq = the channel row's head_seq; mark = no head row, or the head in
 *     another segment or another block of 64 chain indices
 *   UPDATE the channel row: head_seq = the new row
 *
 * both in the batch's transaction, so the chain is as durable as the rows. A Pay's row touches
 * the journal's last page, the channel's row (written by the batch anyway) and, once in 64
 * chain indices of a channel, the partial index. Reading (store_find_pay, receipts, the
 * redeemer's words, the redemption lag) seeks a mark and walks back (JOURNAL_WALK). Compaction
 * deletes old redeemed rows: a walk that reaches a deleted row stops. Every older row of that
 * channel is redeemed too and as old (protocol time only moves forward), so it is deleted by
 * the same or the next compaction run; until then a lookup of it (a retry of a redeemed Pay
 * past T_dedupe) may miss it. A channel whose head row was compacted away starts a new chain
 * with its next Pay (marked, no link), even if another channel's row took that seq. */
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
