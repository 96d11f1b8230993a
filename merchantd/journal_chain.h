/* The pay journal's per-channel chain (journal_chain.c). Each journal row links to the
 * channel's previous row (prev_seq) and the channel row to its newest (head_seq); a row is
 * marked when it starts a block of 64 chain indices or a segment. Only marked rows are indexed
 * by (channel_id, j), so a batch of Pays no longer inserts one entry per Pay at a random place
 * of an index (the cost that bounded the pay path: docs/performance.md "The pay journal"). A
 * lookup by (channel, j) seeks the first marked row at or above j and walks back at most the
 * 64 rows of a block.
 *
 * The channel row's state after its last Pay (last, w_last, credit, last_order_ref, last_code,
 * last_price, head_seq) is written lazily: a batch journals its Pays and nothing else of the
 * channel, and the writer's connection keeps each paid channel's newest row in a TEMP table
 * (journal_heads, memory only) until a checkpoint folds those rows into the channel rows: once
 * JOURNAL_FOLD_MS has passed since the last one, the channels paid up to then are folded in the
 * next batches' transactions, JOURNAL_FOLD_PER_BATCH of them a batch (oldest first, so a fold
 * of many channels is spread over batches); when Pays stop (journal_sync.c) and at close, all. The
 * journal row holds every one of those values, so nothing is lost with the TEMP table: meta
 * `journal_synced_seq` is a seq at or below which every row is in its channel row (just below
 * the oldest unfolded row; the journal's newest when none is), and opening the store
 * folds every channel's newest row above it into its channel row (journal_heads_recover)
 * before anything reads the rows. A statement that writes those columns directly (a new
 * segment, a takeover) folds that channel first (journal_heads_fold), so a later checkpoint
 * never writes an older Pay over it, and recovery takes a row only if it is newer than the
 * channel's head_seq. Compaction deletes no row above journal_synced_seq and never the
 * journal's newest row, so a seq is never reused (SQLite gives a new row max(seq) + 1).
 * docs/performance.md "Channel rows written lazily". */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "ids.h"

struct store;
struct sqlite3_stmt;

/* The rows of channel ?1 from the first mark at or above chain index ?2 (else the channel's
 * newest row: ?9 if bound, the newest committed row the loop knows of, else the writer's
 * journal_heads, else the channel row's head_seq) back to the first row below ?2, as `walk(seq)`:
 * every row of the channel with j >= ?2 up to that mark. A statement goes on with `SELECT ... FROM
 * walk JOIN pay_journal p ON p.seq = walk.seq ...`. */
#define JOURNAL_WALK                                                                               \
	"WITH RECURSIVE walk(seq, prev, j) AS ("                                                   \
	" SELECT p.seq, p.prev_seq, p.j FROM pay_journal p WHERE p.channel_id = ?1 AND p.seq ="    \
	" coalesce((SELECT m.seq FROM pay_journal m WHERE m.channel_id = ?1 AND m.mark = 1"        \
	"  AND m.j >= ?2 ORDER BY m.j LIMIT 1), ?9,"                                               \
	"  (SELECT t.head_seq FROM temp.journal_heads t WHERE t.channel_id = ?1),"                 \
	"  (SELECT c.head_seq FROM channels c WHERE c.channel_id = ?1))"                           \
	" UNION ALL"                                                                               \
	" SELECT p.seq, p.prev_seq, p.j FROM walk w JOIN pay_journal p ON p.seq = w.prev"          \
	" WHERE w.j >= ?2 AND p.seq < w.seq AND p.channel_id = ?1) "

/* Stores written before the chain: links and marks for every row (each row marked), the
 * channels' heads, the partial index, and the old (channel_id, j) index dropped. */
bool journal_chain_migrate(struct store *s);

/* Under load, how long a paid channel's row may lag behind its journal (the next batch after
 * it folds). A fold writes each channel paid since the last one: at 100,000 channels paid
 * about once every 7 s each, a 1 s fold rewrote a channel row (a random page) per Pay and
 * bounded the pay path (docs/performance.md, "Folds every 10 s"). The cost of a longer lag:
 * a start after a crash folds up to this much more journal, compaction keeps it. */
#define JOURNAL_FOLD_MS 10000
/* When batches stop, the rows are folded this long (twice) after the last (journal_sync.c). */
#define JOURNAL_SYNC_MS 1000

/* At store open, on every connection: the TEMP table, and the rows of Pays journalled after
 * the last checkpoint folded into their channel rows (a crash leaves them unfolded). */
bool journal_heads_open(struct store *s);
/* Binds ?9 of a JOURNAL_WALK statement: the channel's newest committed journal row known to
 * the caller (struct channel's journal_head), or NULL when 0. */
int journal_bind_head(struct sqlite3_stmt *st, int64_t head);
/* Channels a fold takes in one batch: a fold of many channels is spread over batches. */
#define JOURNAL_FOLD_PER_BATCH 512

/* Writer, in a transaction: the newest row of each paid channel whose oldest unfolded row is at
 * or below upto folded into its channel row, at most limit channels (oldest first; -1: no
 * limit), and journal_synced_seq moved to just below the oldest row left unfolded. *more: such
 * channels are left; *unfolded: any channel is. */
bool journal_heads_checkpoint(struct store *s, int64_t upto, int limit, bool *more, bool *unfolded);
/* Writer, in a transaction, before a statement writes channel_id's Pay state directly. */
bool journal_heads_fold(struct store *s, const uint8_t channel_id[MP_ID_LEN]);
