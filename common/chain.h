/* MPAY/1 hash chains (protocol.md section 2).
 * link(nonce, k, x) = SHA256(0x4C || nonce[16] || be32(k) || x[32])   (one compression block)
 * top            = SHA256(0x53 || seed[32] || nonce[16])               (u_len)
 * u_{k-1} = link(nonce, k, u_k); root u_0. Indices here are chain-relative. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MP_HASH_LEN  32
#define MP_NONCE_LEN 16
#define MP_SEED_LEN  32

/* A reusable SHA-256 context: no allocation per hash. One per thread. */
struct mp_hasher;
struct mp_hasher *mp_hasher_new(void);
void mp_hasher_free(struct mp_hasher *h);

void mp_chain_link(struct mp_hasher *h, const uint8_t nonce[MP_NONCE_LEN], uint32_t k,
		   const uint8_t x[MP_HASH_LEN], uint8_t out[MP_HASH_LEN]);
void mp_chain_top(struct mp_hasher *h, const uint8_t seed[MP_SEED_LEN],
		  const uint8_t nonce[MP_NONCE_LEN], uint8_t out[MP_HASH_LEN]);

/* From the word at index hi, hash down to index lo (lo <= hi): hi - lo links. */
void mp_chain_walk(struct mp_hasher *h, const uint8_t nonce[MP_NONCE_LEN], uint32_t hi,
		   const uint8_t w_hi[MP_HASH_LEN], uint32_t lo, uint8_t out[MP_HASH_LEN]);

/* verify(nonce, a, w_a, b, w_b) for a <= b: hashes w_b down to a and compares with w_a in
 * constant time (a == b compares the words). Costs b - a hashes. False if a > b. */
bool mp_chain_verify(struct mp_hasher *h, const uint8_t nonce[MP_NONCE_LEN], uint32_t a,
		     const uint8_t w_a[MP_HASH_LEN], uint32_t b, const uint8_t w_b[MP_HASH_LEN]);

/* Called for each checkpoint while generating: every `interval` indices, plus len and 0. */
typedef int (*mp_checkpoint_fn)(void *arg, uint32_t index, const uint8_t w[MP_HASH_LEN]);

/* Generate the chain of length len (>= 1) from seed: len hashes plus the top. Reports the
 * checkpoints (indices divisible by interval, and len) from the top down; writes the root.
 * Returns 0, or the first non-zero value a checkpoint callback returned. */
int mp_chain_generate(struct mp_hasher *h, const uint8_t seed[MP_SEED_LEN],
		      const uint8_t nonce[MP_NONCE_LEN], uint32_t len, uint32_t interval,
		      mp_checkpoint_fn on_checkpoint, void *arg, uint8_t root[MP_HASH_LEN]);
