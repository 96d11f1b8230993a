/* Chained hash tables keyed by channel id or order reference. Ids are random (channel ids
 * are hashes, order refs random), so FNV-1a of the key spreads them well enough.
 *
 * A table grows by linear hashing: each insert that leaves more entries than buckets splits
 * one bucket, so the load stays at most 1 entry per bucket at any size (a table that stayed
 * at its first 65,536 buckets had chains of 15 on average at a million channels) and no insert
 * rehashes more than two chains: the loop never stops to rehash the whole table (doubling a
 * million-channel table at once took 217 ms). With base n (a power of two) and split pointer
 * s, the buckets in use are 0 .. n + s - 1; a key whose hash h has h mod n below s lives in
 * h mod 2n, else in h mod n. Splitting bucket s moves its entries to s or s + n; once s
 * reaches n, n doubles and s starts again at 0.
 *
 * A walk by bucket index that resumes after the table grew (redeem_build.c's pass) still
 * meets every entry it had not met: an entry moves only from bucket b to b + n, never to a
 * lower index; it may meet again some it had (the pass marks the channels it claimed and
 * skips them; others it checks again). The bucket array is grown by realloc when full; a
 * failed realloc skips that split (longer chains, still correct) and later inserts make up
 * for it, two splits each until the load is at most 1 again. The slots past the buckets in use
 * are never read before a split writes them. */
#include <stdlib.h>
#include <string.h>

#include "merchant.h"
#include "offer.h"
#include "purchase.h"
#include "segments.h"

static size_t power_of_two_at_least(size_t n)
{
	size_t p = 1;
	while (p < n && p <= SIZE_MAX / 4 / sizeof(void *))
		p <<= 1;
	return p;
}

bool table_init(struct table *t, size_t nbuckets)
{
	t->base = power_of_two_at_least(nbuckets ? nbuckets : 1);
	t->split = 0;
	t->nbuckets = t->base;
	t->capacity = t->base; /* the first split doubles it */
	t->buckets = calloc(t->capacity, sizeof(*t->buckets));
	t->count = 0;
	return t->buckets != NULL;
}

static uint64_t key_hash(const uint8_t *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (size_t i = 0; i < len; i++)
		h = (h ^ key[i]) * 1099511628211ULL;
	return h;
}

static size_t bucket_of_hash(const struct table *t, uint64_t h)
{
	size_t b = (size_t)(h & (t->base - 1));
	return b < t->split ? (size_t)(h & (2 * t->base - 1)) : b;
}

static size_t bucket_of(const struct table *t, const uint8_t *key, size_t len)
{
	return bucket_of_hash(t, key_hash(key, len));
}

/* The two kinds of entry: where each keeps its chain link and its key. */
enum table_kind { TABLE_CHANNELS, TABLE_ORDERS };

static void **entry_next(void *e, enum table_kind kind)
{
	return kind == TABLE_CHANNELS ? (void **)&((struct channel *)e)->next
				      : (void **)&((struct order *)e)->next;
}

static uint64_t entry_hash(const void *e, enum table_kind kind)
{
	if (kind == TABLE_CHANNELS)
		return key_hash(((const struct channel *)e)->id, MP_ID_LEN);
	const struct order *o = e;
	return key_hash(o->ref, o->ref_len);
}

/* Room for bucket n + s: the array doubles when full. */
static bool room_for_split(struct table *t)
{
	if (t->nbuckets < t->capacity)
		return true;
	if (t->capacity > SIZE_MAX / 2 / sizeof(*t->buckets))
		return false;
	void **more = realloc(t->buckets, 2 * t->capacity * sizeof(*more));
	if (!more)
		return false; /* the next insert tries again */
	t->buckets = more;
	t->capacity *= 2;
	return true;
}

/* Splits bucket s into s and s + n (the diagram at the top of the file); false when the
 * bucket array could not grow. */
static bool split_one(struct table *t, enum table_kind kind)
{
	if (!room_for_split(t))
		return false;
	size_t from = t->split, to = t->split + t->base;
	void *e = t->buckets[from];
	t->buckets[from] = NULL;
	t->buckets[to] = NULL;
	while (e) {
		void **next = entry_next(e, kind);
		void *after = *next;
		size_t b = (size_t)(entry_hash(e, kind) & (2 * t->base - 1));
		*next = t->buckets[b];
		t->buckets[b] = e;
		e = after;
	}
	t->nbuckets++;
	if (++t->split == t->base) {
		t->base *= 2;
		t->split = 0;
	}
	return true;
}

/* After an insert: one split, or two while splits that a failed realloc skipped are made up. */
static void keep_load(struct table *t, enum table_kind kind)
{
	for (int i = 0; i < 2 && t->count > t->nbuckets; i++)
		if (!split_one(t, kind))
			return;
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
	keep_load(t, TABLE_CHANNELS);
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
	keep_load(t, TABLE_ORDERS);
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
