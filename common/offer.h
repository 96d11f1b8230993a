/* Offers (protocol.md statement 15, docs/goods.md "Key release"): the holder's signed promise
 * to release, for a payment at exactly pay_index, the key whose SHA-256 is key_hash and which
 * decrypts the ciphertext whose SHA-256 is ciphertext_hash (common/sealed.h).
 *
 *   pay_index = after_index + ceil(price / unit_value), the step within MAX_JUMP
 *
 * The verifier derives the signer's key from its own state (the holder's MerchantCert), never
 * from the statement (protocol.md section 2). */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chain.h"
#include "proto.h"
#include "sig.h"
#include "util.h"

struct mp_offer {
	uint8_t merchant_id[MP_ID_LEN];
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq, after_index, pay_index;
	uint8_t order_ref[MP_ID_LEN];
	uint64_t price;
	uint8_t key_hash[MP_HASH_LEN];
	uint8_t ciphertext_hash[MP_HASH_LEN];
	uint64_t deadline;
};

/* The Offer's body for o's fields (pointers into o: o must outlive it). */
void mp_offer_body(const struct mp_offer *o, Micropay__V1__Offer *body);

/* The units an item of price costs at unit_value: ceil(price / unit_value), in *units. False
 * when unit_value or price is 0 or the units exceed max_jump. */
bool mp_offer_units(uint64_t price, uint64_t unit_value, uint32_t max_jump, uint32_t *units);

/* NULL if offer is an Offer signed by merchant_pk (type 15) whose fields are well formed:
 * ids 16 bytes, hashes 32, price >= 1, 1 <= after_index < pay_index (its fields in *out); else
 * why not, naming the first check that failed. The index arithmetic against the channel is
 * the caller's (mp_offer_units). */
const char *mp_offer_open(const MpSigned *offer, const uint8_t merchant_pk[MP_PK_LEN],
			  struct mp_offer *out);
