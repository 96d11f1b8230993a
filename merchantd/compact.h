/* Store compaction, on the store thread in bounded steps, every compact_interval seconds and on
 * the admin method store.compact:
 *  - the pay journal: a row goes once the broker has credited its index (j <= the channel's
 *    redeemed_end) and it is older than T_dedupe (protocol.md section 6, step 7). The channel
 *    row holds the channel's point, credit and last Pay with its answer once a fold took it
 *    in (journal_chain.h: rows above journal_synced_seq are kept until then), so folding a row
 *    into it is deleting the row; the last Pay of a channel stays answerable from that row
 *    until the channel record goes;
 *  - the redemption outbox: answered Redeems older than outbox_retention;
 *  - goods: key-release offers whose deadline is older than goods_retention and finished
 *    purchases started before it (compact_goods.h);
 *  - then the freed pages go back to the file system (incremental vacuum) and the WAL is
 *    checkpointed and truncated. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "merchant.h"

struct compact_report {
	uint64_t journal_rows; /* pay journal rows folded away */
	uint64_t outbox_rows;  /* answered Redeems deleted */
	uint64_t goods_rows;   /* offers and finished purchases deleted */
	uint64_t pages_before, pages_after, pages_freed;
	int64_t file_bytes_before, file_bytes_after; /* the main store file */
	int64_t wal_bytes_before, wal_bytes_after;
	bool checkpointed; /* the WAL was checkpointed and truncated */
	unsigned steps;
};

struct compact_totals {
	uint64_t runs, journal_rows, outbox_rows, goods_rows, pages_freed;
};

bool compactor_start(struct merchant *m);
/* No further steps; waiting callers are answered. Before batch_drain at shutdown. */
void compactor_stop(struct merchant *m);
void compactor_free(struct merchant *m);

/* Run a compaction now (or right after the one running); done(arg, ok, report, detail) when it
 * ends. False if too many callers are already waiting. */
typedef void (*compact_done_fn)(void *arg, bool ok, const struct compact_report *r,
				const char *detail);
bool compact_run(struct merchant *m, compact_done_fn done, void *arg);
const struct compact_totals *compact_totals(const struct merchant *m);
