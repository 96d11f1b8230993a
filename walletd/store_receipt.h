/* The wallet's receipts (docs/receipts.md): table receipts keeps, per paid point and merchant,
 * the Receipt a merchant signed and the MerchantCert it was checked with, once both verified
 * under the broker key. Asking again overwrites the row (a merchant answers the same bytes). */
#pragma once
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "util.h"

struct wstore;

/* At store open, inside the schema transaction: create the table if it is missing. */
bool wstore_receipt_migrate(struct wstore *s);
bool wstore_receipt_put(struct wstore *s, const uint8_t channel_id[MP_ID_LEN], uint32_t seg_seq,
			uint32_t index, const uint8_t merchant_id[MP_ID_LEN],
			const MpSigned *receipt, const MpSigned *merchant_cert);
/* Each stored receipt of a channel, in index order: fn(arg, receipt, merchant_cert). False (logged)
 * on a store error. */
typedef void (*wstore_receipt_fn)(void *arg, const MpSigned *receipt, const MpSigned *cert);
bool wstore_receipt_each(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			 wstore_receipt_fn fn, void *arg);
