/* Offers in merchantd's store (table offers; offer.h). An offer's row, with its key, nonce
 * prefix, pinned item and signed Offer bytes, is inserted by its batch entry (ENTRY_OFFER)
 * before the Offer is sent; the Pay that pays it sets paid in its own batch's transaction.
 * At start the newest offer of each channel is loaded; any offer is found by (channel,
 * order_ref) for KeyReq and the dispute side. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "offer.h"
#include "store.h"

bool offer_store_migrate(struct store *s);
/* Store thread, inside the batch transaction. */
bool offer_store_put(struct store *s, const struct offer *o, int64_t now);
/* paid = 1, or 2 when paid by a Dispute's word (its key goes only through the broker). */
bool offer_store_paid(struct store *s, const uint8_t ref[OFFER_REF_LEN], bool by_dispute);
/* The buyer's OfferCancel (signed bytes) of an unpaid offer without one; nothing otherwise
 * (a paid offer is never cancelled, the first cancel stays). */
bool offer_store_cancel(struct store *s, const uint8_t ref[OFFER_REF_LEN], const uint8_t *cancel,
			size_t len);
/* Each channel's newest offer, in the order they were made; each(arg, o) takes o. False
 * (logged) on a store error or an unreadable row. */
typedef void (*offer_each_fn)(void *arg, struct offer *o);
bool offer_store_load(struct store *s, offer_each_fn each, void *arg);
/* The offer (channel_id, ref) in *out (to offer_free): 1; 0 if there is none; -1 on a store
 * error (logged). One primary-key read. */
int offer_store_find(struct store *s, const uint8_t channel_id[MP_ID_LEN],
		     const uint8_t ref[OFFER_REF_LEN], struct offer **out);

/* One row of the listing (admin `offers`). */
struct offer_listed {
	int64_t seq; /* the row's order: the listing's paging key */
	const struct offer *o;
	int64_t created_at;
};
typedef void (*offer_list_fn)(void *arg, const struct offer_listed *row);
/* At most limit offers with seq below `before` (0: from the newest), newest first; false
 * (logged) on a store error. */
bool offer_store_list(struct store *s, int64_t before, unsigned limit, offer_list_fn each,
		      void *arg);
