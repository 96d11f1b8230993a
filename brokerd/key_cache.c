/* Account keys never change once registered, so the broker keeps the ones it has looked up:
 * an IssueRequest from a known account costs no read before its one state-changing call.
 * A direct-mapped table: a collision only evicts, it never returns another account's key. */
#include <string.h>

#include "broker.h"

static size_t slot_of(const uint8_t account_id[MP_ID_LEN])
{
	size_t h = 0;
	memcpy(&h, account_id, sizeof(h)); /* ids are random */
	return h % BROKER_KEY_CACHE_SIZE;
}

bool key_cache_get(const struct broker *b, const uint8_t account_id[MP_ID_LEN],
		   uint8_t pk[MP_PK_LEN])
{
	const struct key_cache_entry *e = &b->key_cache[slot_of(account_id)];
	if (!e->used || memcmp(e->account_id, account_id, MP_ID_LEN) != 0)
		return false;
	memcpy(pk, e->pk, MP_PK_LEN);
	return true;
}

void key_cache_put(struct broker *b, const uint8_t account_id[MP_ID_LEN],
		   const uint8_t pk[MP_PK_LEN])
{
	struct key_cache_entry *e = &b->key_cache[slot_of(account_id)];
	memcpy(e->account_id, account_id, MP_ID_LEN);
	memcpy(e->pk, pk, MP_PK_LEN);
	e->used = true;
}
