/* The goods part of store compaction (compact.c, docs/goods.md "Retention"): key-release offers
 * whose deadline is older than [merchant] goods_retention, and finished purchases (every chunk
 * paid) started before it, are deleted, at most `limit` rows of each a step. An offer past that
 * age can no longer be disputed (the broker takes Disputes until the deadline + T_dispute, and
 * the merchant answers within dispute_answer), and a finished purchase is only served again
 * for free. Unfinished purchases are never deleted: a sent chunk may still be unpaid. Store
 * thread only. */
#pragma once
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* One step: *deleted += the rows deleted; *more: a full batch went, so call again. False with
 * err (the SQLite message) on a failure (each DELETE is its own transaction: rows deleted
 * before it stay deleted, which is harmless). */
bool compact_goods_step(sqlite3 *db, int64_t cutoff, int limit, uint64_t *deleted, bool *more,
			char *err, size_t errlen);
