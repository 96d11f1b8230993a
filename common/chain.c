/* SHA-256 through OpenSSL's low-level interface, deprecated since 3.0: the EVP interface
 * allocates on every EVP_DigestInit_ex2 in OpenSSL 3.0 (one heap allocation per chain link,
 * measured with tests/integration/malloc_count.c), and a link is the unit of work of every Pay.
 * The low-level one allocates nothing and took 213 ns per 53-byte block where EVP took 728 ns
 * (1,000,000 blocks each, this machine, docs/performance.md). The chain vectors
 * (tests/unit/test_chain.c) pin the results. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include "chain.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

struct mp_hasher {
	SHA256_CTX ctx;
};

struct mp_hasher *mp_hasher_new(void)
{
	struct mp_hasher *h = calloc(1, sizeof(*h));
	if (!h)
		return NULL;
	return h;
}

void mp_hasher_free(struct mp_hasher *h)
{
	if (!h)
		return;
	OPENSSL_cleanse(&h->ctx, sizeof(h->ctx)); /* may hold a seed's block */
	free(h);
}

static void hash_block(struct mp_hasher *h, const uint8_t *in, size_t len, uint8_t out[MP_HASH_LEN])
{
	/* These calls cannot fail short of memory corruption. */
	if (SHA256_Init(&h->ctx) != 1 || SHA256_Update(&h->ctx, in, len) != 1 ||
	    SHA256_Final(out, &h->ctx) != 1)
		abort();
}

void mp_chain_link(struct mp_hasher *h, const uint8_t nonce[MP_NONCE_LEN], uint32_t k,
		   const uint8_t x[MP_HASH_LEN], uint8_t out[MP_HASH_LEN])
{
	uint8_t block[1 + MP_NONCE_LEN + 4 + MP_HASH_LEN];
	block[0] = 0x4C;
	memcpy(block + 1, nonce, MP_NONCE_LEN);
	mp_put_be32(block + 1 + MP_NONCE_LEN, k);
	memcpy(block + 1 + MP_NONCE_LEN + 4, x, MP_HASH_LEN);
	hash_block(h, block, sizeof(block), out);
}

void mp_chain_top(struct mp_hasher *h, const uint8_t seed[MP_SEED_LEN],
		  const uint8_t nonce[MP_NONCE_LEN], uint8_t out[MP_HASH_LEN])
{
	uint8_t block[1 + MP_SEED_LEN + MP_NONCE_LEN];
	block[0] = 0x53;
	memcpy(block + 1, seed, MP_SEED_LEN);
	memcpy(block + 1 + MP_SEED_LEN, nonce, MP_NONCE_LEN);
	hash_block(h, block, sizeof(block), out);
	OPENSSL_cleanse(block, sizeof(block)); /* the seed */
}

void mp_chain_walk(struct mp_hasher *h, const uint8_t nonce[MP_NONCE_LEN], uint32_t hi,
		   const uint8_t w_hi[MP_HASH_LEN], uint32_t lo, uint8_t out[MP_HASH_LEN])
{
	uint8_t x[MP_HASH_LEN];
	memcpy(x, w_hi, MP_HASH_LEN);
	for (uint32_t k = hi; k > lo; k--)
		mp_chain_link(h, nonce, k, x, x);
	memcpy(out, x, MP_HASH_LEN);
}

bool mp_chain_verify(struct mp_hasher *h, const uint8_t nonce[MP_NONCE_LEN], uint32_t a,
		     const uint8_t w_a[MP_HASH_LEN], uint32_t b, const uint8_t w_b[MP_HASH_LEN])
{
	if (a > b)
		return false;
	uint8_t x[MP_HASH_LEN];
	mp_chain_walk(h, nonce, b, w_b, a, x);
	return CRYPTO_memcmp(x, w_a, MP_HASH_LEN) == 0;
}

int mp_chain_generate(struct mp_hasher *h, const uint8_t seed[MP_SEED_LEN],
		      const uint8_t nonce[MP_NONCE_LEN], uint32_t len, uint32_t interval,
		      mp_checkpoint_fn on_checkpoint, void *arg, uint8_t root[MP_HASH_LEN])
{
	uint8_t x[MP_HASH_LEN];
	mp_chain_top(h, seed, nonce, x);
	for (uint32_t k = len;; k--) {
		bool checkpoint = k == len || k == 0 || (interval && k % interval == 0);
		if (checkpoint && on_checkpoint) {
			int rc = on_checkpoint(arg, k, x);
			if (rc != 0) {
				OPENSSL_cleanse(x,
						sizeof(x)); /* a word of the chain, not yet paid */
				return rc;
			}
		}
		if (k == 0)
			break;
		mp_chain_link(h, nonce, k, x, x);
	}
	memcpy(root, x, MP_HASH_LEN);
	return 0;
}
