/* OfferCancel (statement 21, docs/disputes.md "Cancelling an offer"): the buyer gives up an
 * Offer it never paid. Signed by the owner key of the Offer's segment, it names the Offer by
 * its stmt_hash. The holder keeps it; the channel then pays past the Offer's after_index again,
 * and a Dispute of that Offer ends CANCELLED at the broker when the holder shows it.
 *
 * A wallet signs one only for an Offer it never paid (no Pay at its pay_index ever left): a
 * payword does not name its order, so without a cancel a buyer could pay the indices of a
 * lapsed Offer for other orders and then dispute the Offer with a word it paid for something
 * else. */
#pragma once
#include <stdint.h>

#include "offer.h"
#include "proto.h"
#include "sig.h"
#include "util.h"

struct mp_offer_cancel {
	uint8_t merchant_id[MP_ID_LEN];
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq;
	uint8_t order_ref[MP_ID_LEN];
	uint8_t offer_hash[MP_HASH_LEN];
};

/* The cancel of offer (its fields o, the statement's bytes for its hash) signed by owner. NULL
 * when memory is short (logged). */
MpSigned *mp_offer_cancel_sign(const struct mp_key *owner, const MpSigned *offer,
			       const struct mp_offer *o);

/* NULL if the cancel's body c names offer (fields o): its merchant, channel, segment, order_ref
 * and stmt_hash, with ids of 16 bytes and a hash of 32; else why not. */
const char *mp_offer_cancel_names(const Micropay__V1__OfferCancel *c, const MpSigned *offer,
				  const struct mp_offer *o);
/* NULL if cancel is an OfferCancel signed by owner_pk (type 21), well formed (ids 16 bytes,
 * hash 32), whose fields name offer: its merchant, channel, segment, order_ref and stmt_hash;
 * else why not, naming the first check that failed. */
const char *mp_offer_cancel_check(const MpSigned *cancel, const uint8_t owner_pk[MP_PK_LEN],
				  const MpSigned *offer, const struct mp_offer *o);
