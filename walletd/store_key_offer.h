/* The wallet's key-release purchases (docs/goods.md "Key release (the wallet)"): table
 * key_offers keeps each Offer the wallet accepted, with what it needs to finish or dispute the
 * purchase after a restart: the sealed file's place, the nonce prefix, the custody event the
 * holder showed, and, once it came, the key.
 *
 *   OFFERED (checked, ciphertext being fetched) --ciphertext hash = the Offer's, stored,
 *   flushed--> PAYING (on record before the word at pay_index leaves) --the Pay accepted-->
 *   PAID --key checked--> KEYED
 *   PAYING or PAID --deadline passed, no key--> DISPUTED (dispute.c) --broker: key--> KEYED
 *                                                          --broker: refunded--> REFUNDED
 *   PAYING or PAID --the broker refuses the dispute TOO_LATE (past T_dispute)--> TOO_LATE,
 *   final: the check never asks again
 *   PAID --the key matches key_hash but a chunk does not open under it--> KEY_BAD (the key and
 *   a BadKeyProof stored) --deadline passed: dispute with the proof--> DISPUTED (the proof kept
 *   and sent again on every ask) --broker: refunded--> REFUNDED
 *   OFFERED (or no row: an Offer the wallet never stored) --the holder names it as holding the
 *   channel at an Open (offer_cancel.c)--> CANCELLED (on record before the OfferCancel leaves:
 *   never paid from then on), final
 * A PAYING offer counts as paid: the holder may have seen the word even if its answer never
 * came, so the next buy of the item asks for the key and the wallet disputes it after the
 * deadline. */
#pragma once
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>

#include "proto.h"
#include "sealed.h"
#include "util.h"

enum wkey_offer_state {
	WKO_OFFERED = 0,
	WKO_PAID = 1,
	WKO_KEYED = 2,
	WKO_DISPUTED = 3,
	WKO_REFUNDED = 4,
	WKO_PAYING = 5,
	WKO_TOO_LATE = 6,  /* the broker refused its dispute TOO_LATE: final, never asked again */
	WKO_KEY_BAD = 7,   /* the key matches key_hash but does not open a chunk: proof stored */
	WKO_CANCELLED = 8, /* given up unpaid with an OfferCancel (offer_cancel.c): final */
	WKO_PROOF_REFUSED = 9, /* the broker refused the KEY_BAD proof (the key opens the chunk,
				  or the chunk is not the Offer's): final, never asked again */
};

struct wkey_offer {
	uint8_t channel_id[MP_ID_LEN];
	uint8_t order_ref[MP_ID_LEN];
	MpSigned *offer;   /* owned */
	MpSigned *custody; /* the holder's custody event at the offer (owned; NULL: event 0) */
	uint8_t prefix[MP_SEAL_PREFIX_LEN];
	char item[129];
	char out[PATH_MAX]; /* the plaintext's path; the ciphertext is OUT.sealed */
	uint64_t size, deadline, refunded;
	uint32_t chunk_size, chunks;
	enum wkey_offer_state state;
	bool has_key;
	uint8_t key[MP_SEAL_KEY_LEN];
	uint8_t *proof; /* the packed BadKeyProof (owned), NULL if none */
	size_t proof_len;
};

struct wstore;

const char *wkey_offer_state_name(enum wkey_offer_state s);
/* At store open, inside the schema transaction: create the table if it is missing. */
bool wstore_key_offer_migrate(struct wstore *s);
/* Insert the offer (state OFFERED), or nothing if (channel_id, order_ref) is stored. */
bool wstore_key_offer_put(struct wstore *s, const struct wkey_offer *o);
/* Move to state (key: the checked key, or NULL to keep it; refunded: DISPUTED/REFUNDED). */
bool wstore_key_offer_set(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			  const uint8_t order_ref[MP_ID_LEN], enum wkey_offer_state state,
			  const uint8_t *key, uint64_t refunded);
/* KEY_BAD: the packed BadKeyProof of a chunk the stored key (matching key_hash) does not open. */
bool wstore_key_offer_bad_key(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			      const uint8_t order_ref[MP_ID_LEN], const uint8_t *proof,
			      size_t proof_len);
/* The stored offer (fields into *o, statements owned by it: wkey_offer_clear); false if absent
 * or on a store error (logged). */
bool wstore_key_offer_get(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			  const uint8_t order_ref[MP_ID_LEN], struct wkey_offer *o);
/* OFFERED -> PAYING (before the word at pay_index leaves); false if the row is in another
 * state (e.g. CANCELLED) or on a store error (logged). */
bool wstore_key_offer_paying(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			     const uint8_t order_ref[MP_ID_LEN]);
/* The stored offer's state in *state: 1; 0 if there is none; -1 on a store error (logged). */
int wstore_key_offer_state(struct wstore *s, const uint8_t channel_id[MP_ID_LEN],
			   const uint8_t order_ref[MP_ID_LEN], enum wkey_offer_state *state);
/* Each stored offer in state (or every offer when all), oldest first: fn(arg, offer). False
 * (logged) on a store error. */
typedef void (*wkey_offer_fn)(void *arg, const struct wkey_offer *o);
bool wstore_key_offer_each(struct wstore *s, bool all, enum wkey_offer_state state,
			   wkey_offer_fn fn, void *arg);
void wkey_offer_clear(struct wkey_offer *o);
