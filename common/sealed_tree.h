/* The Offer's ciphertext_hash (docs/goods.md "The ciphertext hash"): a Merkle tree over the
 * sealed chunks, so that one chunk can be shown to the broker with its place in the Offer.
 *
 *   leaf k          = SHA-256(0x00 || be32(k) || sealed chunk k)
 *   node            = SHA-256(0x01 || left || right), the tree shaped as RFC 9162's (the left
 *                     subtree holds the largest power of two of leaves below the count)
 *   ciphertext_hash = SHA-256(0x02 || be32(n) || root of the n leaves)
 *
 * The leaf's index and the count are hashed in, so a chunk cannot be shown at another place or
 * in a tree of another size. The tree is built streaming (one hash per leaf and node, a stack
 * of at most 32 subtree roots); an audit path has at most MP_SEALED_PATH_MAX hashes.
 *
 * Thread-safe: nothing is shared. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto_limits.h"

#define MP_SEALED_HASH_LEN 32
#define MP_SEALED_PATH_MAX MP_MAX_PROOF_PATH

/* ciphertext_hash over the sealed chunks added in order (chunk k is the k-th add): new, add
 * each, final, free. NULL from new when memory is short. */
struct mp_sealed_hash;
struct mp_sealed_hash *mp_sealed_hash_new(void);
bool mp_sealed_hash_add(struct mp_sealed_hash *h, const uint8_t *sealed, size_t len);
bool mp_sealed_hash_final(struct mp_sealed_hash *h, uint8_t out[MP_SEALED_HASH_LEN]);
void mp_sealed_hash_free(struct mp_sealed_hash *h);

/* Leaf k's hash; false only when memory is short. */
bool mp_sealed_leaf(uint32_t k, const uint8_t *sealed, size_t len, uint8_t out[MP_SEALED_HASH_LEN]);

/* The audit path of leaf k among the n leaf hashes (leaves: n x 32 bytes, k < n), leaf side
 * first, into path; its length (at most MP_SEALED_PATH_MAX). */
size_t mp_sealed_path(const uint8_t (*leaves)[MP_SEALED_HASH_LEN], uint32_t n, uint32_t k,
		      uint8_t (*path)[MP_SEALED_HASH_LEN]);

/* True iff sealed chunk k (len bytes) with its audit path is chunk k of the n chunks that
 * ciphertext_hash names. */
bool mp_sealed_path_check(const uint8_t ciphertext_hash[MP_SEALED_HASH_LEN], uint32_t n, uint32_t k,
			  const uint8_t *sealed, size_t len,
			  const uint8_t (*path)[MP_SEALED_HASH_LEN], size_t path_len);
