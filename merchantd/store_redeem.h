/* The redeemer's queries of merchantd's store (SQLite, the handle of store.c): chain words
 * for redemption in steps, and the age of the oldest unredeemed payment. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"
#include "util.h"

struct store;
struct channel;
struct table;

/* A signed Redeem waiting in the outbox. */
struct outbox_item {
	uint8_t redeem_id[MP_ID_LEN];
	uint8_t *bytes;
	size_t len;
};

/* The journalled (accepted) word of channel ch's segment with the smallest index >= index. */
bool store_word_at_or_above(struct store *s, const struct channel *ch, uint32_t seg_seq,
			    uint32_t index, uint32_t *j, uint8_t w[MP_HASH_LEN]);

/* When channel ch's first journalled payment above its redeemed end was accepted (unix
 * seconds) into *at, 0 if none is journalled: one mark seek and a walk of at most a block
 * (journal_chain.h). False (logged) on a store error. */
bool store_first_unredeemed_at(struct store *s, const struct channel *ch, uint64_t *at);
