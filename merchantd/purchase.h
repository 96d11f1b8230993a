/* Goods bought chunk by chunk (docs/goods.md "Buying"): one purchase per channel at a time,
 * pinned at its start (the item's file, size, chunking and prices), paid by ordinary Pays whose
 * order_ref is the purchase id. A Pay's credit pays the purchase's next chunks in order, as
 * many as it covers (catalogue_chunks_covered); chunk k is served only once chunks 0 .. k-1
 * are paid durably, chunk 0 unpaid. So the merchant has at most one chunk out unpaid per
 * channel, and a wallet pays for a chunk only after receiving it.
 *
 *   (none) --ChunkReq chunk 0 for ITEM--> UNRECORDED (row queued in a batch; TOO_EARLY to
 *          anything but its own first answer) --committed--> OPEN: chunk 0 read and sent
 *   OPEN --Pay naming it: credit covers chunks--> paid advances (durable at its commit)
 *   OPEN --ChunkReq chunk k <= paid_durable--> chunk k read and sent (again, if asked again)
 *   OPEN --paid_durable = chunks--> FINISHED (chunk = chunks answers OK)
 *   OPEN or FINISHED --ChunkReq chunk 0 for another item, nothing delivered unpaid--> replaced
 *        by the new purchase (an abandoned purchase keeps what was paid for it)
 *
 * `delivered` lives in memory only: after a restart it starts at paid_durable, so a restart
 * can give one more chunk away per channel. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalogue.h"
#include "util.h"

#define PURCHASE_ID_LEN 16

struct purchase {
	uint8_t id[PURCHASE_ID_LEN];
	uint8_t channel_id[MP_ID_LEN];
	uint32_t seg_seq;	    /* the channel's segment (its owner) when the purchase began */
	struct catalogue_item item; /* pinned; item.path is owned */
	uint32_t paid;		    /* chunks paid, pending Pays included */
	uint32_t paid_durable;	    /* chunks paid by committed Pays */
	uint32_t delivered;	    /* chunks sent at least once (memory only) */
	bool recorded;		    /* its row is durable */
};

/* A new purchase of it on channel_id in segment seg_seq with a fresh random id; its leading
 * chunks that cost nothing count as paid. NULL on out of memory or if the item has more than
 * 2^32-1 chunks. */
struct purchase *purchase_new(const struct catalogue_item *it, const uint8_t channel_id[MP_ID_LEN],
			      uint32_t seg_seq);
/* A deep copy (for the store thread); NULL on out of memory. */
struct purchase *purchase_copy(const struct purchase *p);
void purchase_free(struct purchase *p);

struct channel;
/* The channel's purchase if it began in the channel's current segment (a transfer to another
 * customer leaves the old owner's purchase behind), else NULL. */
struct purchase *channel_purchase(const struct channel *ch);
/* The channel's purchase if its id is id (whatever its segment), else NULL. */
struct purchase *channel_purchase_with_id(const struct channel *ch,
					  const uint8_t id[PURCHASE_ID_LEN]);
/* order_ref names this purchase. */
bool purchase_is_ref(const struct purchase *p, const uint8_t *ref, size_t len);
/* A Pay's credit pays the next chunks it covers: paid advances and *credit drops by their
 * price (*cost). False if it covers none (nothing changes). */
bool purchase_settle(struct purchase *p, uint64_t *credit, uint64_t *cost);
/* What chunk `paid_durable` costs, 0 once every chunk is paid. */
uint64_t purchase_next_price(const struct purchase *p);
/* A chunk was sent that is not paid (durably) yet. */
bool purchase_owes(const struct purchase *p);
