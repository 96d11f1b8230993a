/* merchantd's stored Closes (protocol.md sections 5, 6 "Close", 10; docs/close.md): the Close
 * we signed on a CloseRequest from the current owner ends our epoch. It is written in one
 * transaction of the group commit with the epoch's end (table epochs, so that redemption still
 * claims up to final_index) and the channel row's state CLOSED, after the channel's pending
 * Pays and before the CloseResp that carries it. Table closes (created here). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "merchant.h"

struct store;

/* At store open: create the table if it is missing. */
bool close_store_migrate(struct store *s);
/* Store thread, inside the batch transaction: cw->handoff holds the Close's bytes (hseq = the
 * epoch it ends), closed_hseq/end_* the epoch's end at final_index. */
bool close_store_put(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		     const struct custody_write *cw);
/* At start-up, for a channel in state CLOSED: ch->close, ch->close_len from the stored Close;
 * false if there is none. */
bool close_store_load(struct store *s, struct channel *ch);
