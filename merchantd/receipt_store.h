/* The journalled payment a Receipt is signed for (pay_journal, read on the loop's own
 * connection, so only committed rows are seen: a payment still in a batch is not found). */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "chain.h"
#include "store.h"
#include "util.h"

struct journalled_pay {
	uint8_t w[MP_HASH_LEN];
	uint8_t order_ref[32];
	uint8_t order_ref_len;
	uint64_t at; /* acceptance time: the store's clock when its batch committed */
};

/* True and *out if the payment at (channel_id, seg_seq, j) is in the journal; false if not, or
 * on a store error (logged). */
bool receipt_store_find(struct store *s, const uint8_t channel_id[MP_ID_LEN], int64_t head,
			uint32_t seg_seq, uint32_t j, struct journalled_pay *out);
