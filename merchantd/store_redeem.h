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

/* For every channel of the table with durable payments above its redeemed end: when the first
 * of them was journalled (unix seconds) into its unredeemed_since, 0 if none is journalled;
 * one mark seek and a walk of at most a block each (journal_chain.h). False (logged) on a store
 * error: those channels get 1 (unknown, so the lag reads as high as can be, never low), the
 * others are read. */
bool store_load_unredeemed_since(struct store *s, struct table *channels);
