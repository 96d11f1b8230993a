/* Chained hash tables keyed by channel id or order reference. Ids are random (channel ids
 * are hashes, order refs random), so their first bytes index the buckets directly. */
#include <stdlib.h>
#include <string.h>

#include "merchant.h"
#include "offer.h"
#include "purchase.h"
#include "segments.h"

bool table_init(struct table *t, size_t nbuckets)
{
	t->buckets = calloc(nbuckets, sizeof(*t->buckets));
	t->nbuckets = nbuckets;
	t->count = 0;
	return t->buckets != NULL;
}

static size_t bucket_of(const struct table *t, const uint8_t *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a: cheap, and ids are random anyway */
	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return (size_t)(h % t->nbuckets);
}

struct channel *channel_find(struct table *t, const uint8_t id[MP_ID_LEN])
{
	struct channel *ch = t->buckets[bucket_of(t, id, MP_ID_LEN)];
	while (ch && memcmp(ch->id, id, MP_ID_LEN) != 0)
		ch = ch->next;
	return ch;
}

void channel_insert(struct table *t, struct channel *ch)
{
	size_t b = bucket_of(t, ch->id, MP_ID_LEN);
	ch->next = t->buckets[b];
	t->buckets[b] = ch;
	t->count++;
}

struct order *order_find(struct table *t, const uint8_t *ref, size_t len)
{
	struct order *o = t->buckets[bucket_of(t, ref, len)];
	while (o && (o->ref_len != len || memcmp(o->ref, ref, len) != 0))
		o = o->next;
	return o;
}

void order_insert(struct table *t, struct order *o)
{
	size_t b = bucket_of(t, o->ref, o->ref_len);
	o->next = t->buckets[b];
	t->buckets[b] = o;
	t->count++;
}

void table_free_channels(struct table *t)
{
	for (size_t b = 0; t->buckets && b < t->nbuckets; b++) {
		struct channel *ch = t->buckets[b];
		while (ch) {
			struct channel *next = ch->next;
			channel_free(ch);
			ch = next;
		}
	}
	free(t->buckets);
	t->buckets = NULL;
}

void channel_free(struct channel *ch)
{
	if (!ch)
		return;
	segment_rows_free(ch->segs, ch->seg_seq);
	free(ch->cert);
	free(ch->bind);
	free(ch->close);
	purchase_free(ch->purchase);
	offer_free(ch->offer);
	free(ch);
}

void table_free_orders(struct table *t)
{
	for (size_t b = 0; t->buckets && b < t->nbuckets; b++) {
		struct order *o = t->buckets[b];
		while (o) {
			struct order *next = o->next;
			free(o);
			o = next;
		}
	}
	free(t->buckets);
	t->buckets = NULL;
}

const char *channel_state_name(enum channel_state s)
{
	switch (s) {
	case CHANNEL_UNKNOWN:
		return "UNKNOWN";
	case CHANNEL_HELD:
		return "HELD";
	case CHANNEL_EXPIRED:
		return "EXPIRED";
	case CHANNEL_HANDED_OFF:
		return "HANDED_OFF";
	case CHANNEL_CLOSED:
		return "CLOSED";
	}
	return "?";
}
