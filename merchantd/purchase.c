/* A purchase's arithmetic and life (purchase.h). */
#include "purchase.h"

#include <stdlib.h>
#include <string.h>

#include "merchant.h"
#include "util.h"

struct purchase *purchase_new(const struct catalogue_item *it, const uint8_t channel_id[MP_ID_LEN],
			      uint32_t seg_seq)
{
	if (it->chunks > UINT32_MAX)
		return NULL;
	struct purchase *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->item = *it;
	p->item.path = strdup(it->path);
	if (!p->item.path || !mp_random_bytes(p->id, PURCHASE_ID_LEN)) {
		purchase_free(p);
		return NULL;
	}
	memcpy(p->channel_id, channel_id, MP_ID_LEN);
	p->seg_seq = seg_seq;
	p->paid = p->paid_durable = (uint32_t)catalogue_chunks_covered(&p->item, 0, 0);
	return p;
}

struct purchase *purchase_copy(const struct purchase *p)
{
	struct purchase *c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	*c = *p;
	c->item.path = strdup(p->item.path);
	if (!c->item.path) {
		free(c);
		return NULL;
	}
	return c;
}

void purchase_free(struct purchase *p)
{
	if (!p)
		return;
	free(p->item.path);
	free(p);
}

struct purchase *channel_purchase(const struct channel *ch)
{
	return ch->purchase && ch->purchase->seg_seq == ch->seg_seq ? ch->purchase : NULL;
}

struct purchase *channel_purchase_with_id(const struct channel *ch,
					  const uint8_t id[PURCHASE_ID_LEN])
{
	return ch && ch->purchase && !memcmp(ch->purchase->id, id, PURCHASE_ID_LEN) ? ch->purchase
										    : NULL;
}

bool purchase_is_ref(const struct purchase *p, const uint8_t *ref, size_t len)
{
	return p && p->recorded && len == PURCHASE_ID_LEN && memcmp(p->id, ref, len) == 0;
}

bool purchase_settle(struct purchase *p, uint64_t *credit, uint64_t *cost)
{
	uint64_t to = catalogue_chunks_covered(&p->item, p->paid, *credit);
	*cost = catalogue_price_through(&p->item, to) - catalogue_price_through(&p->item, p->paid);
	if (to == p->paid)
		return false;
	p->paid = (uint32_t)to;
	*credit -= *cost;
	return true;
}

uint64_t purchase_next_price(const struct purchase *p)
{
	return catalogue_chunk_price(&p->item, p->paid_durable);
}

bool purchase_owes(const struct purchase *p)
{
	return p->delivered > p->paid_durable;
}
