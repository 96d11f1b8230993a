#include "chainstore.h"

#include <openssl/crypto.h>
#include <stdlib.h>
#include <string.h>

void wchain_init(struct wchain *c, const uint8_t nonce[MP_NONCE_LEN], uint32_t len,
		 uint32_t interval)
{
	*c = (struct wchain){.len = len, .interval = interval};
	memcpy(c->nonce, nonce, MP_NONCE_LEN);
}

void wchain_free(struct wchain *c)
{
	/* Words not paid yet are secrets (the next paywords): wiped, not only freed. */
	OPENSSL_clear_free(c->words, (size_t)c->interval * MP_HASH_LEN);
	c->words = NULL;
	c->lo = c->hi = 0;
}

bool wchain_is_checkpoint(const struct wchain *c, uint32_t j)
{
	return j == 0 || j == c->len || j % c->interval == 0;
}

/* Hash the block (lo, hi] down from the checkpoint at hi into the cache. */
static bool fill_block(struct wchain *c, struct mp_hasher *h, uint32_t lo, uint32_t hi,
		       wchain_fetch_fn fetch, void *arg)
{
	if (!c->words && !(c->words = OPENSSL_zalloc((size_t)c->interval * MP_HASH_LEN)))
		return false;
	c->lo = c->hi = 0; /* invalid until the whole block is in */
	if (!fetch(arg, hi, c->words[hi - lo - 1]))
		return false;
	for (uint32_t k = hi; k > lo + 1; k--) {
		mp_chain_link(h, c->nonce, k, c->words[k - lo - 1], c->words[k - lo - 2]);
		c->hashes++;
	}
	c->lo = lo;
	c->hi = hi;
	return true;
}

bool wchain_word(struct wchain *c, struct mp_hasher *h, uint32_t j, wchain_fetch_fn fetch,
		 void *arg, uint8_t out[MP_HASH_LEN])
{
	if (j > c->len)
		return false;
	if (j > c->lo && j <= c->hi) {
		memcpy(out, c->words[j - c->lo - 1], MP_HASH_LEN);
		return true;
	}
	if (wchain_is_checkpoint(c, j))
		return fetch(arg, j, out);
	/* j lies strictly inside the block (lo, hi] whose top hi is the nearest checkpoint above.
	 */
	uint32_t lo = j - j % c->interval;
	uint32_t hi = c->len - lo < c->interval ? c->len : lo + c->interval;
	if (!fill_block(c, h, lo, hi, fetch, arg))
		return false;
	memcpy(out, c->words[j - lo - 1], MP_HASH_LEN);
	return true;
}
