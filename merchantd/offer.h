/* Goods sold by key release (docs/goods.md "Key release"): an item of the catalogue with
 * `delivery = key` is sold whole, in one payment, against the holder's signed Offer (common/
 * offer.h). The merchant draws a key K and a nonce prefix per offer, hashes the item sealed
 * under them (common/sealed.h) on its worker pool, signs the Offer, records it with K durably
 * and only then answers it. The wallet fetches the sealed chunks (ChunkReq naming the offer's
 * order_ref, free), pays exactly pay_index with the offer's order_ref and asks for K (KeyReq).
 *
 * One offer per channel is current (ch->offer, the newest; older ones stay in the store: their
 * keys are still released to a dispute, offer_lookup). An offer is payable while it is unpaid,
 * the channel's last is its after_index and the merchant clock is before its deadline. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../common/offer.h" /* the Offer statement: a header of the same name */
#include "catalogue.h"
#include "proto.h"
#include "sealed.h"
#include "util.h"

struct merchant;
struct channel;
struct mp_conn;

#define OFFER_REF_LEN 16

struct offer {
	uint8_t order_ref[OFFER_REF_LEN];
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq;	    /* the channel's segment when the offer was made */
	struct catalogue_item item; /* pinned; item.path is owned */
	int64_t mtime_ns;	    /* the file's modification time when it was hashed */
	int64_t ident; /* its identity then (goods_read.h); GOODS_ANY for offers stored before */
	uint8_t key[MP_SEAL_KEY_LEN];
	uint8_t prefix[MP_SEAL_PREFIX_LEN];
	uint32_t after_index, pay_index;
	uint64_t price;	       /* item.total */
	uint64_t deadline;     /* merchant clock */
	uint8_t *signed_offer; /* the Offer statement's stored bytes (owned) */
	size_t signed_len;
	bool recorded;	   /* its row is durable */
	bool paid;	   /* pay path: a Pay at pay_index naming it was accepted (maybe pending) */
	bool paid_durable; /* that Pay is committed */
	bool stale;	   /* memory only: a chunk read found its file changed; not offered again */
	uint8_t *cancel;   /* the buyer's OfferCancel (signed bytes, owned), NULL: none */
	size_t cancel_len;
	bool cancel_durable; /* that cancel is committed */
	bool by_dispute;     /* paid by a Dispute's word (pay_from_dispute; paid = 2 in the store):
				its key goes only through the broker, never in a KeyResp */
	uint64_t state_asked_at; /* memory only: dispute_ended.c's last DisputeStateReq of it */
	bool lapsed; /* memory only: never disputed, and the broker said no Dispute of it can come
			any more (dispute_ended.c): it holds the channel no longer */
};

/* A deep copy (for the store thread); NULL on out of memory. */
struct offer *offer_copy(const struct offer *o);
/* A copy for sealing chunks: its key is the key the goods are sealed under (the offer's own;
 * under MP_FAULT_OFFER_WRONG_KEY, fault.h, another). NULL when memory is short. */
struct offer *offer_sealing_copy(const struct merchant *m, const struct offer *o);
void offer_free(struct offer *o);

/* The channel's current offer if it was made in the channel's current segment, else NULL. */
struct offer *channel_offer(const struct channel *ch);
struct merchant;
/* The channel's offer while it holds the channel: neither paid nor cancelled nor lapsed (never
 * disputed, and past the broker's dispute window: dispute_ended.c), the channel's
 * last still its after_index (from the moment it is made, before its row is durable); else
 * NULL. Past its deadline too: while one holds it
 * the channel takes no other offer and no Pay past after_index that does not name it, so that
 * no two offers of a channel cover the same indices and a word at its pay_index never pays
 * another order unless the buyer gave the offer up with an OfferCancel (offer_cancel.h): a
 * payword does not name its order, and the buyer could otherwise dispute the lapsed offer with
 * a word it paid for something else. */
const struct offer *offer_holding(const struct channel *ch);
/* An offer holding ch also keeps it from leaving this merchant at its after_index: no
 * Handoff, Cap or Close while it holds. Otherwise the buyer could move or end the channel at
 * after_index, pay the offer's indices elsewhere, and dispute the offer before the broker
 * learns of the Handoff, Cap or Close (docs/disputes.md "A held channel does not leave the
 * merchant"). True, with a detail naming the offer and what it blocks (`what`), if one holds. */
bool offer_blocks(const struct channel *ch, const char *what, char *buf, size_t len);
/* The offer is open to a Pay: holding the channel, recorded, before its deadline, its file
 * unchanged. */
bool offer_open(const struct merchant *m, const struct channel *ch, const struct offer *o);
/* order_ref names this offer, recorded. */
bool offer_is_ref(const struct offer *o, const uint8_t *ref, size_t len);

/* The offer (channel_id, order_ref), paid or not, as a copy in *out (offer_free): 1; 0 if the
 * store holds none; -1 on a store error or out of memory (logged), which callers answer as
 * INTERNAL (retry), never as an unknown offer. Answered from the channel's current offer in memory
 * when it is that one (and recorded), else by one primary-key read on the loop's store
 * connection (bounded; committed rows only). Works after a restart: the store row is the truth.
 * For the dispute side (its key, or the buyer's cancel) and OfferCancelReq. */
int offer_lookup(struct merchant *m, const uint8_t channel_id[MP_ID_LEN],
		 const uint8_t order_ref[MP_ID_LEN], struct offer **out);

/* The Pay path (pay.c), for a fresh Pay at j on ch naming ref: OK if it may go on, i.e. it
 * names no offer of the channel, or it pays the channel's current offer (j = pay_index, the
 * channel's last = after_index, the offer unpaid, before its deadline); else CONFLICT or
 * EXPIRED with why (a detail naming the indices) in buf, or INTERNAL if the store cannot be
 * read. An older offer (replaced by a newer one) is no longer payable: a 16-byte ref that is
 * not the current offer, an order or the purchase, on a channel that had an offer, is looked
 * up in the store (one primary-key read on the loop). */
MpCode offer_pay_check(struct merchant *m, const struct channel *ch, const uint8_t *ref,
		       size_t ref_len, uint32_t j, char *buf, size_t len);

/* pay.c: the word w at the holding offer o's pay_index, from a Dispute the broker took (its
 * word is the offer's payment: the broker credited us up to pay_index), applied as the Pay
 * naming o at pay_index (past its deadline too) with no wallet to answer: chain-checked, o
 * paid by_dispute (its key then goes only through the broker, which either releases it or
 * refunds the buyer, never both), the channel's last at pay_index, queued in the batch
 * (durable with it). OK, or why not in why (the channel not held, signing or the store behind:
 * LIMIT; o no longer holding the channel: CONFLICT; a word not of our chain: BAD_CHAIN). */
MpCode pay_from_dispute(struct merchant *m, struct channel *ch, const struct offer *o,
			const uint8_t w[MP_HASH_LEN], char *why, size_t len);

struct batch_entry;
/* Settle the Pay e (its credit in *credit, the units included) against o if it names o: the
 * price leaves the credit (the rest stays channel credit), o paid, e marked (pays_offer, its
 * price, OK). False (nothing changed) if e does not name o or the credit does not cover it. */
bool offer_settle(struct offer *o, struct batch_entry *e, uint64_t *credit);

/* ChunkReq naming the channel's offer (chunk.c): sealed chunk k, read and sealed on the worker
 * pool, free, again on every request. */
void offer_chunk(struct merchant *m, struct mp_conn *c, uint64_t request_id,
		 const struct channel *ch, struct offer *o, uint32_t k);
