/* The pay journal's per-channel chain (journal_chain.c). Each journal row links to the
 * channel's previous row (prev_seq) and the channel row to its newest (head_seq); a row is
 * marked when it starts a block of 64 chain indices or a segment. Only marked rows are indexed
 * by (channel_id, j), so a batch of Pays no longer inserts one entry per Pay at a random place
 * of an index (the cost that bounded the pay path: docs/performance.md "The pay journal"). A
 * lookup by (channel, j) seeks the first marked row at or above j and walks back at most the
 * 64 rows of a block. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "ids.h"

struct store;

/* The rows of channel ?1 from the first mark at or above chain index ?2 (else the channel's
 * newest row) back to the first row below ?2, as `walk(seq)`: every row of the channel with
 * j >= ?2 up to that mark. A statement goes on with `SELECT ... FROM walk JOIN pay_journal p
 * ON p.seq = walk.seq ...`. */
#define JOURNAL_WALK                                                                               \
	"WITH RECURSIVE walk(seq, prev, j) AS ("                                                   \
	" SELECT p.seq, p.prev_seq, p.j FROM pay_journal p WHERE p.channel_id = ?1 AND p.seq ="    \
	" coalesce((SELECT m.seq FROM pay_journal m WHERE m.channel_id = ?1 AND m.mark = 1"        \
	"  AND m.j >= ?2 ORDER BY m.j LIMIT 1),"                                                   \
	"  (SELECT c.head_seq FROM channels c WHERE c.channel_id = ?1))"                           \
	" UNION ALL"                                                                               \
	" SELECT p.seq, p.prev_seq, p.j FROM walk w JOIN pay_journal p ON p.seq = w.prev"          \
	" WHERE w.j >= ?2 AND p.seq < w.seq AND p.channel_id = ?1) "

/* Stores written before the chain: links and marks for every row (each row marked), the
 * channels' heads, the partial index, and the old (channel_id, j) index dropped. */
bool journal_chain_migrate(struct store *s);
