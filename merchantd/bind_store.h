/* merchantd's stored Binds (protocol.md sections 4 and 6, "Bind"): for a channel issued
 * without holder0, the broker-signed Bind naming us is custody event 0. It is written in the
 * same transaction as the channel's row (store_commit_batch, ENTRY_OPEN), before the OpenAck
 * that carries it, and read back with the channel at start-up. Table binds (created here). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "merchant.h"

struct store;

/* At store open: create the table if it is missing. */
bool bind_store_migrate(struct store *s);
/* Store thread, inside the batch transaction; idempotent (a stored Bind is kept). */
bool bind_store_put(struct store *s, const uint8_t channel_id[MP_ID_LEN], const uint8_t *bind,
		    size_t len);
/* At start-up, for a channel whose cert has no holder0: ch->bind, ch->bind_len and
 * ch->holder0 (the Bind's merchant) from the stored Bind; false if there is none or it is
 * unreadable. */
bool bind_store_load(struct store *s, struct channel *ch);
