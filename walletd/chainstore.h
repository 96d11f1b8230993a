/* The wallet's chain store: w_j from the stored checkpoints (protocol.md section 2, "chain-relative
 * indices ... exist only ... in a wallet's chain store"). Checkpoints are the words at every
 * multiple of the interval, at len and at 0 (the root). A word between two checkpoints is hashed
 * down from the checkpoint above it; the words of the last block used stay cached, so paying
 * sequentially costs about one hash per unit. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "chain.h"

/* Fetch the stored checkpoint at index into w; false if it is missing or unreadable. */
typedef bool (*wchain_fetch_fn)(void *arg, uint32_t index, uint8_t w[MP_HASH_LEN]);

struct wchain {
	uint8_t nonce[MP_NONCE_LEN];
	uint32_t len;
	uint32_t interval;
	/* Cached block: the words of indices (lo, hi]; empty when hi == 0. */
	uint32_t lo, hi;
	uint8_t (*words)[MP_HASH_LEN]; /* words[k - lo - 1], interval entries, lazily allocated */
	uint64_t hashes;	       /* links computed so far (for tests and metrics) */
};

/* len >= 1, interval >= 1. No allocation until the first word between checkpoints. */
void wchain_init(struct wchain *c, const uint8_t nonce[MP_NONCE_LEN], uint32_t len,
		 uint32_t interval);
/* Wipes the cached words (OPENSSL_clear_free: they include paywords not yet sent). */
void wchain_free(struct wchain *c);

/* Index j holds a checkpoint (0, len or a multiple of the interval). */
bool wchain_is_checkpoint(const struct wchain *c, uint32_t j);

/* The chain-relative word w_j for 0 <= j <= len into out. False if j > len, a checkpoint cannot
 * be fetched, or memory runs out. */
bool wchain_word(struct wchain *c, struct mp_hasher *h, uint32_t j, wchain_fetch_fn fetch,
		 void *arg, uint8_t out[MP_HASH_LEN]);
