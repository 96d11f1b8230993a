/* Epochs the broker answered TOO_LATE, kept in merchantd's store (table too_late_epochs) so
 * that a restarted merchantd neither claims them again nor forgets what they lost
 * (docs/settlement.md "The merchant"). Rows are written in the transaction that records the
 * Redeem's answer (store_outbox_answered), so a claim is either answered and remembered, or
 * sent again and answered TOO_LATE again. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "util.h"

bool too_late_store_migrate(struct store *s);
/* Record claim c (c->too_late); an epoch already recorded keeps its first row. */
bool too_late_store_put(struct store *s, const struct redeemed_claim *c);
/* Each recorded epoch, oldest first; false (logged) on a store error. */
typedef void (*too_late_each_fn)(void *arg, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq,
				 uint64_t lost);
bool too_late_store_load(struct store *s, too_late_each_fn each, void *arg);
