/* Claims waiting for the broker's funds (redeem_wait.h), kept in merchantd's store (table
 * redeem_waiting) so that a restarted merchantd claims them again with backoff until they are
 * credited. Rows are written in the transaction that records the Redeem's answer
 * (store_outbox_answered): a claim answered INSUFFICIENT_FUNDS is added, a claim answered
 * anything else is removed, so the table and the answers recorded never disagree. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "store.h"
#include "util.h"

bool redeem_wait_store_migrate(struct store *s);
/* Claim c's wait: kept (c->waits) or ended. */
bool redeem_wait_store_put(struct store *s, const struct redeemed_claim *c);
/* Each waiting claim, oldest first; false (logged) on a store error. */
typedef void (*redeem_wait_each_fn)(void *arg, const uint8_t channel_id[MP_ID_LEN], uint32_t hseq);
bool redeem_wait_store_load(struct store *s, redeem_wait_each_fn each, void *arg);
