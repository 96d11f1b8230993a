/* merchantd's stored segments (docs/transfer.md): table segments holds each channel's
 * Transfer/Cap pairs (the exact bytes and the fields of the segment they start), the channel
 * row's seg_seq and seg_start name its current segment (the last pair), and table cap_outbox
 * holds one row per Cap we signed until the broker has acknowledged its CapNotice
 * (cap_outbox.c). epochs.seg_seq is the segment of a handed-off epoch's end point.
 *
 * Writes run inside a batch's transaction on the store thread (store_commit_batch), or as
 * store-thread jobs (the outbox's answers); reads on the loop's connection. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "merchant.h"
#include "segments.h"

struct store;

/* At store open: create the tables and columns that are missing. */
bool segment_store_migrate(struct store *s);

/* At start-up, after the channel row set ch->seg_seq and ch->seg_start: push the stored pairs
 * 1..seg_seq (segments.h). False if they are missing, out of order or do not match the row. */
bool segment_store_load(struct store *s, struct channel *ch);

/* Store thread, in the batch transaction: a Cap we signed. The pair, the channel row moved to
 * segment row->seg_seq at its base point (start, root; no credit), and an outbox row. */
bool segment_store_cap(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		       const struct segment_row *row, int64_t now);
/* Store thread, in the batch transaction: pairs received with a Handoff (idempotent: a stored
 * pair is kept). */
bool segment_store_put(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		       const struct segment_row *row);

/* Cap outbox rows: PENDING until the broker answers OK / DUPLICATE_OK (DELIVERED) or CONFLICT
 * (CONFLICT, kept for the operator). */
enum cap_outbox_state {
	CAP_OUTBOX_PENDING = 0,
	CAP_OUTBOX_DELIVERED = 1,
	CAP_OUTBOX_CONFLICT = 2,
};
/* Rows in a state; -1 on a store error. */
int64_t cap_outbox_count(struct store *s, enum cap_outbox_state state);
/* The oldest PENDING row created at or after (created_at, rowid) > the given cursor (0, 0 for
 * the first). False if there is none (or on a store error, logged). */
bool cap_outbox_next(struct store *s, int64_t after_rowid, uint8_t channel_id[MP_ID_LEN],
		     uint32_t *seg_seq, int64_t *rowid);
/* Store thread: the broker's answer to a row's notice. */
bool cap_outbox_mark(struct store *s, const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
		     enum cap_outbox_state state, const char *detail);
